"""Bakes count only watched time: a release whose alarms go unread mid-bake.

The real worker on the time-skipping server, AWS in moto. The bake activity's clock is the
test's (``activities.health._now``; each wait between polls moves it, and takes no real
time), and from one moment of that clock to another the worker reads CloudWatch through an
endpoint where nothing listens, as when AWS is unreachable from the worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activities import health
from activities.aws import AwsClients
from models.status import ReleasePhase
from tests.conftest import free_port
from tests.helpers import (
    assert_replays,
    create_alarm,
    events,
    make_plan,
    seed,
    ssm,
    ssm_values,
    start_release,
    status_of,
    wave,
)

ALARM = "canary-5xx"
PARAMETER = "/bake/config"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Outage:
    """The bake's clock, and the stretch of it during which CloudWatch is unreachable."""

    def __init__(self, down_from: float, down_until: float) -> None:
        self.now = T0
        self.down_from, self.down_until = down_from, down_until
        self.endpoint = f"http://127.0.0.1:{free_port()}"
        self.nowhere = AwsClients(endpoint_url=self.endpoint, max_attempts=1)

    @property
    def seconds(self) -> float:
        return (self.now - T0).total_seconds()

    @property
    def down(self) -> bool:
        return self.down_from <= self.seconds < self.down_until

    def pause(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> Iterator[Outage]:
    outage = Outage(0.0, 0.0)
    real = AwsClients.client

    def client(self: AwsClients, service: str, *args: Any, **kwargs: Any) -> Any:
        if service == "cloudwatch" and outage.down:
            return real(outage.nowhere, service, *args, **kwargs)
        return real(self, service, *args, **kwargs)

    monkeypatch.setattr(health, "_now", lambda: outage.now)
    monkeypatch.setattr(health, "_pause", outage.pause)
    monkeypatch.setattr(AwsClients, "client", client)
    yield outage


def canary(aws: AwsClients, **fields: Any) -> Any:
    """A one-wave release: a parameter, then a 30 s bake watching an alarm (polled every s)."""
    seed(aws, {PARAMETER: "old"})
    create_alarm(aws, ALARM, "OK", "quiet")
    return make_plan(
        [ssm("config", PARAMETER, "new")],
        [wave("canary", ["config"], bake="30s", bake_interval="1s", alarms=[ALARM], **fields)],
    )


async def test_alarms_unread_for_most_of_a_bake_extend_it_and_say_so_in_the_timeline(
    time_skipping_env, aws, make_worker, task_queue, outage
):
    plan = canary(aws)
    outage.down_from, outage.down_until = 0.5, 29.5  # read at 0 s, then not until 30 s
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        outcome = await handle.result()
        status = await status_of(handle)
    await assert_replays(handle)

    assert outcome.phase == ReleasePhase.COMPLETED
    # 30 s watched after the 30 s gap: the bake lasted 60 s of the activity's clock.
    assert outage.seconds == 60
    [unread] = events(status, "alarms_unread")
    assert unread.wave == "canary"
    assert unread.message == (
        "alarms unread for 30s while baking at 100% (09:00:00 to 09:00:30 UTC, last error: "
        f'Could not connect to the endpoint URL: "{outage.endpoint}/"): the bake lasts 30s '
        "longer"
    )
    kinds = [e.kind for e in status.timeline if e.wave == "canary"]
    assert kinds.index("traffic_shifted") < kinds.index("alarms_unread")
    assert ssm_values(aws, [PARAMETER]) == {PARAMETER: "new"}


async def test_alarms_unread_beyond_the_waves_limit_fail_the_step_and_roll_back(
    time_skipping_env, aws, make_worker, task_queue, outage
):
    plan = canary(aws, bake_unread_limit="20s")
    outage.down_from, outage.down_until = 0.5, 3600
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        outcome = await handle.result()
    await assert_replays(handle)

    assert outcome.phase == ReleasePhase.ROLLED_BACK
    assert outcome.error == (
        "wave canary: alarms unread for 21s while baking at 100%, more than the wave's "
        "bake_unread_limit of 20s (last error: Could not connect to the endpoint URL: "
        f'"{outage.endpoint}/")'
    )
    # It failed once the limit was passed, not when AWS came back.
    assert outage.seconds == 21
    assert ssm_values(aws, [PARAMETER]) == {PARAMETER: "old"}
