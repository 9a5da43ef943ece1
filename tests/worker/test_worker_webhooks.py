"""The worker's webhook setting: a malformed RELMAN_WEBHOOK_ALLOW_NETWORKS stops it at start,
naming the variable and the entry."""

from __future__ import annotations

import pytest

from common.errors import BadInput
from worker.main import run_worker


async def test_a_malformed_allowed_network_stops_the_worker_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("RELMAN_NOTIFY_SNS_TOPIC_ARN", "RELMAN_NOTIFY_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RELMAN_WEBHOOK_ALLOW_NETWORKS", "10.20.0.0/16,10.30.0.0/33")

    with pytest.raises(BadInput) as caught:
        await run_worker()

    assert str(caught.value) == (
        "worker configuration: RELMAN_WEBHOOK_ALLOW_NETWORKS: '10.30.0.0/33' is not a network "
        "such as 10.20.0.0/16 or fd12::/64"
    )
