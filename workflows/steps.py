"""Pure rules of a wave's steps and of how failures read: which targets a traffic step
changes, how long a batch activity may take, and the messages for alarms, unread alarms and
errors.

No workflow API here: ``WaveWorkflow`` and ``ReleaseWorkflow`` call these by name.
"""

from __future__ import annotations

from datetime import UTC, timedelta

from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    TerminatedError,
    TimeoutError,
    WorkflowAlreadyStartedError,
)

from models.durations import format_duration
from models.messages import BATCH_FAN_OUT, BakeGap, FiringAlarm, WaveProgress
from models.plan import TRAFFIC_KINDS, Target, Wave
from models.preflight import PreflightInput

# A preflight attempt: a few read-only AWS calls per target and alarm set.
PREFLIGHT_TIMEOUT = timedelta(minutes=1)

# workflow.patched() id shared by the wave and the release: snapshot, apply and restore
# activities run under TARGET_HEARTBEAT_TIMEOUT (they heartbeat every second, batches with
# the targets done so far, which a retry skips), so a worker that dies in one is replaced
# in seconds; a wave reports its step's targets as applying when the step starts.
FAST_FAILOVER = "fast-failover"
TARGET_HEARTBEAT_TIMEOUT = timedelta(seconds=6)


def due_targets(targets: list[Target], step: int) -> list[Target]:
    """The targets a traffic step changes: all of them at the first step, then only those
    that shift traffic (a parameter or an artifact is set once)."""
    return [t for t in targets if step == 0 or t.kind in TRAFFIC_KINDS]


def batch_timeout(per_attempt: timedelta, targets: int) -> timedelta:
    """A batch activity's attempt: ``per_attempt`` for each share of targets worked on at once."""
    return per_attempt * max(1, -(-targets // BATCH_FAN_OUT))


def preflight_timeout(check: PreflightInput) -> timedelta:
    """A preflight attempt's timeout: a minute per share of what it checks."""
    return batch_timeout(PREFLIGHT_TIMEOUT, len(check.targets) + len(check.alarms))


def unread_message(gap: BakeGap, percent: int) -> str:
    """A bake's gap in reading its alarms, for the timeline."""
    seconds = format_duration(timedelta(seconds=round(gap.seconds)))
    start, end = (f"{t.astimezone(UTC):%H:%M:%S}" for t in (gap.start, gap.end))
    why = f"last error: {gap.error}" if gap.error else "no worker read them"
    return (
        f"alarms unread for {seconds} while baking at {percent}% ({start} to {end} UTC, "
        f"{why}): the bake lasts {seconds} longer"
    )


def firing_names(firing: list[FiringAlarm]) -> str:
    """The alarms in ALARM, each with CloudWatch's reason, for an event or an error."""
    return ", ".join(f"{a.name} ({a.reason})" for a in firing)


# The error type of an activity that found a resource changed by someone else since relman
# wrote it (activities.targets.base.drift_error).
RESOURCE_DRIFTED = "ResourceDrifted"


def failure_type(err: BaseException) -> str | None:
    """The type of the application error an activity raised, if it raised one."""
    if isinstance(err, ActivityError) and err.__cause__ is not None:
        err = err.__cause__
    return err.type if isinstance(err, ApplicationError) else None


def cause(err: BaseException) -> str:
    """The message of the error an activity raised (not of the errors it was raised from)."""
    if isinstance(err, ActivityError) and err.__cause__ is not None:
        err = err.__cause__
    return err.message if isinstance(err, ApplicationError) else str(err)


def wave_details(wave: Wave, progress: WaveProgress) -> str:
    """The wave workflow's "current details" in the Temporal Web UI."""
    return (
        f"wave {wave.name}: {progress.phase.value}, step {progress.step + 1}"
        f"/{len(wave.traffic)} at {progress.percent}%"
        + (f"; {progress.waiting_for}" if progress.waiting_for else "")
    )


def child_failure(child_id: str, err: ChildWorkflowError | WorkflowAlreadyStartedError) -> str:
    """Why a wave's child workflow ended without an outcome, for the timeline and status."""
    if isinstance(err, WorkflowAlreadyStartedError):
        return f"wave workflow {child_id} could not start: a workflow with that id already exists"
    reason = err.cause
    if isinstance(reason, TerminatedError):
        detail = f": {reason.message}" if reason.message and reason.message != "Terminated" else ""
        return f"wave workflow {child_id} was terminated{detail}"
    if isinstance(reason, TimeoutError):
        return f"wave workflow {child_id} timed out"
    return f"wave workflow {child_id} failed: {cause(reason) if reason else err.message}"
