"""Pure rules of a wave's steps and of how failures read: which targets a traffic step
changes, how long a batch activity may take, and the messages for alarms, unread alarms and
errors.

No workflow API here but ``read``, which runs a read activity locally or through the task
queue: ``WaveWorkflow`` and ``ReleaseWorkflow`` call these by name.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any, TypeVar

from temporalio import workflow
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

ReadResult = TypeVar("ReadResult")

# A preflight attempt: a few read-only AWS calls per target and alarm set.
PREFLIGHT_TIMEOUT = timedelta(minutes=1)

# Snapshot, apply and restore activities heartbeat every second (batches with the targets
# done so far, which a retry skips): a worker that dies in one is replaced in seconds.
TARGET_HEARTBEAT_TIMEOUT = timedelta(seconds=6)

# A local read's retries that wait longer than this wait on a durable timer, the workflow
# task ended meanwhile: a read that AWS keeps failing does not hold up the workflow's
# queries (relman status) or its other handlers between attempts.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=1)


async def read(
    activity: str, arg: Any, result_type: type[ReadResult], **options: Any
) -> ReadResult:
    """Run the short read ``activity`` (one that changes nothing: the organisation policy,
    the names of the plan's resources, a preflight, a wave's alarm check before a step) as a
    local activity, in the workflow task that asks for it, on the worker running it: one
    marker event instead of a round trip through the server (three activity events, a
    workflow task of three more, and its wait in the task queue). ``options`` are those of
    ``execute_local_activity`` (timeouts, retry policy, summary); failures raise
    ``ActivityError``."""
    try:
        return await workflow.execute_local_activity(
            activity,
            arg,
            result_type=result_type,
            local_retry_threshold=LOCAL_RETRY_THRESHOLD,
            **options,
        )
    except ActivityError:
        raise
    except (ApplicationError, TimeoutError) as err:
        # A local activity that failed for good raises its own error, not one wrapped in an
        # ActivityError as an activity's is: wrap it, so callers handle both alike.
        raise ActivityError(
            f"local activity {activity} failed",
            scheduled_event_id=0,
            started_event_id=0,
            identity="",
            activity_type=activity,
            activity_id="",
            retry_state=None,
        ) from err


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
