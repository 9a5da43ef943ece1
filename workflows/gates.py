"""Approval-gate rules as plain functions: who may decide, and what a gate still needs.

No Temporal or boto3 here: the workflow's update validators, the CLI and the tests all use
these same functions.
"""

from __future__ import annotations

from models.plan import ReleasePlan
from models.status import ApprovalRecord, WavePhase, WaveStatus


def approver_groups(plan: ReleasePlan, required: dict[str, int], approver: str) -> list[str]:
    """The groups of a gate that ``approver`` belongs to, in the gate's order."""
    return [g for g in required if approver in plan.approver_groups.get(g, [])]


def missing_approvals(
    plan: ReleasePlan, required: dict[str, int], approvals: list[ApprovalRecord]
) -> dict[str, int]:
    """How many more approvals each group of the gate needs (groups already met omitted).

    An approval counts once for every group of the gate its approver belongs to; the same
    person approving twice counts once.
    """
    approvers = {a.approver for a in approvals if a.decision == "approved"}
    missing = {}
    for group, needed in required.items():
        members = set(plan.approver_groups.get(group, []))
        have = len(approvers & members)
        if have < needed:
            missing[group] = needed - have
    return missing


def gate_groups(wave: WaveStatus) -> dict[str, int]:
    """Every group that may decide the gate: the plan's, plus escalation groups."""
    return {**wave.required_approvals, **wave.escalated_to}


def gate_missing(plan: ReleasePlan, wave: WaveStatus) -> dict[str, int]:
    """What the gate still needs: nothing once the plan's groups or (after an escalation)
    the escalation groups are satisfied."""
    missing = missing_approvals(plan, wave.required_approvals, wave.approvals)
    if missing and wave.escalated_to:
        escalated = missing_approvals(plan, wave.escalated_to, wave.approvals)
        if not escalated:
            return {}
        missing = {**missing, **escalated}
    return missing


def eligible_approvers(plan: ReleasePlan, wave: WaveStatus) -> list[str]:
    """Who can still move the gate forward: members of unmet groups who have not decided."""
    decided = {a.approver for a in wave.approvals}
    missing = gate_missing(plan, wave)
    people = {
        member
        for group in missing
        for member in plan.approver_groups.get(group, [])
        if member not in decided and (plan.allow_self_approval or member != plan.requested_by)
    }
    return sorted(people)


def refusal(
    plan: ReleasePlan,
    waves: list[WaveStatus],
    wave_name: str,
    approver: str,
    decision: str,
    release_finished: bool,
) -> str | None:
    """Why ``approver`` may not ``decision`` (approve/reject) ``wave_name`` now, or None."""
    if release_finished:
        return f"release {plan.id} has already ended; no more decisions are accepted"
    wave = next((w for w in waves if w.name == wave_name), None)
    if wave is None:
        names = ", ".join(w.name for w in waves)
        return f"release {plan.id} has no wave {wave_name!r} (waves: {names})"
    if not wave.required_approvals:
        return f"wave {wave_name!r} has no approval gate"
    if wave.phase != WavePhase.AWAITING_APPROVAL:
        return f"wave {wave_name!r} is not awaiting approval (it is {wave.phase.value})"
    if approver == plan.requested_by and not plan.allow_self_approval:
        return (
            f"{approver} requested release {plan.id} and may not {decision} it "
            "(separation of duties)"
        )
    groups = approver_groups(plan, gate_groups(wave), approver)
    if not groups:
        allowed = ", ".join(gate_groups(wave))
        return f"{approver} is not in any approver group of wave {wave_name!r} ({allowed})"
    if any(a.approver == approver for a in wave.approvals):
        return f"{approver} has already decided on wave {wave_name!r}"
    return None
