"""The wave's state, its reports to the release, and the rules every step shares.

``WaveBase`` holds what ``WaveWorkflow`` (workflows/wave.py) keeps and the helpers that read
and report it; ``WaveWaits`` (wave_waits.py) and ``WaveSteps`` (wave_steps.py) build on it.
All of it is deterministic workflow code without module state: the wave module imports it
passed through the sandbox, so it is loaded once per worker instead of once for every wave
run (each wave is a new sandboxed instance, which re-imports its workflow's module).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        BATCH_FAN_OUT,
        AlarmCheckInput,
        FiringAlarm,
        WaveInput,
        WaveOutcome,
        WaveProgress,
        WaveReport,
    )
    from models.plan import Freeze, Target
    from models.status import TargetStatus, TimelineEvent


# Each attempt is a few AWS calls (botocore retries throttling inside it): a minute is
# ample, and it is how long a worker that dies mid-activity holds the wave up.
SNAPSHOT_TIMEOUT = timedelta(minutes=1)
APPLY_TIMEOUT = timedelta(minutes=1)
ALARM_CHECK_TIMEOUT = timedelta(minutes=1)
# A bake heartbeats every poll; three missed polls mean the worker is gone.
BAKE_HEARTBEATS_MISSED = 3
BAKE_MARGIN = timedelta(minutes=5)
# Applying gives up after a bounded number of attempts so the wave's failure policy runs.
APPLY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    # 1+2+4+...+60 s: an AWS outage of about four minutes is waited out before the wave
    # fails and its on_failure policy runs.
    maximum_attempts=10,
)
RECORD_SNAPSHOTS_SIGNAL = "record_snapshots"
# workflow.patched() ids: progress reports are sent without waiting for each to be delivered
# (side by side, which let them arrive out of order), then one at a time in order, a report
# that waited carrying everything since the last one.
PROGRESS_NOT_AWAITED = "progress-not-awaited"
PROGRESS_IN_ORDER = "progress-in-order"
WAVE_PROGRESS_SIGNAL = "wave_progress"
SYSTEM_ACTOR = "relman"
# workflow.patched() ids of behaviour changes that waves in flight must not see.
BAKE_WAITS_FOR_CANCEL = "bake-waits-for-cancel"
# One activity snapshots all the wave's targets, one per traffic step applies it to all.
BATCH_TARGETS = "batch-targets"
# No progress report of its own after the snapshot record (one signal less per wave).
NO_REPORT_AFTER_SNAPSHOTS = "no-report-after-snapshots"


class WaveFailed(Exception):
    """A step of the wave failed; the release applies the wave's ``on_failure`` policy."""


class WaveStopped(Exception):
    """The release asked the wave to stop (abort, rejection elsewhere, cancellation)."""


class WaveBase:
    """The wave's state (set by ``WaveWorkflow``) and the helpers that read and report it."""

    _input: WaveInput
    _paused: bool
    _stop: bool
    _freezes: list[Freeze]
    _override_window: bool
    _override_freeze: bool
    _wake: int
    _progress: WaveProgress
    _events: list[TimelineEvent]
    _parent: workflow.ExternalWorkflowHandle[Any]
    _reports: list[asyncio.Future[None]]
    _unsent: WaveReport | None
    _sender: asyncio.Future[None] | None

    # --- helpers -------------------------------------------------------------------------------

    def _active_targets(self) -> list[Target]:
        return [t for t in self._input.targets if t.name not in self._input.skipped]

    def _target(self, name: str) -> TargetStatus:
        return next(t for t in self._progress.targets if t.name == name)

    def _alarm_input(self) -> AlarmCheckInput:
        return AlarmCheckInput(
            release_id=self._input.release_id,
            wave=self._input.wave.name,
            alarms=self._input.wave.alarms,
            region=self._input.alarm_region,
            role_arn=self._input.alarm_role_arn,
            external_id=self._input.alarm_external_id,
        )

    def _event(self, kind: str, message: str, target: str | None = None) -> None:
        self._events.append(
            TimelineEvent(
                at=workflow.now(),
                kind=kind,
                message=message,
                actor=SYSTEM_ACTOR,
                wave=self._input.wave.name,
                target=target,
            )
        )

    async def _report(self) -> None:
        """Tell the release where this wave stands and what happened since the last report.

        One signal per phase change keeps the release's status (and visibility) live while
        its history grows by a handful of events per step, not per target.
        """
        events, self._events = self._events, []
        progress = self._progress
        workflow.set_current_details(
            f"wave {self._input.wave.name}: {progress.phase.value}, step {progress.step + 1}"
            f"/{len(self._input.wave.traffic)} at {progress.percent}%"
            + (f"; {progress.waiting_for}" if progress.waiting_for else "")
        )
        # A copy: the signal is serialized when its task runs, by which time the wave may
        # have moved on, and a report must not carry a later phase than its events.
        report = WaveReport(
            wave=self._input.wave.name, progress=progress.model_copy(deep=True), events=events
        )
        if workflow.patched(PROGRESS_IN_ORDER):
            # Progress is informational: the wave goes on while one task delivers reports in
            # order. Reports made meanwhile become one: the latest progress, every event.
            if self._unsent is not None:
                report.events = [*self._unsent.events, *report.events]
            self._unsent = report
            if self._sender is None or self._sender.done():
                self._sender = asyncio.ensure_future(self._send_reports())
        elif workflow.patched(PROGRESS_NOT_AWAITED):
            # How waves started before progress-in-order send reports: side by side.
            self._reports.append(
                asyncio.ensure_future(self._parent.signal(WAVE_PROGRESS_SIGNAL, report))
            )
        else:
            await self._parent.signal(WAVE_PROGRESS_SIGNAL, report)

    async def _send_reports(self) -> None:
        while self._unsent is not None:
            report, self._unsent = self._unsent, None
            try:
                await self._parent.signal(WAVE_PROGRESS_SIGNAL, report)
            except Exception:  # the release has ended: it reads no more reports
                workflow.logger.warning("wave %s: a progress report was not delivered", report.wave)

    def _outcome(self, outcome: str, error: str | None = None) -> WaveOutcome:
        return WaveOutcome(
            outcome=outcome,
            failed_step=self._progress.step if outcome == "failed" else None,
            error=error,
            targets=self._progress.targets,
            events=self._events,
        )


async def wait_or_timeout(
    condition: Callable[[], bool], timeout: timedelta, summary: str | None = None
) -> bool:
    """Wait for ``condition`` at most ``timeout``; False when the time ran out.

    ``workflow.wait_condition`` raises ``TimeoutError`` at its timeout, which would fail
    the workflow; for a bake or a window wait running out is the normal way to go on.
    """
    try:
        await workflow.wait_condition(condition, timeout=timeout, timeout_summary=summary)
    except TimeoutError:
        return False
    return True


def firing_names(firing: list[FiringAlarm]) -> str:
    """The alarms in ALARM, each with CloudWatch's reason, for an event or an error."""
    return ", ".join(f"{a.name} ({a.reason})" for a in firing)


def batch_timeout(per_attempt: timedelta, targets: int) -> timedelta:
    """A batch activity's attempt: ``per_attempt`` for each share of targets worked on at once."""
    return per_attempt * max(1, -(-targets // BATCH_FAN_OUT))


def failure_of(err: ActivityError) -> WaveFailed | WaveStopped:
    """What an activity's failure means for the wave.

    Once the wave itself was cancelled (the release was cancelled), an activity that ends
    (cancelled, or timed out on a dead worker) stops the wave: it is no failure for
    ``on_failure`` to act on, nor to wait on an operator. An activity that ends cancelled
    for any other reason (its worker shut down) fails it.
    """
    if workflow.cancellation_reason() is not None:
        return WaveStopped()
    return WaveFailed(cause(err))


def cause(err: BaseException) -> str:
    """The message of the error an activity raised (not of the errors it was raised from)."""
    if isinstance(err, ActivityError) and err.__cause__ is not None:
        err = err.__cause__
    return err.message if isinstance(err, ApplicationError) else str(err)
