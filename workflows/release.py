"""ReleaseWorkflow: one release — its waves as a DAG, gates, operator controls, rollback saga.

Each wave's deployment runs as a WaveWorkflow child (bounded history); the release keeps the
gates, the timeline and every snapshot the waves signal to it, and runs the rollback.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import workflows.metrics as metrics
    from models.messages import (
        Change,
        ReleaseInput,
        ReleaseResult,
        TargetActionInput,
        WaveActionInput,
        WaveInput,
        WaveOutcome,
        WaveReport,
    )
    from models.plan import ReleasePlan, Wave
    from models.status import (
        ReleasePhase,
        ReleaseStatus,
        StatusRequest,
        TargetPhase,
        TimelinePage,
        TimelineRequest,
        WavePhase,
        WaveStatus,
    )

    # The release's mixins are deterministic workflow code without module state: passed
    # through, they are loaded once per worker instead of once per release run inside the
    # sandbox (which is what a parked release's memory and a replay's time went to).
    from workflows.release_base import (  # noqa: F401 - other modules import these from here
        SA_APPLICATION,
        SA_APPROVERS,
        SA_DEPARTMENTS,
        SA_PHASE,
        SA_REQUESTER,
        SA_TARGETS,
        SA_VERSION,
        SEARCH_ATTRIBUTES,
        SYSTEM_ACTOR,
        StopRelease,
    )
    from workflows.release_controls import OperatorControls
    from workflows.release_gates import ApprovalGates
    from workflows.release_overlaps import OverlapChecks
    from workflows.release_saga import RollbackSaga
    from workflows.release_state import (
        WAVE_ENDS,
        initial_status,
        resolved_target,
    )
    from workflows.wave import WaveWorkflow
    from workflows.wave_base import WAVE_PROGRESS_SIGNAL


@workflow.defn
class ReleaseWorkflow(ApprovalGates, OperatorControls, RollbackSaga, OverlapChecks):
    """Runs a release plan's waves in ``after`` order, rolling back on failure or rejection."""

    @workflow.init
    def __init__(self, input: ReleaseInput) -> None:
        self._plan: ReleasePlan = input.plan
        self._status = initial_status(input.plan)
        self._saga: list[Change] = []
        # The end the release is heading for once a wave rejected or failed it, or an
        # operator aborted it.
        self._stopping: ReleasePhase | None = None
        self._rollback_requested = False
        self._rollbacks_running = 0
        self._overrides: dict[str, bool] = {}  # wave -> include_freeze
        # wave -> (retry | rollback | skip, the operator's input), for waves paused on failure
        self._decisions: dict[str, tuple[str, WaveActionInput | TargetActionInput]] = {}
        self._retry_rollback = False
        self._children: dict[str, workflow.ChildWorkflowHandle] = {}  # type: ignore[type-arg]
        self._failed_waves: set[str] = set()
        # Targets whose rollback an operator skipped. A target skipped while deploying is
        # not among them: it may have shifted traffic in earlier steps, so it is restored.
        self._rollback_skipped: set[str] = set()
        self._worker_destinations = None
        self._visible = None  # the search attributes last upserted
        self._notifications_sent = 0
        self._notifications_pending = 0

    @workflow.query
    def status(self, request: StatusRequest | None = None) -> ReleaseStatus:
        """The release's phase, waves, targets, pending approvals and timeline (or, when
        ``request`` says so, its latest events only)."""
        if request is None or request.timeline_tail is None:
            return self._status
        events = self._status.timeline
        latest = events[len(events) - request.timeline_tail :] if request.timeline_tail else []
        return self._status.model_copy(update={"timeline": latest, "timeline_total": len(events)})

    @workflow.query
    def timeline(self, request: TimelineRequest) -> TimelinePage:
        """A page of the timeline, oldest first: the audit trail of any size, in parts."""
        events = self._status.timeline
        return TimelinePage(
            events=events[request.offset : request.offset + request.limit], total=len(events)
        )

    @workflow.signal(name=WAVE_PROGRESS_SIGNAL)
    def wave_progress(self, input: WaveReport) -> None:
        """A wave's live progress and events."""
        wave = self._status.wave(input.wave)
        if wave.phase in WAVE_ENDS:
            return
        progress = input.progress
        wave.phase = progress.phase
        wave.step, wave.percent = progress.step, progress.percent
        wave.next_start, wave.waiting_for = progress.next_start, progress.waiting_for
        self._merge_targets(wave, progress.targets)
        self._status.timeline.extend(input.events)
        self._refresh()

    @workflow.run
    async def run(self, input: ReleaseInput) -> ReleaseResult:
        """Run every wave as its predecessors finish, then roll back if the release stops."""
        self._status.started_at = workflow.now()
        plan = self._plan
        self._event(
            "started",
            f"release {plan.id} of {plan.application} {plan.version} started",
            actor=plan.requested_by,
        )
        metrics.release_started(plan.application)
        self._refresh()
        try:
            queued_behind = list(input.queued_behind)
            ahead = []
            if self._checks_overlaps():
                ahead = [r for r in await self._overlapping_ahead() if r not in queued_behind]
            if ahead and not plan.queue:
                self._refuse_overlap(ahead)  # it ends failed, having changed nothing
                final = ReleasePhase.FAILED
            else:
                queued_behind += ahead
                if queued_behind:
                    await self._wait_in_queue(queued_behind)
                await asyncio.gather(*(self._run_wave(w) for w in plan.waves))
                if self._rollback_requested:
                    await self._rollback(self._saga)
                final = self._final_phase()
        except asyncio.CancelledError:
            # Cancelling the workflow (Temporal UI/CLI) rolls back what it changed: once
            # the cancellation has been delivered here, new activities run normally.
            self._event("cancel_requested", "release cancelled; rolling back", actor=SYSTEM_ACTOR)
            for w in self._status.waves:
                if w.phase not in WAVE_ENDS:
                    self._set_wave(w, WavePhase.CANCELLED, f"wave {w.name} cancelled")
            await self._rollback(self._saga)
            self._finish(ReleasePhase.CANCELLED)
            await self._notifications_delivered()
            raise
        self._finish(final)
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._notifications_delivered()
        return ReleaseResult(release_id=plan.id, phase=self._status.phase, error=self._status.error)

    def _final_phase(self) -> ReleasePhase:
        if self._stopping is not None:
            return self._stopping
        if all(w.phase == WavePhase.COMPLETED for w in self._status.waves):
            return ReleasePhase.COMPLETED
        return ReleasePhase.FAILED

    def _finish(self, phase: ReleasePhase) -> None:
        self._status.phase = phase
        self._status.finished_at = workflow.now()
        self._status.pending_approvals = []
        self._event("finished", f"release ended {phase.value}", actor=SYSTEM_ACTOR)
        metrics.release_finished(self._plan.application, phase.value)
        self._upsert_visibility()

    async def _run_wave(self, wave: Wave) -> None:
        status = self._status.wave(wave.name)
        preds = [self._status.wave(p) for p in wave.after]
        await workflow.wait_condition(
            lambda: self._stopping is not None or all(p.phase in WAVE_ENDS for p in preds)
        )
        if self._stopping is not None or any(p.phase != WavePhase.COMPLETED for p in preds):
            why = (
                "the release is stopping" if self._stopping else "an earlier wave did not complete"
            )
            self._set_wave(status, WavePhase.SKIPPED, f"wave {wave.name} skipped: {why}")
            return
        status.started_at = workflow.now()
        try:
            if wave.approval is not None:
                await self._await_gate(wave, status)
            await self._deploy(wave, status)
        except StopRelease:
            if status.phase not in WAVE_ENDS:
                self._set_wave(status, WavePhase.CANCELLED, f"wave {wave.name} stopped")
            return
        status.finished_at = workflow.now()

    async def _deploy(self, wave: Wave, status: WaveStatus) -> None:
        """Run the wave's child until it completes, applying ``on_failure`` to failures."""
        targets = [resolved_target(self._plan, wave, self._plan.target(t)) for t in wave.targets]
        dept = self._plan.departments.get(wave.department)
        start_step, attempt = 0, 0
        skipped: list[str] = []
        while True:
            attempt += 1
            self._set_wave(status, WavePhase.DEPLOYING, f"wave {wave.name} deploying")
            child_input = WaveInput(
                release_id=self._plan.id,
                parent_id=workflow.info().workflow_id,
                wave=wave,
                targets=targets,
                skipped=skipped,
                freezes=self._status.freezes,
                snapshots={c.target.name: c.snapshot for c in self._saga if c.wave == wave.name},
                start_step=start_step,
                paused=self._status.paused,
                override_window=wave.name in self._overrides,
                override_freeze=self._overrides.get(wave.name, False),
                alarm_region=dept.region if dept else None,
                alarm_role_arn=dept.role_arn if dept else None,
                alarm_external_id=dept.external_id if dept else None,
                bake_interval=wave.bake_interval,
            )
            rollout_started = workflow.now()
            handle = await workflow.start_child_workflow(
                WaveWorkflow.run,
                child_input,
                id=f"{self._plan.id}.{wave.name}.{attempt}",
                static_summary=f"wave {wave.name} of {self._plan.id}",
            )
            self._children[wave.name] = handle
            outcome: WaveOutcome = await handle
            metrics.wave_rolled_out(
                self._plan.application,
                wave.name,
                wave.department,
                outcome.outcome,
                workflow.now() - rollout_started,
            )
            del self._children[wave.name]
            self._merge_targets(status, outcome.targets)
            self._status.timeline.extend(outcome.events)
            if outcome.outcome == "completed":
                self._set_wave(status, WavePhase.COMPLETED, f"wave {wave.name} completed")
                return
            if outcome.outcome == "stopped":
                raise StopRelease
            decision = await self._wave_failed(wave, status, outcome.error or "failed")
            if decision is None:
                return
            start_step = outcome.failed_step or 0
            if isinstance(decision, TargetActionInput):
                skipped.append(decision.target)
                self._status.target(decision.target).phase = TargetPhase.SKIPPED

    async def _wave_failed(
        self, wave: Wave, status: WaveStatus, error: str
    ) -> WaveActionInput | TargetActionInput | None:
        """Apply ``on_failure``; return the operator's retry/skip decision, if any."""
        self._status.error = f"wave {wave.name}: {error}"
        status.error = error
        if wave.on_failure == "rollback_wave":
            self._set_wave(status, WavePhase.FAILED, f"wave {wave.name} failed; rolling it back")
            await self._rollback([c for c in self._saga if c.wave == wave.name])
            self._set_wave(status, WavePhase.ROLLED_BACK, f"wave {wave.name} rolled back")
            return None
        if wave.on_failure == "pause" and self._stopping is None:
            self._failed_waves.add(wave.name)
            self._set_wave(
                status,
                WavePhase.PAUSED,
                f"wave {wave.name} failed and waits for an operator: relman retry, "
                f"rollback or skip-target ({error})",
            )
            await workflow.wait_condition(
                lambda: wave.name in self._decisions or self._stopping is not None
            )
            self._failed_waves.discard(wave.name)
            action, decision = self._decisions.pop(wave.name, ("stop", None))
            if action in ("retry", "skip"):
                # The operator dealt with the failure: neither wave nor release shows it now.
                status.error = None
                if self._status.error == f"wave {wave.name}: {error}":
                    self._status.error = None
                return decision
        self._wave_stops_release(status, ReleasePhase.ROLLED_BACK, WavePhase.FAILED)
        raise StopRelease
