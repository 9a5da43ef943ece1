"""The rollback saga of a release: the snapshot log and compensation, newest first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    import workflows.metrics as metrics
    from models.messages import (
        COMPENSATE_TARGET,
        Change,
        CompensateInput,
        CompensateResult,
        SnapshotsRecorded,
    )
    from models.status import (
        ReleasePhase,
        TargetPhase,
        WavePhase,
    )
    from workflows.wave_base import (
        RECORD_SNAPSHOTS_SIGNAL,
        cause,
    )
from workflows.release_base import SYSTEM_ACTOR, ReleaseBase

# Per attempt (the retry policy has no limit): a dead worker delays a restore by this much.
COMPENSATE_TIMEOUT = timedelta(minutes=1)
# Compensation must not give up on transient errors: it retries until it succeeds, or a
# non-retryable error (access denied, resource gone) hands it to an operator.
COMPENSATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
# workflow.patched() ids of behaviour changes that releases in flight must not see.
RESTORE_TARGETS_SKIPPED_WHILE_DEPLOYING = "restore-targets-skipped-while-deploying"
COMPENSATION_OUTLIVES_CANCEL = "compensation-outlives-cancel"
COMPENSATE_WAVE_IN_PARALLEL = "compensate-wave-in-parallel"


class RollbackSaga(ReleaseBase):
    """The saga: snapshots recorded before any change, compensated newest first."""

    @workflow.signal(name=RECORD_SNAPSHOTS_SIGNAL)
    def record_snapshots(self, input: SnapshotsRecorded) -> None:
        """A wave's snapshots, recorded before it changes anything (the saga's log)."""
        for change in input.changes:
            self._saga.append(change)
            self._status.target(change.target.name).before = change.snapshot.display

    async def _rollback(self, changes: list[Change]) -> None:
        """Compensate ``changes`` newest first; a permanent failure waits for an operator."""
        if not changes:
            return
        self._rollbacks_running += 1
        rollback_started = workflow.now()
        self._status.phase = ReleasePhase.ROLLING_BACK
        self._event(
            "rollback_started", f"rolling back {len(changes)} change(s)", actor=SYSTEM_ACTOR
        )
        self._upsert_visibility()
        while True:
            failed = 0
            if workflow.patched(COMPENSATE_WAVE_IN_PARALLEL):
                # Waves newest first; a wave's targets, changed side by side, are restored
                # side by side. Their timeline entries follow the saga (newest first).
                for group in newest_wave_first(changes):
                    entries: list[tuple[str, str, dict[str, str | None]]] = []
                    restoring = asyncio.gather(
                        *(self._compensate(c, entries.append) for c in group)
                    )
                    try:
                        restored = await asyncio.shield(restoring)
                    except asyncio.CancelledError:
                        # Cancelled mid-rollback: each restore runs to its end (see
                        # _compensate), and so does the rollback.
                        restored = await restoring
                    failed += restored.count(False)
                    order = {c.target.name: i for i, c in enumerate(group)}
                    for kind, message, fields in sorted(
                        entries, key=lambda e: order[e[2]["target"] or ""]
                    ):
                        self._event(kind, message, **fields)
            else:
                for change in reversed(changes):
                    failed += not await self._compensate(change)
            if not failed:
                break
            self._status.phase = ReleasePhase.ROLLBACK_FAILED
            self._status.error = f"rollback of {failed} resource(s) failed; see targets"
            self._upsert_visibility()
            self._retry_rollback = False
            await workflow.wait_condition(lambda: self._retry_rollback)
            self._status.phase = ReleasePhase.ROLLING_BACK
        self._event("rollback_finished", "rollback finished", actor=SYSTEM_ACTOR)
        metrics.rollback_finished(self._plan.application, workflow.now() - rollback_started)
        for name in dict.fromkeys(c.wave for c in changes):
            w = self._status.wave(name)
            if w.phase == WavePhase.COMPLETED and all(
                t.phase in (TargetPhase.ROLLED_BACK, TargetPhase.SKIPPED) for t in w.targets
            ):
                self._set_wave(w, WavePhase.ROLLED_BACK, f"wave {name} rolled back")
        self._rollbacks_running -= 1
        self._refresh()

    async def _compensate(
        self,
        change: Change,
        record: Callable[[tuple[str, str, dict[str, str | None]]], None] | None = None,
    ) -> bool:
        """Restore one resource; False if it cannot be restored (recorded, not dropped).

        Its timeline entry goes to ``record`` when given, else straight to the timeline.
        """

        def event(kind: str, message: str, **fields: str | None) -> None:
            if record is None:
                self._event(kind, message, **fields)
            else:
                record((kind, message, fields))

        tstatus = self._status.target(change.target.name)
        if tstatus.phase == TargetPhase.ROLLED_BACK or change.target.name in self._rollback_skipped:
            return True
        if tstatus.phase == TargetPhase.SKIPPED and not workflow.patched(
            RESTORE_TARGETS_SKIPPED_WHILE_DEPLOYING
        ):
            return True  # how releases started before the patch treat a skipped target
        retrying = tstatus.phase == TargetPhase.ROLLBACK_FAILED
        tstatus.phase = TargetPhase.ROLLING_BACK
        outlives_cancel = workflow.patched(COMPENSATION_OUTLIVES_CANCEL)
        restore = workflow.start_activity(
            COMPENSATE_TARGET,
            CompensateInput(
                release_id=self._plan.id, target=change.target, snapshot=change.snapshot
            ),
            result_type=CompensateResult,
            start_to_close_timeout=COMPENSATE_TIMEOUT,
            retry_policy=COMPENSATE_RETRY,
            summary=f"restore {change.snapshot.resource}",
        )
        try:
            if not outlives_cancel:
                result = await restore
            else:
                try:
                    result = await asyncio.shield(restore)
                except asyncio.CancelledError:
                    # The release was cancelled in the middle of its rollback: cancelling
                    # this compensation would leave the resource half restored (and the
                    # target rollback_failed), so it runs to its end.
                    result = await restore
        except ActivityError as err:
            tstatus.phase = TargetPhase.ROLLBACK_FAILED
            tstatus.error = f"{cause(err)}; it should be restored to {change.snapshot.display}"
            event(
                "rollback_failed",
                f"{change.snapshot.resource}: {tstatus.error}",
                actor=SYSTEM_ACTOR,
                wave=change.wave,
                target=change.target.name,
            )
            return False
        tstatus.phase = TargetPhase.ROLLED_BACK
        if retrying:  # the apply failure it may show stays; the rollback failure is over
            tstatus.error = None
        tstatus.after = result.display
        tstatus.percent = 0
        event(
            "target_restored",
            f"{result.resource} restored to {result.display}"
            + ("" if result.changed else " (it already was)"),
            actor=SYSTEM_ACTOR,
            wave=change.wave,
            target=change.target.name,
        )
        return True


def newest_wave_first(changes: list[Change]) -> list[list[Change]]:
    """The saga's changes newest first, in runs of one wave (each run newest first too)."""
    groups: list[list[Change]] = []
    for change in reversed(changes):
        if groups and groups[-1][0].wave == change.wave:
            groups[-1].append(change)
        else:
            groups.append([change])
    return groups
