"""Alarm checks and bake watching against a moto server, run in Temporal's ActivityEnvironment.

moto never evaluates alarms, so tests flip them with ``set_alarm_state``. Bakes last tens of
milliseconds: these are real waits inside the activity, not workflow time to skip.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from activities import health as health_module
from activities.aws import AwsClients
from activities.health import HealthActivities
from models.messages import AlarmCheckInput, BakeGap, BakeInput, BakeProgress
from tests.conftest import free_port
from workflows.steps import unread_message

ROLE_ARN = "arn:aws:iam::111111111111:role/relman-deployer"


def put_alarm(cloudwatch: Any, name: str, state: str | None = None, reason: str = "") -> None:
    """A metric alarm; moto creates it in INSUFFICIENT_DATA and leaves it there unless set."""
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/ApplicationELB",
        MetricName="HTTPCode_Target_5XX_Count",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=10.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    if state is not None:
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)


@pytest.fixture
def cloudwatch(aws: AwsClients) -> Any:
    return aws.client("cloudwatch")


@pytest.fixture
def health(aws: AwsClients) -> HealthActivities:
    return HealthActivities(aws)


def bake(alarms: list[str], duration: float, interval: float = 0.02, **scope: Any) -> BakeInput:
    return BakeInput(
        release_id="shop-2.4.0",
        wave="eu",
        alarms=alarms,
        duration=timedelta(seconds=duration),
        interval=timedelta(seconds=interval),
        **scope,
    )


def check(alarms: list[str], **scope: Any) -> AlarmCheckInput:
    return AlarmCheckInput(release_id="shop-2.4.0", wave="eu", alarms=alarms, **scope)


def env_with(**info: Any) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(ActivityEnvironment.default_info(), **info)
    return env


# --- check_alarms -----------------------------------------------------------------------


def test_check_reports_alarms_already_firing_with_their_reason(
    health: HealthActivities, cloudwatch: Any
) -> None:
    put_alarm(cloudwatch, "api-5xx", "ALARM", "Threshold Crossed: 42 > 10")
    put_alarm(cloudwatch, "api-latency", "OK", "p99 120ms < 500ms")
    put_alarm(cloudwatch, "queue-depth")

    result = ActivityEnvironment().run(
        health.check_alarms, check(["api-latency", "api-5xx", "queue-depth"])
    )

    assert not result.ok
    assert [(a.name, a.reason) for a in result.firing] == [
        ("api-5xx", "Threshold Crossed: 42 > 10")
    ]
    assert result.firing[0].since is not None


def test_check_of_quiet_alarms_or_none_is_ok(health: HealthActivities, cloudwatch: Any) -> None:
    put_alarm(cloudwatch, "api-5xx")
    env = ActivityEnvironment()

    assert env.run(health.check_alarms, check(["api-5xx", "api-5xx"])).ok
    assert env.run(health.check_alarms, check([])).ok


def test_missing_alarm_is_a_non_retryable_error_naming_it(
    health: HealthActivities, cloudwatch: Any
) -> None:
    put_alarm(cloudwatch, "api-5xx")

    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(health.check_alarms, check(["api-5xx", "api-5xxx"]))

    assert (
        raised.value.message == "wave 'eu': CloudWatch alarm 'api-5xxx' does not exist in us-east-1"
    )
    assert raised.value.type == "AlarmNotFound"
    assert raised.value.non_retryable


def test_alarms_are_read_in_the_departments_account(
    health: HealthActivities, aws: AwsClients
) -> None:
    put_alarm(aws.client("cloudwatch", "eu-west-1", ROLE_ARN), "api-5xx", "ALARM", "42 > 10")
    scope = {"region": "eu-west-1", "role_arn": ROLE_ARN}

    firing = ActivityEnvironment().run(health.check_alarms, check(["api-5xx"], **scope)).firing
    assert [a.name for a in firing] == ["api-5xx"]

    # The same name in the default account does not exist: the account is part of the check.
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(health.check_alarms, check(["api-5xx", "db-cpu"]))
    assert raised.value.message == (
        "wave 'eu': CloudWatch alarms 'api-5xx', 'db-cpu' do not exist in us-east-1"
    )
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(health.check_alarms, check(["db-cpu"], **scope))
    assert raised.value.message == (
        "wave 'eu': CloudWatch alarm 'db-cpu' does not exist in eu-west-1, account 111111111111"
    )


def test_more_than_a_hundred_alarms_are_read_in_batches_aws_accepts(
    health: HealthActivities, cloudwatch: Any
) -> None:
    names = [f"alarm-{i:03}" for i in range(130)]
    for name in names:
        put_alarm(cloudwatch, name)
    cloudwatch.set_alarm_state(AlarmName="alarm-120", StateValue="ALARM", StateReason="boom")
    batch_sizes: list[int] = []
    cloudwatch.meta.events.register(
        "provide-client-params.monitoring.DescribeAlarms",
        lambda params, **_: batch_sizes.append(len(params["AlarmNames"])),
    )

    result = ActivityEnvironment().run(health.check_alarms, check(names))

    assert [a.name for a in result.firing] == ["alarm-120"]
    assert batch_sizes == [100, 30]  # DescribeAlarms rejects more than 100 names


# --- watch_alarms (bake) ------------------------------------------------------------------


def heartbeats_after_reads(beats: list[BakeProgress]) -> list[BakeProgress]:
    """The heartbeat sent after each read. A read slower than the heartbeat interval (a busy
    machine) adds heartbeats that repeat the progress so far."""
    return [
        b
        for i, b in enumerate(beats)
        if b.polls and (i + 1 == len(beats) or beats[i + 1].polls != b.polls)
    ]


def test_quiet_bake_returns_ok_after_its_duration_heartbeating_progress(
    health: HealthActivities, cloudwatch: Any
) -> None:
    put_alarm(cloudwatch, "api-5xx")
    env = ActivityEnvironment()
    beats: list[BakeProgress] = []
    env.on_heartbeat = lambda details: beats.append(BakeProgress.model_validate(details))

    result = env.run(health.watch_alarms, bake(["api-5xx"], duration=0.5, interval=0.1))

    assert result.ok
    assert result.elapsed_seconds >= 0.5
    # At 0, 0.1, ... and the deadline; a busy machine may fit fewer polls into the bake, and
    # a read slower than the interval adds heartbeats repeating the progress so far.
    after_reads = heartbeats_after_reads(beats)
    assert result.polls == len(after_reads) >= 3
    assert len({b.deadline for b in beats}) == 1
    assert [b.polls for b in after_reads] == list(range(1, len(after_reads) + 1))
    assert beats == sorted(beats, key=lambda b: b.elapsed_seconds)


def test_alarm_firing_mid_bake_ends_it_with_the_alarm_and_reason(
    health: HealthActivities, cloudwatch: Any
) -> None:
    put_alarm(cloudwatch, "api-5xx")
    put_alarm(cloudwatch, "api-latency")
    env = ActivityEnvironment()

    def fire_after_first_poll(details: Any) -> None:
        if details["polls"] == 1:
            cloudwatch.set_alarm_state(
                AlarmName="api-latency", StateValue="ALARM", StateReason="p99 900ms > 500ms"
            )

    env.on_heartbeat = fire_after_first_poll
    started = time.monotonic()

    result = env.run(health.watch_alarms, bake(["api-5xx", "api-latency"], duration=60))

    assert time.monotonic() - started < 1
    assert not result.ok
    assert [(a.name, a.reason) for a in result.firing] == [("api-latency", "p99 900ms > 500ms")]
    assert result.polls == 2


def test_bake_with_a_missing_alarm_fails_instead_of_passing(health: HealthActivities) -> None:
    with pytest.raises(ApplicationError, match="CloudWatch alarm 'api-5xx' does not exist"):
        ActivityEnvironment().run(health.watch_alarms, bake(["api-5xx"], duration=60))


def test_bake_resumed_from_an_older_relmans_heartbeat_counts_its_elapsed_time_as_watched(
    health: HealthActivities, cloudwatch: Any
) -> None:
    put_alarm(cloudwatch, "api-5xx")
    now = datetime.now(UTC)
    # What a crashed attempt of a relman that counted elapsed time last heartbeated, as the
    # pydantic converter decodes it: 59m59.9s of a one-hour bake done.
    last_beat = BakeProgress(
        started_at=now - timedelta(minutes=59, seconds=59.9),
        deadline=now + timedelta(seconds=0.1),
        elapsed_seconds=3599.9,
        polls=360,
    ).model_dump(mode="json")
    env = env_with(attempt=2, heartbeat_details=[last_beat])
    started = time.monotonic()

    result = env.run(health.watch_alarms, bake(["api-5xx"], duration=3600, interval=0.03))

    assert time.monotonic() - started < 1
    assert result.ok
    assert result.polls > 360
    assert result.elapsed_seconds >= 3600


def test_resumed_bake_sees_an_alarm_that_fired_while_no_worker_watched(
    health: HealthActivities, cloudwatch: Any
) -> None:
    put_alarm(cloudwatch, "api-5xx", "ALARM", "Threshold Crossed")
    now = datetime.now(UTC)
    last_beat = BakeProgress(
        started_at=now - timedelta(minutes=5),
        deadline=now - timedelta(seconds=1),  # the deadline passed while the worker was down
        elapsed_seconds=290,
        polls=29,
    ).model_dump(mode="json")

    result = env_with(attempt=2, heartbeat_details=[last_beat]).run(
        health.watch_alarms, bake(["api-5xx"], duration=300)
    )

    assert [a.name for a in result.firing] == ["api-5xx"]
    assert result.polls == 30


def test_bake_polls_often_enough_to_meet_its_heartbeat_timeout(
    health: HealthActivities, cloudwatch: Any
) -> None:
    put_alarm(cloudwatch, "api-5xx")
    env = env_with(heartbeat_timeout=timedelta(seconds=0.2))
    started = time.monotonic()

    result = env.run(health.watch_alarms, bake(["api-5xx"], duration=0.6, interval=600))

    # Polls come every 0.1 s (half the heartbeat timeout), not every 600 s: a busy machine
    # may fit fewer than six into the bake, never only the first and the last.
    assert time.monotonic() - started < 30
    assert result.ok
    assert result.polls >= 3


def test_cancelling_a_bake_stops_its_wait(health: HealthActivities, cloudwatch: Any) -> None:
    put_alarm(cloudwatch, "api-5xx")
    env = ActivityEnvironment()
    first_poll = threading.Event()
    env.on_heartbeat = lambda details: first_poll.set()
    started = time.monotonic()

    # A sync activity runs on its caller's thread; cancellation comes from another, as it
    # does on a worker.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(
            env.run, health.watch_alarms, bake(["api-5xx"], duration=3600, interval=600)
        )
        assert first_poll.wait(timeout=2)
        env.cancel()
        with pytest.raises(CancelledError):
            running.result(timeout=2)

    assert time.monotonic() - started < 1


# --- watched time: gaps in reading the alarms ----------------------------------------------

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    """The bake's clock (``health._now``) and its wait between polls (``health._pause``):
    a poll takes no time, a pause moves the clock. From ``down_from`` (seconds after T0)
    until ``down_until`` the alarms are read through an endpoint where nothing listens."""

    def __init__(
        self, health: HealthActivities, down_from: float = 0.0, down_until: float = 0.0
    ) -> None:
        self.now = T0
        self.health, self.reachable = health, health.aws
        self.unreachable = AwsClients(
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            default_region="us-east-1",
            max_attempts=1,
        )
        self.down_from, self.down_until = down_from, down_until

    def seconds(self) -> float:
        return (self.now - T0).total_seconds()

    def pause(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        down = self.down_from <= self.seconds() < self.down_until
        self.health.aws = self.unreachable if down else self.reachable


@pytest.fixture
def clock(health: HealthActivities, monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(health)
    monkeypatch.setattr(health_module, "_now", lambda: clock.now)
    monkeypatch.setattr(health_module, "_pause", clock.pause)
    return clock


def unreachable(clock: Clock) -> str:
    """What botocore says when the endpoint does not answer."""
    return f'Could not connect to the endpoint URL: "{clock.unreachable.endpoint_url}/"'


def test_aws_unreachable_for_29_of_30s_extends_the_bake_by_the_unread_time(
    health: HealthActivities, cloudwatch: Any, clock: Clock
) -> None:
    put_alarm(cloudwatch, "api-5xx")
    clock.down_from, clock.down_until = 0.5, 29.5  # reads at 1..29 s fail
    env = ActivityEnvironment()
    beats: list[BakeProgress] = []
    env.on_heartbeat = lambda details: beats.append(BakeProgress.model_validate(details))

    result = env.run(health.watch_alarms, bake(["api-5xx"], duration=30, interval=1, percent=10))

    assert result.ok
    # Read at 0 s, then not until 30 s: 30 s unread, so the bake ends after 60 s.
    assert result.gaps == [
        BakeGap(start=T0, end=T0 + timedelta(seconds=30), error=unreachable(clock))
    ]
    assert (result.watched_seconds, result.elapsed_seconds) == (30.0, 60.0)
    assert result.polls == len(heartbeats_after_reads(beats)) == 61
    assert max(b.unread_seconds for b in beats) == 30.0
    # The wave writes the gap into the release's timeline.
    assert unread_message(result.gaps[0], 10) == (
        "alarms unread for 30s while baking at 10% (09:00:00 to 09:00:30 UTC, last error: "
        f"{unreachable(clock)}): the bake lasts 30s longer"
    )


def test_short_gaps_count_as_watched(
    health: HealthActivities, cloudwatch: Any, clock: Clock
) -> None:
    put_alarm(cloudwatch, "api-5xx")
    clock.down_from, clock.down_until = 4.5, 6.5  # two failed reads: 3 s between reads

    result = ActivityEnvironment().run(
        health.watch_alarms, bake(["api-5xx"], duration=10, interval=1)
    )

    assert result.ok
    assert result.gaps == []
    assert (result.watched_seconds, result.elapsed_seconds) == (10.0, 10.0)


def test_unread_time_beyond_the_limit_fails_the_bake_naming_wave_time_and_limit(
    health: HealthActivities, cloudwatch: Any, clock: Clock
) -> None:
    put_alarm(cloudwatch, "api-5xx")
    clock.down_from, clock.down_until = 0.5, 3600

    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(
            health.watch_alarms,
            bake(["api-5xx"], duration=30, interval=1, unread_limit=timedelta(seconds=20),
                 percent=50),
        )  # fmt: skip

    # Failed as soon as the unread time passed the limit, not when AWS came back.
    assert clock.seconds() == 21
    assert raised.value.message == (
        "alarms unread for 21s while baking at 50%, more than the wave's bake_unread_limit "
        f"of 20s (last error: {unreachable(clock)})"
    )
    assert (raised.value.type, raised.value.non_retryable) == ("BakeUnwatched", True)


def test_a_worker_down_16s_of_a_60s_bake_extends_it_by_the_time_no_worker_read(
    health: HealthActivities, cloudwatch: Any, clock: Clock
) -> None:
    put_alarm(cloudwatch, "api-5xx")
    # The first attempt watched 20 s, last read the alarms at 20 s, then its worker died;
    # the retried attempt starts 16 s later.
    first = BakeProgress(
        started_at=T0,
        deadline=T0 + timedelta(seconds=60),
        elapsed_seconds=20,
        polls=21,
        watched_seconds=20,
        last_read_at=T0 + timedelta(seconds=20),
    )
    clock.now = T0 + timedelta(seconds=36)

    result = env_with(attempt=2, heartbeat_details=[first.model_dump(mode="json")]).run(
        health.watch_alarms, bake(["api-5xx"], duration=60, interval=1)
    )

    assert result.ok
    assert result.gaps == [
        BakeGap(start=T0 + timedelta(seconds=20), end=T0 + timedelta(seconds=36))
    ]
    assert (result.watched_seconds, result.elapsed_seconds) == (60.0, 76.0)
    assert unread_message(result.gaps[0], 100) == (
        "alarms unread for 16s while baking at 100% (09:00:20 to 09:00:36 UTC, no worker "
        "read them): the bake lasts 16s longer"
    )


def test_a_worker_down_longer_than_the_limit_fails_the_bake_when_it_resumes(
    health: HealthActivities, cloudwatch: Any, clock: Clock
) -> None:
    put_alarm(cloudwatch, "api-5xx")
    first = BakeProgress(
        started_at=T0,
        deadline=T0 + timedelta(minutes=30),
        elapsed_seconds=60,
        polls=7,
        watched_seconds=60,
        last_read_at=T0 + timedelta(seconds=60),
    )
    clock.now = T0 + timedelta(minutes=7, seconds=30)

    with pytest.raises(ApplicationError) as raised:
        env_with(attempt=3, heartbeat_details=[first.model_dump(mode="json")]).run(
            health.watch_alarms, bake(["api-5xx"], duration=1800, interval=10)
        )

    assert raised.value.message == (
        "alarms unread for 6m30s while baking, more than the wave's bake_unread_limit of 5m "
        "(no worker read them)"
    )


def test_an_alarm_firing_when_reads_resume_ends_the_bake_with_the_gap(
    health: HealthActivities, cloudwatch: Any, clock: Clock
) -> None:
    put_alarm(cloudwatch, "api-5xx", "ALARM", "Threshold Crossed")
    clock.down_from, clock.down_until = 0.0, 9.5
    clock.health.aws = clock.unreachable

    result = ActivityEnvironment().run(
        health.watch_alarms, bake(["api-5xx"], duration=30, interval=1)
    )

    assert [a.name for a in result.firing] == ["api-5xx"]
    assert [(g.start, g.end) for g in result.gaps] == [(T0, T0 + timedelta(seconds=10))]


def test_a_read_that_hangs_keeps_heartbeating_until_the_limit_fails_the_bake(
    health: HealthActivities, cloudwatch: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_alarm(cloudwatch, "api-5xx")
    answered = threading.Event()
    real = health._firing

    def hanging(input: AlarmCheckInput) -> Any:
        if clock.seconds() > 0:  # the endpoint stops answering after the first read
            answered.wait(10)
        return real(input)

    monkeypatch.setattr(health, "_firing", hanging)
    env = ActivityEnvironment()
    beats: list[Any] = []

    def beat(details: Any) -> None:
        beats.append(details)
        # A second of the bake per heartbeat once the first read answered (on a busy machine
        # that read itself may outlast a heartbeat interval: those beats say polls 0).
        if details["polls"]:
            clock.now += timedelta(seconds=1)

    env.on_heartbeat = beat
    started = time.monotonic()

    with pytest.raises(ApplicationError) as raised:
        env.run(
            health.watch_alarms,
            bake(["api-5xx"], duration=60, interval=0.05, unread_limit=timedelta(seconds=5)),
        )
    answered.set()

    assert time.monotonic() - started < 5
    assert raised.value.message == (
        "alarms unread for 6s while baking, more than the wave's bake_unread_limit of 5s "
        "(last error: DescribeAlarms has not answered)"
    )
    # One poll, then heartbeats while its successor hung, until the limit was passed.
    assert [b["polls"] for b in beats if b["polls"]] == [1] * 5


def test_a_gap_of_throttled_reads_names_the_aws_error(
    health: HealthActivities, cloudwatch: Any, clock: Clock
) -> None:
    put_alarm(cloudwatch, "api-5xx")

    def throttled(**_: Any) -> None:
        if 0.5 <= clock.seconds() < 5.5:
            error = {"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}
            raise ClientError(error, "DescribeAlarms")

    cloudwatch.meta.events.register("before-call.monitoring.DescribeAlarms", throttled)

    result = ActivityEnvironment().run(
        health.watch_alarms, bake(["api-5xx"], duration=10, interval=1)
    )

    assert result.gaps == [
        BakeGap(
            start=T0,
            end=T0 + timedelta(seconds=6),
            error="DescribeAlarms failed: Throttling: Rate exceeded",
        )
    ]
    assert (result.watched_seconds, result.elapsed_seconds) == (10.0, 16.0)
