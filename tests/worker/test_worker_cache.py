"""The worker's workflow cache bound: RELMAN_WORKER_MAX_CACHED_WORKFLOWS, else 1,000; a value
that is not a whole number stops the worker at start, naming the setting."""

from __future__ import annotations

import pytest

from common.errors import BadInput
from worker.main import max_cached_workflows, run_worker


def test_the_cache_bound_defaults_to_a_thousand_workflows() -> None:
    assert max_cached_workflows({}) == 1000
    assert max_cached_workflows({"RELMAN_WORKER_MAX_CACHED_WORKFLOWS": "  "}) == 1000


def test_the_cache_bound_takes_the_setting() -> None:
    assert max_cached_workflows({"RELMAN_WORKER_MAX_CACHED_WORKFLOWS": "400"}) == 400
    assert max_cached_workflows({"RELMAN_WORKER_MAX_CACHED_WORKFLOWS": "0"}) == 0


@pytest.mark.parametrize("raw", ["-1", "lots", "2.5"])
def test_a_cache_bound_that_is_not_a_whole_number_is_refused_naming_it(raw: str) -> None:
    with pytest.raises(BadInput) as caught:
        max_cached_workflows({"RELMAN_WORKER_MAX_CACHED_WORKFLOWS": raw})

    assert str(caught.value) == (
        f"RELMAN_WORKER_MAX_CACHED_WORKFLOWS={raw!r}: expected a whole number of workflows "
        "(0 or more; default 1000)"
    )


async def test_a_malformed_cache_bound_stops_the_worker_before_it_connects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("RELMAN_NOTIFY_SNS_TOPIC_ARN", "RELMAN_NOTIFY_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("RELMAN_WEBHOOK_ALLOW_NETWORKS", raising=False)
    monkeypatch.setenv("RELMAN_WORKER_MAX_CACHED_WORKFLOWS", "half")

    with pytest.raises(BadInput) as caught:
        await run_worker()

    assert str(caught.value) == (
        "RELMAN_WORKER_MAX_CACHED_WORKFLOWS='half': expected a whole number of workflows "
        "(0 or more; default 1000)"
    )
