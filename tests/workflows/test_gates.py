"""Approval-gate rules as plain functions: who may decide, and what a gate still needs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from models.plan import ReleasePlan
from models.policy import Policy, parse_policy
from models.status import ApprovalRecord, WavePhase, WaveStatus
from tests.helpers import make_plan, ssm, wave
from workflows import gates

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
GROUPS = {
    "finance-cab": ["bob", "carol", "alice"],
    "security": ["carol", "sam", "tess"],
    "ops-leads": ["dave"],
}
PEOPLE = ["alice", "bob", "carol", "sam", "tess", "dave", "mallory"]


def policy(self_approval: bool = False) -> Policy:
    """finance waves are approved by finance-cab and security; others by ops-leads only."""
    return parse_policy(
        {
            "version": "gates",
            "people": [{"id": p, "name": p.title()} for p in PEOPLE],
            "groups": GROUPS,
            "operator_groups": ["ops-leads"],
            "applications": {
                "payments": {
                    "approvers": {"finance": ["finance-cab", "security"], "*": ["ops-leads"]},
                    "allow_self_approval": self_approval,
                }
            },
        }
    )


def plan() -> ReleasePlan:
    return make_plan(
        [ssm("flag", "/par/flag", "on"), ssm("later", "/par/later", "on")],
        [
            wave("finance", ["flag"], groups={"finance-cab": 1, "security": 2}),
            wave("late", ["later"], after=["finance"]),
        ],
        id="rel-gates",
    )


def roster(self_approval: bool = False) -> gates.Roster:
    return gates.Roster.from_policy(policy(self_approval), plan())


def record(approver: str, decision: str = "approved") -> ApprovalRecord:
    groups = gates.approver_groups(roster(), "finance", gate().required_approvals, approver)
    return ApprovalRecord(approver=approver, decision=decision, groups=groups, at=AT)


def gate(*approvals: ApprovalRecord, phase: WavePhase = WavePhase.AWAITING_APPROVAL) -> WaveStatus:
    return WaveStatus(
        name="finance",
        department="finance",
        phase=phase,
        required_approvals={"finance-cab": 1, "security": 2},
        approvals=list(approvals),
    )


def waves(finance: WaveStatus) -> list[WaveStatus]:
    return [finance, WaveStatus(name="late", department="finance")]


def test_approver_groups_in_gate_order():
    required = {"finance-cab": 1, "security": 2}
    assert gates.approver_groups(roster(), "finance", required, "carol") == [
        "finance-cab",
        "security",
    ]
    assert gates.approver_groups(roster(), "finance", required, "sam") == ["security"]
    assert gates.approver_groups(roster(), "finance", required, "mallory") == []


def test_a_group_counts_only_for_the_departments_the_policy_gives_it():
    # dave is in ops-leads, which approves every department but finance.
    assert gates.approver_groups(roster(), "finance", {"ops-leads": 1}, "dave") == []
    assert gates.approver_groups(roster(), "operations", {"ops-leads": 1}, "dave") == ["ops-leads"]
    assert gates.approver_groups(roster(), "operations", {"finance-cab": 1}, "bob") == []


def test_before_the_policy_is_read_no_one_may_decide():
    nobody = gates.Roster.nobody(make_plan([ssm("flag", "/par/flag", "on")], [wave("w", ["flag"])]))
    assert gates.approver_groups(nobody, "finance", {"finance-cab": 1}, "bob") == []
    assert not nobody.is_operator("alice")


def test_one_approval_counts_for_every_group_of_its_approver():
    missing = gates.missing_approvals(gate().required_approvals, [record("carol")])
    assert missing == {"security": 1}


def test_repeated_approvals_and_rejections_do_not_count():
    approvals = [record("sam"), record("sam"), record("tess", "rejected")]
    missing = gates.missing_approvals(gate().required_approvals, approvals)
    assert missing == {"finance-cab": 1, "security": 1}


def test_a_met_gate_misses_nothing():
    approvals = [record("bob"), record("sam"), record("tess")]
    assert gates.missing_approvals(gate().required_approvals, approvals) == {}


def test_eligible_approvers_exclude_the_requester_and_who_decided():
    assert gates.eligible_approvers(roster(), gate()) == ["bob", "carol", "sam", "tess"]
    # finance-cab is met by bob; security still needs one more, and sam has decided.
    assert gates.eligible_approvers(roster(), gate(record("bob"), record("sam"))) == [
        "carol",
        "tess",
    ]
    assert "alice" in gates.eligible_approvers(roster(self_approval=True), gate())


def refusal(
    approver: str,
    finance: WaveStatus | None = None,
    *,
    wave: str = "finance",
    decision: str = "approve",
    finished: bool = False,
    self_approval: bool = False,
) -> str | None:
    return gates.refusal(
        roster(self_approval), waves(finance or gate()), wave, approver, decision, finished
    )


def test_refusal_reasons():
    assert refusal("bob") is None
    assert refusal("bob", finished=True) == (
        "release rel-gates has already ended; no more decisions are accepted"
    )
    assert refusal("bob", wave="nope") == (
        "release rel-gates has no wave 'nope' (waves: finance, late)"
    )
    assert refusal("bob", wave="late") == "wave 'late' has no approval gate"
    assert refusal("bob", gate(phase=WavePhase.DEPLOYING)) == (
        "wave 'finance' is not awaiting approval (it is deploying)"
    )
    assert refusal("alice", decision="reject") == (
        "alice requested release rel-gates and may not reject it (separation of duties)"
    )
    assert refusal("alice", self_approval=True) is None
    assert refusal("mallory") == (
        "mallory is not in any approver group of wave 'finance' (finance-cab, security)"
    )
    assert refusal("dave") == (
        "dave is not in any approver group of wave 'finance' (finance-cab, security)"
    )
    assert refusal("sam", gate(record("sam"))) == "sam has already decided on wave 'finance'"
    assert refusal("sam", gate(record("bob"))) is None


def test_operator_refusals():
    r = roster()
    assert gates.operator_refusal(r, None, "alice", "pause") is None  # the requester
    assert gates.operator_refusal(r, None, "dave", "pause") is None  # an operator
    assert gates.operator_refusal(r, None, "bob", "pause") == (
        "bob may not pause release rel-gates: not its requester or an operator"
    )
    assert gates.operator_refusal(r, None, "alice", "override a window", override=True) == (
        "alice may not override a window: only operator groups may (ops-leads)"
    )
    assert gates.operator_refusal(r, "completed", "dave", "pause") == (
        "release rel-gates has already ended (completed)"
    )


def test_target_keys_fit_a_search_attribute_however_large_the_plan() -> None:
    import json

    from models.loader import parse_plan
    from workflows.release_state import MAX_TARGET_KEYS, application_key, target_keys

    def plan(targets: int) -> Any:
        names = [f"t{i}" for i in range(targets)]
        return parse_plan(
            {
                "id": "big",
                "application": "shop",
                "version": "1",
                "requested_by": "alice",
                "targets": [
                    {"name": n, "kind": "ssm_parameter", "parameter": f"/shop/{n}", "value": "1"}
                    for n in names
                ],
                "waves": [{"name": "all", "department": "ops", "targets": names}],
            }  # fmt: skip
        )

    small = target_keys(plan(MAX_TARGET_KEYS))
    assert len(small) == MAX_TARGET_KEYS
    assert len(json.dumps(small)) < 2048  # Temporal's limit for one search attribute value
    assert target_keys(plan(MAX_TARGET_KEYS + 1)) == [application_key("shop")]
