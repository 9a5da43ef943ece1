"""ReleaseWorkflow: one release, its waves as a DAG, approval gates, and a rollback saga."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        APPLY_TARGET,
        COMPENSATE_TARGET,
        SNAPSHOT_TARGET,
        ApplyInput,
        ApplyResult,
        CompensateInput,
        CompensateResult,
        DecisionInput,
        DecisionResult,
        ReleaseInput,
        ReleaseResult,
        Snapshot,
        TargetInput,
    )
    from models.plan import ReleasePlan, Target, Wave
    from models.status import (
        FINAL_PHASES,
        ApprovalRecord,
        PendingApproval,
        ReleasePhase,
        ReleaseStatus,
        TargetPhase,
        TargetStatus,
        TimelineEvent,
        WavePhase,
        WaveStatus,
    )
    from workflows import gates

# Search attributes relman keeps current, for `relman list` and `relman approvals`.
SA_APPLICATION = SearchAttributeKey.for_keyword("RelmanApplication")
SA_VERSION = SearchAttributeKey.for_keyword("RelmanVersion")
SA_REQUESTER = SearchAttributeKey.for_keyword("RelmanRequester")
SA_PHASE = SearchAttributeKey.for_keyword("RelmanPhase")
SA_APPROVERS = SearchAttributeKey.for_keyword_list("RelmanApprovers")
SA_DEPARTMENTS = SearchAttributeKey.for_keyword_list("RelmanDepartments")
SEARCH_ATTRIBUTES = (
    SA_APPLICATION,
    SA_VERSION,
    SA_REQUESTER,
    SA_PHASE,
    SA_APPROVERS,
    SA_DEPARTMENTS,
)

SNAPSHOT_TIMEOUT = timedelta(minutes=2)
APPLY_TIMEOUT = timedelta(minutes=5)
COMPENSATE_TIMEOUT = timedelta(minutes=5)
# Applying gives up after a bounded number of attempts so the wave's failure policy runs.
APPLY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=6,
)
# Compensation must not give up on transient errors: it retries until it succeeds, or a
# non-retryable error (access denied, resource gone) hands it to an operator.
COMPENSATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
SYSTEM_ACTOR = "relman"


@dataclass
class Compensation:
    """A change the release made and the snapshot that undoes it."""

    wave: str
    target: Target
    snapshot: Snapshot


class StopRelease(Exception):
    """Raised inside a wave to end it when the release is stopping."""


@workflow.defn
class ReleaseWorkflow:
    """Runs a release plan's waves in ``after`` order, rolling back on failure or rejection."""

    @workflow.init
    def __init__(self, input: ReleaseInput) -> None:
        plan = input.plan
        self._plan: ReleasePlan = plan
        self._status = ReleaseStatus(
            release_id=plan.id,
            application=plan.application,
            version=plan.version,
            requested_by=plan.requested_by,
            waves=[
                WaveStatus(
                    name=w.name,
                    department=w.department,
                    after=list(w.after),
                    required_approvals=dict(w.approval.groups) if w.approval else {},
                    targets=[
                        TargetStatus(
                            name=t, kind=plan.target(t).kind, resource=plan.target(t).resource
                        )
                        for t in w.targets
                    ],
                )
                for w in plan.waves
            ],
        )
        self._saga: list[Compensation] = []
        # The end the release is heading for once a wave rejected or failed it.
        self._stopping: ReleasePhase | None = None
        self._rollback_requested = False
        # Rollbacks under way (a wave's own, or the release's): while any runs, the release
        # shows rolling_back; after a wave's own, its phase comes from the waves again.
        self._rollbacks_running = 0

    # --- queries and updates -----------------------------------------------------------

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
        self._validate(input, "approve")

    @workflow.update
    def reject(self, input: DecisionInput) -> DecisionResult:
        """Reject a wave: the release stops and (by default) rolls back."""
        return self._decide(input, "rejected")

    @reject.validator
    def _validate_reject(self, input: DecisionInput) -> None:
        self._validate(input, "reject")

    def _validate(self, input: DecisionInput, decision: str) -> None:
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
        groups = gates.approver_groups(self._plan, wave.required_approvals, input.approver)
        wave.approvals.append(
            ApprovalRecord(
                approver=input.approver,
                decision=decision,
                groups=groups,
                at=workflow.now(),
                comment=input.comment,
            )
        )
        missing = gates.missing_approvals(self._plan, wave.required_approvals, wave.approvals)
        verb = "approved" if decision == "approved" else "rejected"
        self._event(
            verb,
            f"{input.approver} {verb} wave {wave.name} (as {', '.join(groups)})",
            actor=input.approver,
            wave=wave.name,
            comment=input.comment or None,
        )
        self._refresh()
        satisfied = decision == "approved" and not missing
        return DecisionResult(
            wave=wave.name,
            accepted=True,
            satisfied=satisfied,
            missing=missing if decision == "approved" else {},
            message=(
                f"wave {wave.name} rejected"
                if decision == "rejected"
                else "gate satisfied"
                if satisfied
                else "still needs " + ", ".join(f"{n} from {g}" for g, n in missing.items())
            ),
        )

    # --- the release ---------------------------------------------------------------------

    @workflow.run
    async def run(self, input: ReleaseInput) -> ReleaseResult:
        """Run every wave as its predecessors finish, then roll back if the release stops."""
        self._status.started_at = workflow.now()
        self._event(
            "started",
            f"release {self._plan.id} of {self._plan.application} {self._plan.version} started",
            actor=self._plan.requested_by,
        )
        self._refresh()
        try:
            await asyncio.gather(*(self._run_wave(w) for w in self._plan.waves))
            if self._rollback_requested:
                await self._rollback(self._saga)
            final = self._final_phase()
        except asyncio.CancelledError:
            # Cancelling the workflow rolls back what it changed: once the cancellation has
            # been delivered here, new activities run normally.
            self._event("cancel_requested", "release cancelled; rolling back", actor=SYSTEM_ACTOR)
            for w in self._status.waves:
                if w.phase not in _WAVE_ENDS:
                    self._set_wave(w, WavePhase.CANCELLED, f"wave {w.name} cancelled")
            await self._rollback(self._saga)
            self._finish(ReleasePhase.CANCELLED)
            raise
        self._finish(final)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ReleaseResult(
            release_id=self._plan.id, phase=self._status.phase, error=self._status.error
        )

    def _final_phase(self) -> ReleasePhase:
        if any(
            t.phase == TargetPhase.ROLLBACK_FAILED for w in self._status.waves for t in w.targets
        ):
            return ReleasePhase.ROLLBACK_FAILED
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
            lambda: self._stopping is not None or all(p.phase in _WAVE_ENDS for p in preds)
        )
        if self._stopping is not None or any(p.phase != WavePhase.COMPLETED for p in preds):
            self._set_wave(
                status,
                WavePhase.SKIPPED,
                "skipped: an earlier wave did not complete"
                if self._stopping is None
                else "skipped: the release is stopping",
            )
            return
        status.started_at = workflow.now()
        try:
            if wave.approval is not None:
                await self._await_gate(wave, status)
            self._set_wave(status, WavePhase.DEPLOYING, f"wave {wave.name} deploying")
            for target_name in wave.targets:
                if self._stopping is not None:
                    raise StopRelease
                await self._deploy_target(wave, status, target_name)
        except StopRelease:
            if status.phase not in _WAVE_ENDS:
                self._set_wave(status, WavePhase.CANCELLED, f"wave {wave.name} stopped")
            return
        except ActivityError as err:
            await self._wave_failed(wave, status, _cause(err))
            return
        status.finished_at = workflow.now()
        self._set_wave(status, WavePhase.COMPLETED, f"wave {wave.name} completed")

    async def _await_gate(self, wave: Wave, status: WaveStatus) -> None:
        assert wave.approval is not None
        self._set_wave(
            status,
            WavePhase.AWAITING_APPROVAL,
            f"wave {wave.name} awaiting approval from "
            + ", ".join(f"{n} of {g}" for g, n in wave.approval.groups.items()),
        )

        def decided() -> bool:
            return (
                self._stopping is not None
                or any(a.decision == "rejected" for a in status.approvals)
                or not gates.missing_approvals(
                    self._plan, status.required_approvals, status.approvals
                )
            )

        try:
            await workflow.wait_condition(decided, timeout=wave.approval.timeout)
        except TimeoutError:
            self._event(
                "approval_timeout",
                f"wave {wave.name} approval timed out after {wave.approval.timeout}; rejecting",
                actor=SYSTEM_ACTOR,
                wave=wave.name,
            )
            self._stop_release(status, ReleasePhase.REJECTED, WavePhase.REJECTED)
            raise StopRelease from None
        if self._stopping is not None:
            raise StopRelease
        rejection = next((a for a in status.approvals if a.decision == "rejected"), None)
        if rejection is not None:
            self._stop_release(status, ReleasePhase.REJECTED, WavePhase.REJECTED)
            raise StopRelease
        self._event("gate_passed", f"wave {wave.name} approved", actor=SYSTEM_ACTOR, wave=wave.name)

    def _stop_release(self, status: WaveStatus, end: ReleasePhase, wave_end: WavePhase) -> None:
        self._stopping = end
        self._rollback_requested = end != ReleasePhase.REJECTED or (
            self._plan.on_rejection == "rollback"
        )
        status.finished_at = workflow.now()
        self._set_wave(status, wave_end, f"wave {status.name} {wave_end.value}")

    async def _deploy_target(self, wave: Wave, status: WaveStatus, name: str) -> None:
        target = self._resolved(wave, self._plan.target(name))
        tstatus = next(t for t in status.targets if t.name == name)
        tstatus.phase = TargetPhase.APPLYING
        self._refresh()
        try:
            snapshot = await workflow.execute_activity(
                SNAPSHOT_TARGET,
                TargetInput(release_id=self._plan.id, target=target),
                result_type=Snapshot,
                start_to_close_timeout=SNAPSHOT_TIMEOUT,
                retry_policy=APPLY_RETRY,
            )
            tstatus.before = snapshot.display
            # Recorded before applying: if the worker dies mid-apply, rollback still knows
            # exactly what to restore.
            self._saga.append(Compensation(wave=wave.name, target=target, snapshot=snapshot))
            result = await workflow.execute_activity(
                APPLY_TARGET,
                ApplyInput(release_id=self._plan.id, target=target, snapshot=snapshot),
                result_type=ApplyResult,
                start_to_close_timeout=APPLY_TIMEOUT,
                retry_policy=APPLY_RETRY,
            )
        except ActivityError as err:
            tstatus.phase = TargetPhase.FAILED
            tstatus.error = _cause(err)
            self._event(
                "target_failed",
                f"{tstatus.resource}: {tstatus.error}",
                actor=SYSTEM_ACTOR,
                wave=wave.name,
                target=name,
            )
            raise
        tstatus.after = result.display
        tstatus.phase = TargetPhase.APPLIED
        self._event(
            "target_applied",
            f"{result.resource}: {tstatus.before} -> {result.display}",
            actor=SYSTEM_ACTOR,
            wave=wave.name,
            target=name,
        )

    async def _wave_failed(self, wave: Wave, status: WaveStatus, error: str) -> None:
        self._status.error = f"wave {wave.name}: {error}"
        status.finished_at = workflow.now()
        if wave.on_failure == "rollback_wave":
            self._set_wave(status, WavePhase.FAILED, f"wave {wave.name} failed; rolling it back")
            await self._rollback([c for c in self._saga if c.wave == wave.name])
            self._set_wave(status, WavePhase.ROLLED_BACK, f"wave {wave.name} rolled back")
        else:
            self._stop_release(status, ReleasePhase.ROLLED_BACK, WavePhase.FAILED)

    async def _rollback(self, changes: list[Compensation]) -> None:
        """Compensate ``changes`` newest first; a permanent failure is recorded, not dropped."""
        if not changes:
            return
        self._rollbacks_running += 1
        self._status.phase = ReleasePhase.ROLLING_BACK
        self._event(
            "rollback_started", f"rolling back {len(changes)} change(s)", actor=SYSTEM_ACTOR
        )
        self._upsert_visibility()
        for change in reversed(changes):
            tstatus = self._status.target(change.target.name)
            if tstatus.phase == TargetPhase.ROLLED_BACK:
                continue
            tstatus.phase = TargetPhase.ROLLING_BACK
            try:
                result = await workflow.execute_activity(
                    COMPENSATE_TARGET,
                    CompensateInput(
                        release_id=self._plan.id, target=change.target, snapshot=change.snapshot
                    ),
                    result_type=CompensateResult,
                    start_to_close_timeout=COMPENSATE_TIMEOUT,
                    retry_policy=COMPENSATE_RETRY,
                )
            except ActivityError as err:
                tstatus.phase = TargetPhase.ROLLBACK_FAILED
                tstatus.error = f"{_cause(err)}; it should be restored to {change.snapshot.display}"
                self._status.error = f"rollback of {change.snapshot.resource} failed"
                self._event(
                    "rollback_failed",
                    f"{change.snapshot.resource}: {tstatus.error}",
                    actor=SYSTEM_ACTOR,
                    wave=change.wave,
                    target=change.target.name,
                )
                continue
            tstatus.phase = TargetPhase.ROLLED_BACK
            tstatus.after = result.display
            self._event(
                "target_restored",
                f"{result.resource} restored to {result.display}",
                actor=SYSTEM_ACTOR,
                wave=change.wave,
                target=change.target.name,
            )
        self._event("rollback_finished", "rollback finished", actor=SYSTEM_ACTOR)
        # A wave that had completed and is now fully undone must not still read "completed".
        for name in dict.fromkeys(c.wave for c in changes):
            w = self._status.wave(name)
            if w.phase == WavePhase.COMPLETED and all(
                t.phase == TargetPhase.ROLLED_BACK for t in w.targets
            ):
                self._set_wave(w, WavePhase.ROLLED_BACK, f"wave {name} rolled back")
        self._rollbacks_running -= 1

    # --- helpers -------------------------------------------------------------------------

    def _resolved(self, wave: Wave, target: Target) -> Target:
        """The target with region and account inherited from its wave's department."""
        dept = self._plan.departments.get(wave.department)
        if dept is None:
            return target
        return target.model_copy(
            update={
                "region": target.region or dept.region,
                "role_arn": target.role_arn or dept.role_arn,
                "external_id": target.external_id or dept.external_id,
            }
        )

    def _set_wave(self, status: WaveStatus, phase: WavePhase, message: str) -> None:
        status.phase = phase
        self._event(f"wave_{phase.value}", message, actor=SYSTEM_ACTOR, wave=status.name)
        self._refresh()

    def _event(self, kind: str, message: str, **fields: str | None) -> None:
        self._status.timeline.append(
            TimelineEvent(at=workflow.now(), kind=kind, message=message, **fields)
        )

    def _refresh(self) -> None:
        """Recompute the release phase and pending approvals from the waves."""
        if self._status.phase in FINAL_PHASES:
            return
        pending = []
        for w in self._status.waves:
            if w.phase == WavePhase.AWAITING_APPROVAL:
                pending.append(
                    PendingApproval(
                        wave=w.name,
                        missing=gates.missing_approvals(
                            self._plan, w.required_approvals, w.approvals
                        ),
                        eligible_approvers=gates.eligible_approvers(self._plan, w),
                        waiting_since=w.started_at,
                        deadline=_deadline(self._plan.wave(w.name), w),
                    )
                )
        self._status.pending_approvals = pending
        if not self._rollbacks_running:
            phases = {w.phase for w in self._status.waves}
            self._status.phase = next(
                (rp for wp, rp in _PHASE_PRIORITY if wp in phases), ReleasePhase.PENDING
            )
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
            [
                SA_PHASE.value_set(self._status.phase.value),
                SA_APPROVERS.value_set(approvers),
            ]
        )


_WAVE_ENDS = frozenset(
    {
        WavePhase.COMPLETED,
        WavePhase.REJECTED,
        WavePhase.FAILED,
        WavePhase.ROLLED_BACK,
        WavePhase.SKIPPED,
        WavePhase.CANCELLED,
    }
)
# The release shows the most active thing any of its waves is doing.
_PHASE_PRIORITY = (
    (WavePhase.DEPLOYING, ReleasePhase.DEPLOYING),
    (WavePhase.BAKING, ReleasePhase.BAKING),
    (WavePhase.PAUSED, ReleasePhase.PAUSED),
    (WavePhase.AWAITING_APPROVAL, ReleasePhase.AWAITING_APPROVAL),
    (WavePhase.WAITING_FOR_WINDOW, ReleasePhase.WAITING_FOR_WINDOW),
)


def _deadline(wave: Wave, status: WaveStatus):  # type: ignore[no-untyped-def]
    if wave.approval is None or wave.approval.timeout is None or status.started_at is None:
        return None
    return status.started_at + wave.approval.timeout


def _cause(err: BaseException) -> str:
    """The message of the error an activity raised (not of the errors it was raised from).

    An activity raises ``ApplicationError("ssm:PutParameter on ... failed: ...") from`` the
    botocore error; the chain's innermost message would lose the call and the resource.
    """
    if isinstance(err, ActivityError) and err.__cause__ is not None:
        err = err.__cause__
    return err.message if isinstance(err, ApplicationError) else str(err)
