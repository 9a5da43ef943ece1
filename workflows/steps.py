"""Pure rules of a wave's steps and of how failures read: which targets a traffic step
changes, how long a batch activity may take, and the messages for alarms and errors.

No workflow API here: ``WaveWorkflow`` and ``ReleaseWorkflow`` call these by name.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    TerminatedError,
    TimeoutError,
    WorkflowAlreadyStartedError,
)

from models.messages import BATCH_FAN_OUT, FiringAlarm, WaveProgress
from models.plan import TRAFFIC_KINDS, Target, Wave
from models.preflight import PreflightInput

# A preflight attempt: a few read-only AWS calls per target and alarm set.
PREFLIGHT_TIMEOUT = timedelta(minutes=1)


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
