"""What a wave does, step by step: check its alarms, snapshot, then shift each traffic step.

``WaveSteps`` is the body of ``WaveWorkflow`` (workflows/wave.py), passed through the sandbox
like the modules it builds on (wave_base.py, wave_waits.py).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        APPLY_TARGET,
        APPLY_TARGETS,
        CHECK_ALARMS,
        SNAPSHOT_TARGET,
        SNAPSHOT_TARGETS,
        AlarmCheckResult,
        ApplyInput,
        ApplyResult,
        ApplyStepInput,
        ApplyStepResult,
        Change,
        Snapshot,
        SnapshotsRecorded,
        SnapshotsResult,
        TargetInput,
        TargetsInput,
        WaveInput,
        WaveOutcome,
    )
    from models.plan import TRAFFIC_KINDS, Target
    from models.status import TargetPhase, WavePhase
    from workflows.wave_base import (
        ALARM_CHECK_TIMEOUT,
        APPLY_RETRY,
        APPLY_TIMEOUT,
        BATCH_TARGETS,
        NO_REPORT_AFTER_SNAPSHOTS,
        RECORD_SNAPSHOTS_SIGNAL,
        SNAPSHOT_TIMEOUT,
        WaveFailed,
        WaveStopped,
        batch_timeout,
        cause,
        failure_of,
        firing_names,
    )
    from workflows.wave_waits import WaveWaits


class WaveSteps(WaveWaits):
    """The wave's deployment; ``WaveWorkflow`` holds its state, signals and query."""

    async def _deploy(self, input: WaveInput) -> WaveOutcome:
        wave = input.wave
        try:
            if wave.alarms and input.start_step == 0:
                await self._alarms_quiet_before_start()
            await self._snapshot_all()
            for step in range(input.start_step, len(wave.traffic)):
                percent = wave.traffic[step]
                await self._safe_point(first_step=step == 0)
                self._progress.step = step
                self._progress.phase = WavePhase.DEPLOYING
                await self._report()
                await self._apply_step(step, percent)
                self._progress.percent = percent
                self._event("traffic_shifted", f"wave {wave.name} at {percent}%")
                if wave.bake > timedelta(0):
                    await self._bake(percent)
        except WaveFailed as failure:
            self._progress.phase = WavePhase.FAILED
            return self._outcome("failed", error=str(failure))
        except WaveStopped:
            return self._outcome("stopped")
        except asyncio.CancelledError:
            # The release was cancelled: it holds every snapshot and rolls back itself.
            return self._outcome("stopped")
        self._progress.phase = WavePhase.COMPLETED
        return self._outcome("completed")

    async def _alarms_quiet_before_start(self) -> None:
        try:
            result = await workflow.execute_activity(
                CHECK_ALARMS,
                self._alarm_input(),
                result_type=AlarmCheckResult,
                start_to_close_timeout=ALARM_CHECK_TIMEOUT,
                retry_policy=APPLY_RETRY,
                summary=f"check alarms of wave {self._input.wave.name}",
            )
        except ActivityError as err:
            # A missing alarm (or any check that cannot succeed) fails the wave, so the
            # release applies on_failure, rather than failing this workflow unhandled.
            raise failure_of(err) from None
        if result.firing:
            names = firing_names(result.firing)
            raise WaveFailed(f"alarm already in ALARM before the wave started: {names}")

    async def _snapshot_all(self) -> None:
        """Snapshot every target not yet snapshotted, then have the release record them."""
        missing = [t for t in self._active_targets() if t.name not in self._input.snapshots]
        if not missing:
            return
        self._progress.waiting_for = f"snapshotting {len(missing)} target(s)"
        if workflow.patched(BATCH_TARGETS):
            snapshots = await self._snapshot_batch(missing)
        else:
            try:
                snapshots = await asyncio.gather(
                    *(
                        workflow.execute_activity(
                            SNAPSHOT_TARGET,
                            TargetInput(release_id=self._input.release_id, target=t),
                            result_type=Snapshot,
                            start_to_close_timeout=SNAPSHOT_TIMEOUT,
                            retry_policy=APPLY_RETRY,
                            summary=f"snapshot {t.resource}",
                        )
                        for t in missing
                    )
                )
            except ActivityError as err:
                raise failure_of(err) from None
        changes = [
            Change(wave=self._input.wave.name, target=t, snapshot=s)
            for t, s in zip(missing, snapshots, strict=True)
        ]
        for change in changes:
            self._input.snapshots[change.target.name] = change.snapshot
            self._target(change.target.name).before = change.snapshot.display
        # The release must hold every snapshot before anything changes (saga record).
        await self._parent.signal(RECORD_SNAPSHOTS_SIGNAL, SnapshotsRecorded(changes=changes))
        self._progress.waiting_for = None
        if not workflow.patched(NO_REPORT_AFTER_SNAPSHOTS):
            await self._report()
        # Since the patch: the record already told the release each target's "before", and
        # the next report (a wait, a pause, or the first step) follows straight away.

    async def _snapshot_batch(self, targets: list[Target]) -> list[Snapshot]:
        """Snapshot ``targets`` in one activity; any that cannot be read fails the wave."""
        try:
            result = await workflow.execute_activity(
                SNAPSHOT_TARGETS,
                TargetsInput(
                    release_id=self._input.release_id,
                    targets=targets,
                    final_attempt=APPLY_RETRY.maximum_attempts,
                ),
                result_type=SnapshotsResult,
                start_to_close_timeout=batch_timeout(SNAPSHOT_TIMEOUT, len(targets)),
                retry_policy=APPLY_RETRY,
                summary=f"snapshot {len(targets)} target(s) of wave {self._input.wave.name}",
            )
        except ActivityError as err:
            raise failure_of(err) from None
        if result.errors:
            raise WaveFailed("; ".join(result.errors.values()))
        return [result.snapshots[t.name] for t in targets]

    async def _apply_step(self, step: int, percent: int) -> None:
        """Apply the step to every target in parallel; all must succeed."""
        due = [t for t in self._active_targets() if step == 0 or t.kind in TRAFFIC_KINDS]
        if workflow.patched(BATCH_TARGETS):
            await self._apply_batch(due, percent)
            return
        results = await asyncio.gather(
            *(self._apply(t, percent) for t in due), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if any(isinstance(e, WaveStopped) for e in errors):
            raise WaveStopped
        if errors:
            raise WaveFailed("; ".join(str(e) for e in errors))

    async def _apply_batch(self, due: list[Target], percent: int) -> None:
        """Apply the step to ``due`` in one activity (side by side); all must succeed."""
        if not due:
            return
        for target in due:
            self._target(target.name).phase = TargetPhase.APPLYING
        try:
            result = await workflow.execute_activity(
                APPLY_TARGETS,
                ApplyStepInput(
                    items=[
                        ApplyInput(
                            release_id=self._input.release_id,
                            target=t,
                            snapshot=self._input.snapshots[t.name],
                            percent=percent,
                        )
                        for t in due
                    ],
                    final_attempt=APPLY_RETRY.maximum_attempts,
                ),
                result_type=ApplyStepResult,
                start_to_close_timeout=batch_timeout(APPLY_TIMEOUT, len(due)),
                retry_policy=APPLY_RETRY,
                summary=f"apply {len(due)} target(s) of wave {self._input.wave.name} at {percent}%",
            )
        except ActivityError as err:
            if isinstance(failure_of(err), WaveStopped):
                raise WaveStopped from None
            # Every attempt timed out (or the worker lacks the activity): which targets
            # changed is unknown, so none counts as applied; the saga restores them all.
            result = ApplyStepResult(errors={t.name: cause(err) for t in due})
        for target in due:
            if target.name in result.errors:
                self._target_failed(target, result.errors[target.name])
            else:
                self._target_applied(target, percent, result.results[target.name])
        if result.errors:
            raise WaveFailed("; ".join(result.errors.values()))

    async def _apply(self, target: Target, percent: int) -> None:
        status = self._target(target.name)
        status.phase = TargetPhase.APPLYING
        try:
            result = await workflow.execute_activity(
                APPLY_TARGET,
                ApplyInput(
                    release_id=self._input.release_id,
                    target=target,
                    snapshot=self._input.snapshots[target.name],
                    percent=percent,
                ),
                result_type=ApplyResult,
                start_to_close_timeout=APPLY_TIMEOUT,
                retry_policy=APPLY_RETRY,
                summary=f"apply {target.resource} at {percent}%",
            )
        except ActivityError as err:
            if isinstance(failure_of(err), WaveStopped):
                raise WaveStopped from None
            self._target_failed(target, cause(err))
            raise WaveFailed(cause(err)) from None
        self._target_applied(target, percent, result)

    def _target_failed(self, target: Target, error: str) -> None:
        status = self._target(target.name)
        status.phase = TargetPhase.FAILED
        status.error = error
        self._event("target_failed", f"{target.resource}: {error}", target.name)

    def _target_applied(self, target: Target, percent: int, result: ApplyResult) -> None:
        status = self._target(target.name)
        status.phase = TargetPhase.APPLIED
        status.error = None
        status.after = result.display
        status.percent = percent if target.kind in TRAFFIC_KINDS else 100
        self._event(
            "target_applied",
            f"{result.resource}: {status.before} -> {result.display}"
            + (f" ({percent}%)" if target.kind in TRAFFIC_KINDS else ""),
            target.name,
        )
