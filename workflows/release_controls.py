"""Operator controls of a release: pause, resume, abort, freezes, window overrides and the
decisions on a wave paused on failure (retry, rollback, skip-target)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        FreezeInput,
        OperatorInput,
        OperatorResult,
        OverrideInput,
        TargetActionInput,
        WaveActionInput,
    )
    from models.status import (
        ReleasePhase,
        TargetPhase,
        WavePhase,
    )
    from workflows.release_state import (
        WAVE_ENDS,
        operator_refusal,
    )
from workflows.release_base import ReleaseBase


class OperatorControls(ReleaseBase):
    """Operator Updates, each refused by its validator with a reason when not allowed."""

    def _refuse(self, input: OperatorInput, action: str, override: bool = False) -> None:
        reason = operator_refusal(self._plan, self._status, input.actor, action, override)
        if reason is None and not input.reason.strip():
            reason = f"{action} needs a reason (--reason)"
        if reason:
            raise ValueError(reason)

    @workflow.update
    async def pause(self, input: OperatorInput) -> OperatorResult:
        """Stop every wave at its next safe point (between target steps)."""
        self._status.paused = True
        self._operator_event("paused", "release paused", input)
        await self._signal_waves("pause", input)
        return OperatorResult(message="release paused at the next safe point")

    @pause.validator
    def _validate_pause(self, input: OperatorInput) -> None:
        self._refuse(input, "pause")
        if self._status.paused:
            raise ValueError(f"release {self._plan.id} is already paused")

    @workflow.update
    async def resume(self, input: OperatorInput) -> OperatorResult:
        """Go on after a pause."""
        self._status.paused = False
        self._operator_event("resumed", "release resumed", input)
        await self._signal_waves("resume", input)
        return OperatorResult(message="release resumed")

    @resume.validator
    def _validate_resume(self, input: OperatorInput) -> None:
        self._refuse(input, "resume")
        if not self._status.paused:
            raise ValueError(f"release {self._plan.id} is not paused")

    @workflow.update
    async def abort(self, input: OperatorInput) -> OperatorResult:
        """Stop the release and roll back everything it changed; it ends ``cancelled``."""
        self._operator_event("aborted", "release aborted; rolling back", input)
        self._stop_release(ReleasePhase.CANCELLED)
        await self._signal_waves("stop", input)
        return OperatorResult(message="release aborting: rolling back what it changed")

    @abort.validator
    def _validate_abort(self, input: OperatorInput) -> None:
        self._refuse(input, "abort")
        if self._stopping is not None:
            raise ValueError(f"release {self._plan.id} is already stopping")

    @workflow.update
    async def add_freeze(self, input: FreezeInput) -> OperatorResult:
        """Add a freeze; running waits respect it from now on."""
        self._status.freezes.append(input.freeze)
        self._operator_event(
            "freeze_added",
            f"freeze {input.freeze.start.isoformat()} -> {input.freeze.end.isoformat()}: "
            f"{input.freeze.reason}",
            input,
        )
        await self._signal_waves("add_freeze", input)
        return OperatorResult(message="freeze added")

    @add_freeze.validator
    def _validate_add_freeze(self, input: FreezeInput) -> None:
        self._refuse(input, "add a freeze to")

    @workflow.update
    async def override_window(self, input: OverrideInput) -> OperatorResult:
        """Let a wave deploy outside its window (and a freeze only if included)."""
        self._overrides[input.wave] = self._overrides.get(input.wave, False) or (
            input.include_freeze
        )
        scope = "window and freezes" if input.include_freeze else "window"
        self._operator_event(
            "window_overridden", f"wave {input.wave}: {scope} overridden", input, input.wave
        )
        if input.wave in self._children:
            await self._children[input.wave].signal("override_window", input)
        return OperatorResult(message=f"wave {input.wave} may start outside its {scope}")

    @override_window.validator
    def _validate_override_window(self, input: OverrideInput) -> None:
        self._refuse(input, "override a window", override=True)
        wave = self._wave_status(input.wave)
        if wave.phase in WAVE_ENDS:
            raise ValueError(f"wave {input.wave!r} has already ended ({wave.phase.value})")

    @workflow.update
    def retry(self, input: WaveActionInput) -> OperatorResult:
        """Retry a wave paused on failure from the step that failed."""
        self._decisions[input.wave] = ("retry", input)
        self._operator_event("retry", f"wave {input.wave}: retry", input, input.wave)
        return OperatorResult(message=f"wave {input.wave} retrying")

    @retry.validator
    def _validate_retry(self, input: WaveActionInput) -> None:
        self._validate_guided(input, input.wave, "retry")

    @workflow.update
    def rollback(self, input: WaveActionInput) -> OperatorResult:
        """Roll back the release: of a wave paused on failure, or retry a failed rollback."""
        if self._status.phase == ReleasePhase.ROLLBACK_FAILED:
            self._retry_rollback = True
            self._operator_event("rollback_retry", "retrying the failed rollback", input)
            return OperatorResult(message="retrying the rollback")
        self._decisions[input.wave] = ("rollback", input)
        self._operator_event("rollback", f"wave {input.wave}: roll back", input, input.wave)
        return OperatorResult(message="rolling back the release")

    @rollback.validator
    def _validate_rollback(self, input: WaveActionInput) -> None:
        if self._status.phase == ReleasePhase.ROLLBACK_FAILED:
            self._refuse(input, "roll back")
            return
        self._validate_guided(input, input.wave, "roll back")

    @workflow.update
    def skip_target(self, input: TargetActionInput) -> OperatorResult:
        """Skip a target that failed (its wave goes on) or whose rollback cannot succeed."""
        target = self._status.target(input.target)
        if target.phase == TargetPhase.ROLLBACK_FAILED:
            target.phase = TargetPhase.SKIPPED
            self._rollback_skipped.add(input.target)
            self._operator_event(
                "rollback_skipped",
                f"{target.resource}: rollback skipped; restore it by hand ({target.error})",
                input,
            )
            self._retry_rollback = True
            return OperatorResult(message=f"rollback of {input.target} skipped")
        wave = next(w for w in self._status.waves if any(t.name == input.target for t in w.targets))
        self._decisions[wave.name] = ("skip", input)
        self._operator_event("target_skipped", f"{target.resource} skipped", input, wave.name)
        return OperatorResult(message=f"target {input.target} skipped; wave {wave.name} goes on")

    @skip_target.validator
    def _validate_skip_target(self, input: TargetActionInput) -> None:
        self._refuse(input, "skip a target of")
        wave = next(
            (w for w in self._status.waves if any(t.name == input.target for t in w.targets)),
            None,
        )
        if wave is None:
            raise ValueError(f"release {self._plan.id} has no target {input.target!r}")
        target = self._status.target(input.target)
        if target.phase == TargetPhase.ROLLBACK_FAILED:
            return
        if wave.phase != WavePhase.PAUSED or wave.name not in self._failed_waves:
            raise ValueError(
                f"target {input.target!r} can be skipped only while its wave is paused on a "
                "failure or its rollback failed"
            )

    def _validate_guided(self, input: OperatorInput, wave_name: str, action: str) -> None:
        self._refuse(input, action)
        wave = self._wave_status(wave_name)
        if wave.phase != WavePhase.PAUSED or wave_name not in self._failed_waves:
            raise ValueError(f"wave {wave_name!r} is not paused on a failure")
