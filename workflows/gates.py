"""Approval-gate and operator rules as plain functions: who may decide, and what a gate still
needs.

Who is in which group, who operates releases and whether a requester may approve their own
release come from the organisation policy (``models.policy``), never from the plan: a
:class:`Roster` is the policy's answer for one release.

No Temporal or boto3 here: the workflow's update handlers, the CLI and the tests all use
these same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.plan import ReleasePlan
from models.policy import Policy
from models.status import ApprovalRecord, WavePhase, WaveStatus


@dataclass(frozen=True)
class Roster:
    """Who may decide what on one release: its requester, and the people the policy puts in
    each group."""

    release_id: str
    requester: str
    self_approval: bool
    operator_groups: tuple[str, ...]
    # (department, group) -> members; department "*" for any department
    _members: dict[tuple[str, str], tuple[str, ...]]
    _operators: frozenset[str]

    @classmethod
    def from_policy(cls, policy: Policy, plan: ReleasePlan) -> Roster:
        """The roster the organisation policy gives the plan's application."""
        rules = policy.application(plan.application)
        members: dict[tuple[str, str], tuple[str, ...]] = {}
        if rules is not None:
            for department, groups in rules.approvers.items():
                for group in groups:
                    members[(department, group)] = tuple(policy.members(group))
        operator_groups = tuple(policy.operator_groups) + tuple(
            rules.operator_groups if rules else ()
        )
        return cls(
            release_id=plan.id,
            requester=plan.requested_by,
            self_approval=rules is not None and rules.allow_self_approval,
            operator_groups=operator_groups,
            _members=members,
            _operators=frozenset(m for g in operator_groups for m in policy.members(g)),
        )

    @classmethod
    def nobody(cls, plan: ReleasePlan) -> Roster:
        """No one may decide yet: the roster of a release that has not read the policy."""
        return cls(
            release_id=plan.id,
            requester=plan.requested_by,
            self_approval=False,
            operator_groups=(),
            _members={},
            _operators=frozenset(),
        )

    def members(self, department: str, group: str) -> tuple[str, ...]:
        """The members of ``group`` who may approve ``department``'s waves (none if the
        group may not approve that department)."""
        if (department, group) in self._members:
            return self._members[(department, group)]
        if any(d == department for d, _ in self._members):
            return ()  # the department has groups of its own, and this is not one of them
        return self._members.get(("*", group), ())

    def is_operator(self, actor: str) -> bool:
        return actor in self._operators


def approver_groups(
    roster: Roster, department: str, required: dict[str, int], approver: str
) -> list[str]:
    """The groups of a gate that ``approver`` belongs to, in the gate's order."""
    return [g for g in required if approver in roster.members(department, g)]


def missing_approvals(required: dict[str, int], approvals: list[ApprovalRecord]) -> dict[str, int]:
    """How many more approvals each group of the gate needs (groups already met omitted).

    An approval counts once for every group of the gate its approver belonged to when they
    approved (a later policy change does not undo it); one person counts once per group.
    """
    missing = {}
    for group, needed in required.items():
        have = len(
            {a.approver for a in approvals if a.decision == "approved" and group in a.groups}
        )
        if have < needed:
            missing[group] = needed - have
    return missing


def gate_groups(wave: WaveStatus) -> dict[str, int]:
    """Every group that may decide the gate: the plan's, plus escalation groups."""
    return {**wave.required_approvals, **wave.escalated_to}


def gate_missing(wave: WaveStatus) -> dict[str, int]:
    """What the gate still needs: nothing once the plan's groups or (after an escalation)
    the escalation groups are satisfied."""
    missing = missing_approvals(wave.required_approvals, wave.approvals)
    if missing and wave.escalated_to:
        escalated = missing_approvals(wave.escalated_to, wave.approvals)
        if not escalated:
            return {}
        missing = {**missing, **escalated}
    return missing


def eligible_approvers(roster: Roster, wave: WaveStatus) -> list[str]:
    """Who can still move the gate forward: members of unmet groups who have not decided."""
    decided = {a.approver for a in wave.approvals}
    people = {
        member
        for group in gate_missing(wave)
        for member in roster.members(wave.department, group)
        if member not in decided and (roster.self_approval or member != roster.requester)
    }
    return sorted(people)


def refusal(
    roster: Roster,
    waves: list[WaveStatus],
    wave_name: str,
    approver: str,
    decision: str,
    release_finished: bool,
) -> str | None:
    """Why ``approver`` may not ``decision`` (approve/reject) ``wave_name`` now, or None."""
    release = roster.release_id
    if release_finished:
        return f"release {release} has already ended; no more decisions are accepted"
    wave = next((w for w in waves if w.name == wave_name), None)
    if wave is None:
        names = ", ".join(w.name for w in waves)
        return f"release {release} has no wave {wave_name!r} (waves: {names})"
    if not wave.required_approvals:
        return f"wave {wave_name!r} has no approval gate"
    if wave.phase != WavePhase.AWAITING_APPROVAL:
        return f"wave {wave_name!r} is not awaiting approval (it is {wave.phase.value})"
    if approver == roster.requester and not roster.self_approval:
        return (
            f"{approver} requested release {release} and may not {decision} it "
            "(separation of duties)"
        )
    groups = approver_groups(roster, wave.department, gate_groups(wave), approver)
    if not groups:
        allowed = ", ".join(gate_groups(wave))
        return f"{approver} is not in any approver group of wave {wave_name!r} ({allowed})"
    if any(a.approver == approver for a in wave.approvals):
        return f"{approver} has already decided on wave {wave_name!r}"
    return None


def operator_refusal(
    roster: Roster, finished_as: str | None, actor: str, action: str, override: bool = False
) -> str | None:
    """Why ``actor`` may not ``action`` this release, or None.

    The requester and the operators may operate a release; only operators may override a
    rollout window. ``finished_as``: the release's end phase, if it has ended.
    """
    release = roster.release_id
    if finished_as is not None:
        return f"release {release} has already ended ({finished_as})"
    operator = roster.is_operator(actor)
    if override and not operator:
        groups = ", ".join(roster.operator_groups) or "none"
        return f"{actor} may not {action}: only operator groups may ({groups})"
    if actor != roster.requester and not operator:
        return f"{actor} may not {action} release {release}: not its requester or an operator"
    return None
