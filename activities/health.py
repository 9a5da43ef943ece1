"""A wave's health: its CloudWatch alarms, checked before traffic moves and watched in bake."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.aws import AwsClients, acting_for
from activities.errors import aws_call
from models.messages import (
    CHECK_ALARMS,
    WATCH_ALARMS,
    AlarmCheckInput,
    AlarmCheckResult,
    BakeInput,
    BakeProgress,
    BakeResult,
    FiringAlarm,
)

# DescribeAlarms accepts at most 100 names per request.
ALARM_NAMES_PER_CALL = 100
# Without AlarmTypes, DescribeAlarms returns metric alarms only and a composite alarm
# would look missing.
ALARM_TYPES = ["MetricAlarm", "CompositeAlarm"]


class AlarmNotFound(Exception):
    """A wave names a CloudWatch alarm that does not exist: a typo must not pass as healthy."""


def _now() -> datetime:
    # Wall clock, not monotonic: the deadline must mean the same on the worker that resumes.
    return datetime.now(UTC)


def _where(input: AlarmCheckInput, region: str) -> str:
    if input.role_arn is None:
        return region
    account = input.role_arn.split(":")[4] if input.role_arn.count(":") >= 5 else input.role_arn
    return f"{region}, account {account}"


class HealthActivities:
    """Read a wave's CloudWatch alarms; boto3 clients come from the worker."""

    def __init__(self, aws: AwsClients):
        self.aws = aws

    def _firing(self, input: AlarmCheckInput) -> list[FiringAlarm]:
        """The alarms in ALARM, in the wave's order; every name must exist."""
        names = list(dict.fromkeys(input.alarms))
        if not names:
            return []
        with acting_for(input.release_id, input.application):
            cloudwatch = self.aws.client(
                "cloudwatch", input.region, input.role_arn, input.external_id
            )
        paginator = cloudwatch.get_paginator("describe_alarms")
        found: dict[str, dict[str, Any]] = {}
        with aws_call("DescribeAlarms", f"alarms of wave {input.wave!r}"):
            for start in range(0, len(names), ALARM_NAMES_PER_CALL):
                chunk = names[start : start + ALARM_NAMES_PER_CALL]
                for page in paginator.paginate(AlarmNames=chunk, AlarmTypes=ALARM_TYPES):
                    for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                        found[alarm["AlarmName"]] = alarm
        missing = [name for name in names if name not in found]
        if missing:
            where = _where(input, self.aws.region(input.region))
            quoted = ", ".join(repr(name) for name in missing)
            verb = "does" if len(missing) == 1 else "do"
            noun = "alarm" if len(missing) == 1 else "alarms"
            raise ApplicationError(
                f"wave {input.wave!r}: CloudWatch {noun} {quoted} {verb} not exist in {where}",
                type=AlarmNotFound.__name__,
                non_retryable=True,
            )
        return [
            FiringAlarm(
                name=name,
                reason=found[name].get("StateReason", ""),
                since=found[name].get("StateUpdatedTimestamp"),
            )
            for name in names
            if found[name].get("StateValue") == "ALARM"
        ]

    @activity.defn(name=CHECK_ALARMS)
    def check_alarms(self, input: AlarmCheckInput) -> AlarmCheckResult:
        """Which of the wave's alarms are in ALARM now; a wave with any does not start."""
        firing = self._firing(input)
        if firing:
            activity.logger.warning(
                "wave %r: alarms firing: %s", input.wave, ", ".join(a.name for a in firing)
            )
        return AlarmCheckResult(firing=firing)

    @activity.defn(name=WATCH_ALARMS)
    def watch_alarms(self, input: BakeInput) -> BakeResult:
        """Poll the wave's alarms until ``duration`` has passed or one goes into ALARM.

        Each poll heartbeats a ``BakeProgress``; a retried attempt (worker crash, heartbeat
        timeout) resumes from it and keeps the first attempt's deadline.
        """
        progress = self._resume(input)
        interval = input.interval
        heartbeat_timeout = activity.info().heartbeat_timeout
        if heartbeat_timeout:
            # Polling more often than asked is harmless; missing a heartbeat fails the attempt.
            interval = min(interval, heartbeat_timeout / 2)
        while True:
            firing = self._firing(input)
            now = _now()
            progress = progress.model_copy(
                update={
                    "polls": progress.polls + 1,
                    "elapsed_seconds": (now - progress.started_at).total_seconds(),
                }
            )
            # A plain JSON dict reads back the same under any data converter.
            activity.heartbeat(progress.model_dump(mode="json"))
            if firing:
                activity.logger.warning(
                    "wave %r: bake stopped after %.0fs, alarms firing: %s",
                    input.wave,
                    progress.elapsed_seconds,
                    ", ".join(a.name for a in firing),
                )
                return BakeResult(
                    firing=firing, polls=progress.polls, elapsed_seconds=progress.elapsed_seconds
                )
            remaining = progress.deadline - now
            if remaining <= timedelta(0):
                return BakeResult(polls=progress.polls, elapsed_seconds=progress.elapsed_seconds)
            # Returns early on cancellation, which Temporal delivers in a heartbeat response.
            activity.wait_for_cancelled_sync(min(interval, remaining))
            if activity.is_cancelled():
                raise CancelledError(f"bake of wave {input.wave!r} cancelled")

    def _resume(self, input: BakeInput) -> BakeProgress:
        """The last heartbeat's progress on a retried attempt, else a bake starting now."""
        details = activity.info().heartbeat_details
        if details:
            try:
                progress = BakeProgress.model_validate(details[0])
            except ValidationError:
                activity.logger.warning("unreadable bake heartbeat %r: baking from zero", details)
            else:
                activity.logger.info(
                    "wave %r: resuming bake at %.0fs, deadline %s",
                    input.wave,
                    progress.elapsed_seconds,
                    progress.deadline.isoformat(),
                )
                return progress
        now = _now()
        return BakeProgress(
            started_at=now, deadline=now + input.duration, elapsed_seconds=0.0, polls=0
        )

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [self.check_alarms, self.watch_alarms]
