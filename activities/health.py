"""A wave's health: its CloudWatch alarms, checked before traffic moves and watched in bake."""

from __future__ import annotations

import concurrent.futures
import contextvars
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.aws import AwsClients, acting_for
from activities.errors import aws_call, error_code, permanent_error
from models.durations import format_duration
from models.messages import (
    BAKE_GAP_INTERVALS,
    CHECK_ALARMS,
    WATCH_ALARMS,
    AlarmCheckInput,
    AlarmCheckResult,
    BakeGap,
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
# Threads reading alarms for bakes (one per bake at a time; a worker runs at most as many
# activities at once).
READ_THREADS = 32
# While a read is under way the bake heartbeats at least this often (seconds).
HEARTBEAT_EVERY = 1.0


class AlarmNotFound(Exception):
    """A wave names a CloudWatch alarm that does not exist: a typo must not pass as healthy."""


class BakeUnwatched(Exception):
    """A bake's alarms went unread (AWS unreachable, no worker) for longer than its wave's
    ``bake_unread_limit``: the step cannot count as healthy."""


def _now() -> datetime:
    # Wall clock, not monotonic: a worker that resumes a bake measures the time since the
    # last read, made on another worker.
    return datetime.now(UTC)


def _pause(seconds: float) -> None:
    """Wait between polls; returns early when the activity is cancelled."""
    activity.wait_for_cancelled_sync(seconds)


def _count(
    progress: BakeProgress, now: datetime, error: str | None, longest_read_gap: timedelta
) -> BakeProgress:
    """``progress`` after a poll at ``now`` that read the alarms (``error`` None) or not.

    A successful read credits the time since the previous one as watched, or, when they
    are more than ``longest_read_gap`` apart, records that time as a gap."""
    update: dict[str, Any] = {
        "polls": progress.polls + 1,
        "elapsed_seconds": (now - progress.started_at).total_seconds(),
    }
    if error is not None:
        update["last_error"] = error
        return progress.model_copy(update=update)
    last = progress.last_read_at or now
    since = now - last
    if since > longest_read_gap:
        gap = BakeGap(start=last, end=now, error=progress.last_error)
        update["gaps"] = [*progress.gaps, gap]
        update["unread_seconds"] = progress.unread_seconds + since.total_seconds()
    else:
        update["watched_seconds"] = (progress.watched_seconds or 0.0) + since.total_seconds()
    update["last_read_at"] = now
    update["last_error"] = None
    return progress.model_copy(update=update)


def _open_gap(progress: BakeProgress, now: datetime, longest_read_gap: timedelta) -> float:
    """Seconds the alarms have gone unread since the last successful read, once that is
    longer than a gap may be (0 otherwise)."""
    if progress.last_read_at is None:
        return 0.0
    since = now - progress.last_read_at
    return since.total_seconds() if since > longest_read_gap else 0.0


def _result(progress: BakeProgress, firing: list[FiringAlarm]) -> BakeResult:
    return BakeResult(
        firing=firing,
        polls=progress.polls,
        elapsed_seconds=progress.elapsed_seconds,
        watched_seconds=progress.watched_seconds,
        gaps=progress.gaps,
    )


# An AWS error in a message: enough to tell what went wrong, never a traceback.
ERROR_SUMMARY_CHARS = 300


def _summary(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "")
        text = f"{exc.operation_name} failed: {code}" + (f": {message}" if message else "")
    else:
        text = str(exc) or type(exc).__name__
    return text if len(text) <= ERROR_SUMMARY_CHARS else text[: ERROR_SUMMARY_CHARS - 1] + "…"


def unwatched_message(input: BakeInput, unread_seconds: float, last_error: str | None) -> str:
    """Why a bake failed for want of reading its alarms: the step, the unread time, the
    wave's limit and the last error. (The release names the wave: ``wave canary: ...``.)"""
    at = f" at {input.percent}%" if input.percent is not None else ""
    # Rounded up: it is more than the limit.
    unread = format_duration(timedelta(seconds=math.ceil(unread_seconds)))
    return (
        f"alarms unread for {unread} while baking{at}, more than the wave's "
        f"bake_unread_limit of {format_duration(input.unread_limit)}"
        + (f" (last error: {last_error})" if last_error else " (no worker read them)")
    )


def _unwatched(input: BakeInput, unread_seconds: float, last_error: str | None) -> ApplicationError:
    message = unwatched_message(input, unread_seconds, last_error)
    activity.logger.warning("wave %r: bake failed: %s", input.wave, message)
    return ApplicationError(message, type=BakeUnwatched.__name__, non_retryable=True)


def _where(input: AlarmCheckInput, region: str) -> str:
    if input.role_arn is None:
        return region
    account = input.role_arn.split(":")[4] if input.role_arn.count(":") >= 5 else input.role_arn
    return f"{region}, account {account}"


class HealthActivities:
    """Read a wave's CloudWatch alarms; boto3 clients come from the worker."""

    def __init__(self, aws: AwsClients):
        self.aws = aws
        # A bake reads its alarms on one of these while its own thread heartbeats: a read
        # that botocore retries for long (AWS unreachable) must not look like a dead worker.
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=READ_THREADS, thread_name_prefix="relman-alarms"
        )

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
        """Poll the wave's alarms until they were watched, healthy, for ``duration``, or
        one goes into ALARM.

        Only watched time counts: time between two successful reads at most
        ``BAKE_GAP_INTERVALS`` intervals apart. A longer gap (AWS unreachable: the read
        fails and is tried again every interval; no worker: the bake resumes on another)
        is a ``BakeGap`` in the result, so the bake lasts that much longer; more than
        ``input.unread_limit`` of unread time in all fails the bake (``BakeUnwatched``).
        Each poll heartbeats a ``BakeProgress``; a retried attempt resumes from it.
        """
        progress = self._resume(input)
        interval = input.interval
        heartbeat_timeout = activity.info().heartbeat_timeout
        if heartbeat_timeout:
            # Polling more often than asked is harmless; missing a heartbeat fails the attempt.
            interval = min(interval, heartbeat_timeout / 2)
        longest_read_gap = input.interval * BAKE_GAP_INTERVALS
        while True:
            firing, error = self._read_heartbeating(input, progress, longest_read_gap, interval)
            now = _now()
            progress = _count(progress, now, error, longest_read_gap)
            # A plain JSON dict reads back the same under any data converter.
            activity.heartbeat(progress.model_dump(mode="json"))
            if error is None and firing:
                activity.logger.warning(
                    "wave %r: bake stopped after %.0fs, alarms firing: %s",
                    input.wave,
                    progress.elapsed_seconds,
                    ", ".join(a.name for a in firing),
                )
                return _result(progress, firing)
            unread = progress.unread_seconds + _open_gap(progress, now, longest_read_gap)
            if unread > input.unread_limit.total_seconds():
                raise _unwatched(input, unread, progress.last_error)
            remaining = input.duration.total_seconds() - (progress.watched_seconds or 0.0)
            if error is None and remaining <= 0:
                return _result(progress, [])
            wait = interval.total_seconds() if error else min(interval.total_seconds(), remaining)
            # Returns early on cancellation, which Temporal delivers in a heartbeat response.
            _pause(wait)
            if activity.is_cancelled():
                raise CancelledError(f"bake of wave {input.wave!r} cancelled")

    def _read_heartbeating(
        self,
        input: BakeInput,
        progress: BakeProgress,
        longest_read_gap: timedelta,
        interval: timedelta,
    ) -> tuple[list[FiringAlarm], str | None]:
        """``_read`` on a reader thread, heartbeating ``progress`` meanwhile; the bake fails
        as soon as the alarms have gone unread for longer than its limit, and stops when
        cancelled, without waiting for a read that hangs (it changes nothing)."""
        read = self._readers.submit(contextvars.copy_context().run, self._read, input)
        every = min(interval.total_seconds(), HEARTBEAT_EVERY)
        while not concurrent.futures.wait([read], timeout=every).done:
            activity.heartbeat(progress.model_dump(mode="json"))
            if activity.is_cancelled():
                raise CancelledError(f"bake of wave {input.wave!r} cancelled")
            unread = progress.unread_seconds + _open_gap(progress, _now(), longest_read_gap)
            if unread > input.unread_limit.total_seconds():
                waiting = "DescribeAlarms has not answered"
                raise _unwatched(input, unread, progress.last_error or waiting)
        return read.result()

    def _read(self, input: AlarmCheckInput) -> tuple[list[FiringAlarm], str | None]:
        """The alarms firing, or why they could not be read this time (AWS unreachable,
        throttling, 5xx). Errors a retry cannot fix (a missing alarm, access denied, no
        credentials) end the bake at once."""
        try:
            return self._firing(input), None
        except ApplicationError as exc:
            if exc.non_retryable:
                raise
            error = exc.message
        except (BotoCoreError, ClientError) as exc:
            final = permanent_error(exc, f"alarms of wave {input.wave!r}")
            if final is not None:
                raise final from exc
            error = _summary(exc)
        activity.logger.warning("wave %r: alarms unread: %s", input.wave, error)
        return [], error

    def _resume(self, input: BakeInput) -> BakeProgress:
        """The last heartbeat's progress on a retried attempt, else a bake starting now."""
        details = activity.info().heartbeat_details
        if details:
            try:
                progress = BakeProgress.model_validate(details[0])
            except ValidationError:
                activity.logger.warning("unreadable bake heartbeat %r: baking from zero", details)
            else:
                if progress.watched_seconds is None or progress.last_read_at is None:
                    # Heartbeated by a relman that counted elapsed time: all of it watched,
                    # up to its last poll.
                    progress = progress.model_copy(
                        update={
                            "watched_seconds": progress.elapsed_seconds,
                            "last_read_at": progress.started_at
                            + timedelta(seconds=progress.elapsed_seconds),
                        }
                    )
                activity.logger.info(
                    "wave %r: resuming bake with %.0fs of %.0fs watched",
                    input.wave,
                    progress.watched_seconds,
                    input.duration.total_seconds(),
                )
                return progress
        now = _now()
        return BakeProgress(
            started_at=now,
            deadline=now + input.duration,
            elapsed_seconds=0.0,
            polls=0,
            watched_seconds=0.0,
            last_read_at=now,
        )

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [self.check_alarms, self.watch_alarms]
