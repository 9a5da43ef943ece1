"""Approval gates of a release: the approve/reject Updates (validated) and the gate wait
with its timeout and escalation."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import workflows.metrics as metrics
    from models.messages import (
        DecisionInput,
        DecisionResult,
    )
    from models.plan import Wave
    from models.status import (
        ApprovalRecord,
        ReleasePhase,
        WavePhase,
        WaveStatus,
    )
    from workflows import gates
from workflows.release_base import SYSTEM_ACTOR, ReleaseBase, StopRelease


class ApprovalGates(ReleaseBase):
    """Approval gates: the approve/reject Updates and the wait for a wave's gate."""

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
        waiting_since = workflow.now()
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
                self._gate_decided(wave, status, waiting_since, "timed_out")
                self._wave_stops_release(status, ReleasePhase.REJECTED, WavePhase.REJECTED)
                raise StopRelease from None
        status.approval_deadline = None
        self._gate_decided(wave, status, waiting_since)
        if self._stopping is not None:
            raise StopRelease
        if any(a.decision == "rejected" for a in status.approvals):
            self._wave_stops_release(status, ReleasePhase.REJECTED, WavePhase.REJECTED)
            raise StopRelease
        self._event("gate_passed", f"wave {wave.name} approved", actor=SYSTEM_ACTOR, wave=wave.name)

    def _gate_decided(
        self, wave: Wave, status: WaveStatus, since: datetime, decision: str | None = None
    ) -> None:
        """Record how long the gate waited and how it ended (``relman.approval.wait.duration``)."""
        if decision is None:
            rejected = any(a.decision == "rejected" for a in status.approvals)
            decision = (
                "stopped" if self._stopping is not None else "rejected" if rejected else "approved"
            )
        metrics.approval_waited(
            self._plan.application, wave.name, wave.department, decision, workflow.now() - since
        )
