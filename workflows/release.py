"""ReleaseWorkflow: one release — its waves as a DAG, gates, operator controls, rollback saga.

Each wave's deployment runs as a WaveWorkflow child (bounded history); the release keeps the
gates, the timeline and every snapshot the waves signal to it, and runs the rollback.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        COMPENSATE_TARGET,
        WAIT_FOR_RELEASES,
        Change,
        CompensateInput,
        CompensateResult,
        DecisionInput,
        DecisionResult,
        FreezeInput,
        OperatorInput,
        OperatorResult,
        OverrideInput,
        ReleaseInput,
        ReleaseResult,
        SnapshotsRecorded,
        TargetActionInput,
        WaitForReleasesInput,
        WaveActionInput,
        WaveInput,
        WaveOutcome,
        WaveReport,
    )
    from models.plan import ReleasePlan, Wave
    from models.status import (
        FINAL_PHASES,
        ApprovalRecord,
        ReleasePhase,
        ReleaseStatus,
        TargetPhase,
        TimelineEvent,
        WavePhase,
        WaveStatus,
    )
    from workflows import gates
    from workflows.release_state import (
        WAVE_ENDS,
        active_phase,
        initial_status,
        operator_refusal,
        pending_approvals,
        resolved_target,
    )
    from workflows.wave import (
        RECORD_SNAPSHOTS_SIGNAL,
        WAVE_PROGRESS_SIGNAL,
        WaveWorkflow,
        cause,
    )

# Search attributes relman keeps current, for `relman list` and `relman approvals`.
SA_APPLICATION = SearchAttributeKey.for_keyword("RelmanApplication")
SA_VERSION = SearchAttributeKey.for_keyword("RelmanVersion")
SA_REQUESTER = SearchAttributeKey.for_keyword("RelmanRequester")
SA_PHASE = SearchAttributeKey.for_keyword("RelmanPhase")
SA_APPROVERS = SearchAttributeKey.for_keyword_list("RelmanApprovers")
SA_DEPARTMENTS = SearchAttributeKey.for_keyword_list("RelmanDepartments")
# Short digests of the resources a release deploys (see release_state.target_keys).
SA_TARGETS = SearchAttributeKey.for_keyword_list("RelmanTargets")
SEARCH_ATTRIBUTES = (
    SA_APPLICATION,
    SA_VERSION,
    SA_REQUESTER,
    SA_PHASE,
    SA_APPROVERS,
    SA_DEPARTMENTS,
    SA_TARGETS,
)
QUEUE_WAIT_TIMEOUT = timedelta(days=30)
QUEUE_HEARTBEAT_TIMEOUT = timedelta(minutes=2)

COMPENSATE_TIMEOUT = timedelta(minutes=5)
# Compensation must not give up on transient errors: it retries until it succeeds, or a
# non-retryable error (access denied, resource gone) hands it to an operator.
COMPENSATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
SYSTEM_ACTOR = "relman"
# workflow.patched() ids of behaviour changes that releases in flight must not see.
RESTORE_TARGETS_SKIPPED_WHILE_DEPLOYING = "restore-targets-skipped-while-deploying"
COMPENSATION_OUTLIVES_CANCEL = "compensation-outlives-cancel"


class StopRelease(Exception):
    """Raised inside a wave to end it when the release is stopping."""


@workflow.defn
class ReleaseWorkflow:
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

    # --- queries, approvals ----------------------------------------------------------------

    @workflow.query
    def status(self) -> ReleaseStatus:
        """The release's phase, waves, targets, pending approvals and timeline."""
        return self._status

    @workflow.update
    def approve(self, input: DecisionInput) -> DecisionResult:
        """Record an approval of a wave's gate."""
        return self._decide(input, "approved")

    @approve.validator
    def _validate_approve(self, input: DecisionInput) -> None:
        self._validate_decision(input, "approve")

    @workflow.update
    def reject(self, input: DecisionInput) -> DecisionResult:
        """Reject a wave: the release stops and (by default) rolls back."""
        return self._decide(input, "rejected")

    @reject.validator
    def _validate_reject(self, input: DecisionInput) -> None:
        self._validate_decision(input, "reject")

    def _validate_decision(self, input: DecisionInput, decision: str) -> None:
        reason = gates.refusal(
            self._plan,
            self._status.waves,
            input.wave,
            input.approver,
            decision,
            self._status.finished or self._stopping is not None,
        )
        if reason:
            raise ValueError(reason)

    def _decide(self, input: DecisionInput, decision: str) -> DecisionResult:
        wave = self._status.wave(input.wave)
        groups = gates.approver_groups(self._plan, gates.gate_groups(wave), input.approver)
        wave.approvals.append(
            ApprovalRecord(
                approver=input.approver,
                decision=decision,
                groups=groups,
                at=workflow.now(),
                comment=input.comment,
            )
        )
        self._event(
            decision,
            f"{input.approver} {decision} wave {wave.name} (as {', '.join(groups)})",
            actor=input.approver,
            wave=wave.name,
            comment=input.comment or None,
        )
        self._refresh()
        if decision == "rejected":
            return DecisionResult(
                wave=wave.name,
                accepted=True,
                satisfied=False,
                missing={},
                message=f"wave {wave.name} rejected",
            )
        missing = gates.gate_missing(self._plan, wave)
        return DecisionResult(
            wave=wave.name,
            accepted=True,
            satisfied=not missing,
            missing=missing,
            message="gate satisfied"
            if not missing
            else "still needs " + ", ".join(f"{n} from {g}" for g, n in missing.items()),
        )

    # --- operator controls ---------------------------------------------------------------------

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

    # --- signals from waves ------------------------------------------------------------------

    @workflow.signal(name=RECORD_SNAPSHOTS_SIGNAL)
    def record_snapshots(self, input: SnapshotsRecorded) -> None:
        """A wave's snapshots, recorded before it changes anything (the saga's log)."""
        for change in input.changes:
            self._saga.append(change)
            self._status.target(change.target.name).before = change.snapshot.display

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

    # --- the release -------------------------------------------------------------------------

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
        self._refresh()
        try:
            if input.queued_behind:
                await self._wait_in_queue(input.queued_behind)
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
            raise
        self._finish(final)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ReleaseResult(release_id=plan.id, phase=self._status.phase, error=self._status.error)

    async def _wait_in_queue(self, releases: list[str]) -> None:
        """Wait until running releases that deploy the same targets have ended."""
        self._event(
            "queued",
            f"queued behind {', '.join(releases)}: they deploy some of the same targets",
            actor=SYSTEM_ACTOR,
        )
        await workflow.execute_activity(
            WAIT_FOR_RELEASES,
            WaitForReleasesInput(release_ids=releases),
            start_to_close_timeout=QUEUE_WAIT_TIMEOUT,
            heartbeat_timeout=QUEUE_HEARTBEAT_TIMEOUT,
            summary=f"wait for {', '.join(releases)} to end",
        )
        self._event("dequeued", "releases ahead have ended; starting", actor=SYSTEM_ACTOR)

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

    async def _await_gate(self, wave: Wave, status: WaveStatus) -> None:
        gate = wave.approval
        assert gate is not None
        self._set_wave(
            status,
            WavePhase.AWAITING_APPROVAL,
            f"wave {wave.name} awaiting approval from "
            + ", ".join(f"{n} of {g}" for g, n in gate.groups.items()),
        )

        def decided() -> bool:
            return (
                self._stopping is not None
                or any(a.decision == "rejected" for a in status.approvals)
                or not gates.gate_missing(self._plan, status)
            )

        timeout = gate.timeout
        while True:
            status.approval_deadline = workflow.now() + timeout if timeout else None
            self._refresh()
            try:
                await workflow.wait_condition(
                    decided, timeout=timeout, timeout_summary=f"approval of wave {wave.name}"
                )
                break
            except TimeoutError:
                if gate.on_timeout == "escalate" and not status.escalated_to:
                    status.escalated_to = dict(gate.escalate_to)
                    timeout = gate.escalation_timeout or gate.timeout
                    self._event(
                        "approval_escalated",
                        f"wave {wave.name} approval escalated to "
                        + ", ".join(f"{n} of {g}" for g, n in gate.escalate_to.items()),
                        actor=SYSTEM_ACTOR,
                        wave=wave.name,
                    )
                    continue
                self._event(
                    "approval_timeout",
                    f"wave {wave.name} approval timed out; rejecting",
                    actor=SYSTEM_ACTOR,
                    wave=wave.name,
                )
                self._wave_stops_release(status, ReleasePhase.REJECTED, WavePhase.REJECTED)
                raise StopRelease from None
        status.approval_deadline = None
        if self._stopping is not None:
            raise StopRelease
        if any(a.decision == "rejected" for a in status.approvals):
            self._wave_stops_release(status, ReleasePhase.REJECTED, WavePhase.REJECTED)
            raise StopRelease
        self._event("gate_passed", f"wave {wave.name} approved", actor=SYSTEM_ACTOR, wave=wave.name)

    async def _deploy(self, wave: Wave, status: WaveStatus) -> None:
        """Run the wave's child until it completes, applying ``on_failure`` to failures."""
        targets = [resolved_target(self._plan, wave, self._plan.target(t)) for t in wave.targets]
        dept = self._plan.departments.get(wave.department)
        start_step, skipped, attempt = 0, [], 0
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
            handle = await workflow.start_child_workflow(
                WaveWorkflow.run,
                child_input,
                id=f"{self._plan.id}.{wave.name}.{attempt}",
                static_summary=f"wave {wave.name} of {self._plan.id}",
            )
            self._children[wave.name] = handle
            outcome: WaveOutcome = await handle
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

    def _wave_stops_release(
        self, status: WaveStatus, end: ReleasePhase, wave_end: WavePhase
    ) -> None:
        status.finished_at = workflow.now()
        self._set_wave(status, wave_end, f"wave {status.name} {wave_end.value}")
        self._stop_release(end)

    def _stop_release(self, end: ReleasePhase) -> None:
        if self._stopping is not None:
            return
        self._stopping = end
        self._rollback_requested = end != ReleasePhase.REJECTED or (
            self._plan.on_rejection == "rollback"
        )
        for handle in self._children.values():
            # Waves stop at their next safe point and report what they changed.
            asyncio.ensure_future(handle.signal("stop", OperatorInput(actor=SYSTEM_ACTOR)))

    async def _rollback(self, changes: list[Change]) -> None:
        """Compensate ``changes`` newest first; a permanent failure waits for an operator."""
        if not changes:
            return
        self._rollbacks_running += 1
        self._status.phase = ReleasePhase.ROLLING_BACK
        self._event(
            "rollback_started", f"rolling back {len(changes)} change(s)", actor=SYSTEM_ACTOR
        )
        self._upsert_visibility()
        while True:
            failed = 0
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
        for name in dict.fromkeys(c.wave for c in changes):
            w = self._status.wave(name)
            if w.phase == WavePhase.COMPLETED and all(
                t.phase in (TargetPhase.ROLLED_BACK, TargetPhase.SKIPPED) for t in w.targets
            ):
                self._set_wave(w, WavePhase.ROLLED_BACK, f"wave {name} rolled back")
        self._rollbacks_running -= 1
        self._refresh()

    async def _compensate(self, change: Change) -> bool:
        """Restore one resource; False if it cannot be restored (recorded, not dropped)."""
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
            self._event(
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
        self._event(
            "target_restored",
            f"{result.resource} restored to {result.display}"
            + ("" if result.changed else " (it already was)"),
            actor=SYSTEM_ACTOR,
            wave=change.wave,
            target=change.target.name,
        )
        return True

    # --- helpers -------------------------------------------------------------------------------

    def _wave_status(self, name: str) -> WaveStatus:
        wave = next((w for w in self._status.waves if w.name == name), None)
        if wave is None:
            names = ", ".join(w.name for w in self._status.waves)
            raise ValueError(f"release {self._plan.id} has no wave {name!r} (waves: {names})")
        return wave

    async def _signal_waves(self, signal: str, input: OperatorInput) -> None:
        for handle in list(self._children.values()):
            await handle.signal(signal, input)

    def _merge_targets(self, wave: WaveStatus, targets: list) -> None:  # type: ignore[type-arg]
        for reported in targets:
            current = next(t for t in wave.targets if t.name == reported.name)
            if current.phase in (TargetPhase.ROLLED_BACK, TargetPhase.ROLLBACK_FAILED):
                continue
            if reported.phase == TargetPhase.SKIPPED and current.phase != TargetPhase.PENDING:
                continue
            current.phase, current.percent = reported.phase, reported.percent
            current.before = reported.before or current.before
            current.after, current.error = reported.after, reported.error

    def _set_wave(self, status: WaveStatus, phase: WavePhase, message: str) -> None:
        status.phase = phase
        self._event(f"wave_{phase.value}", message, actor=SYSTEM_ACTOR, wave=status.name)
        self._refresh()

    def _operator_event(
        self, kind: str, message: str, input: OperatorInput, wave: str | None = None
    ) -> None:
        self._event(kind, message, actor=input.actor, wave=wave, comment=input.reason or None)
        self._refresh()

    def _event(self, kind: str, message: str, **fields: str | None) -> None:
        self._status.timeline.append(
            TimelineEvent(at=workflow.now(), kind=kind, message=message, **fields)
        )

    def _refresh(self) -> None:
        """Recompute the release phase and pending approvals from the waves."""
        if self._status.phase in FINAL_PHASES:
            return
        self._status.pending_approvals = pending_approvals(self._plan, self._status)
        if not self._rollbacks_running:
            self._status.phase = active_phase(self._status, self._status.paused)
        details = "; ".join(
            f"waiting for {', '.join(f'{n} more from {g}' for g, n in p.missing.items())} "
            f"on wave {p.wave}"
            for p in self._status.pending_approvals
        )
        workflow.set_current_details(details or f"release {self._status.phase.value}")
        self._upsert_visibility()

    def _upsert_visibility(self) -> None:
        # Only a release started with relman's search attributes keeps them current: a
        # server without them registered (the time-skipping test server) would fail the task.
        if workflow.info().typed_search_attributes.get(SA_PHASE) is None:
            return
        approvers = sorted(
            {a for p in self._status.pending_approvals for a in p.eligible_approvers}
        )
        workflow.upsert_search_attributes(
            [SA_PHASE.value_set(self._status.phase.value), SA_APPROVERS.value_set(approvers)]
        )
