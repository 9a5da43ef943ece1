"""The organisation policy: loading with errors naming the field, and every rule it enforces
on plans and people."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.dev_policy import DEV_GROUPS, DEV_PEOPLE, dev_policy
from models.loader import load_plan
from models.plan import ReleasePlan
from models.policy import (
    Policy,
    PolicyError,
    eligible_approvers,
    is_operator,
    load_policy,
    load_policy_text,
    may_approve,
    parse_policy,
    plan_violations,
)
from tests.ssh_keys import SshKey, make_key

REPO = Path(__file__).resolve().parents[2]
ROLE = "arn:aws:iam::123456789012:role/relman-payments"
TOPIC = "arn:aws:sns:eu-central-1:123456789012:payments-releases"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SshKey]:
    directory = tmp_path_factory.mktemp("keys")
    return {name: make_key(directory, name) for name in ("alice", "bob", "carol", "dave")}


def policy_data(keys: dict[str, SshKey], **fields: Any) -> dict[str, Any]:
    """Payments: finance waves approved by finance-cab, the rest by cab; ops operate it."""
    data: dict[str, Any] = {
        "version": "2026-03-01.1",
        "people": [
            {"id": "alice", "name": "Alice", "ssh_keys": [keys["alice"].public]},
            {
                "id": "bob",
                "name": "Bob",
                "ssh_keys": [keys["bob"].public],
                "oidc": {"issuer": "https://login.example.com", "subject": "00u1bob"},
            },
            {"id": "carol", "name": "Carol", "ssh_keys": [keys["carol"].public]},
            {"id": "dave", "name": "Dave", "ssh_keys": [keys["dave"].public]},
            {"id": "erin", "name": "Erin"},
        ],
        "groups": {
            "finance-cab": ["bob", "carol"],
            "cab": ["dave"],
            "release-managers": ["erin"],
            "payments-oncall": ["dave"],
        },
        "operator_groups": ["release-managers"],
        "attesters": [{"name": "console", "ssh_key": keys["dave"].public}],
        "applications": {
            "payments": {
                "approvers": {"finance": ["finance-cab"], "*": ["cab"]},
                "operator_groups": ["payments-oncall"],
                "aws_roles": [ROLE],
                "aws_accounts": ["210987654321"],
                "sns_topics": [TOPIC],
                "webhook_hosts": ["hooks.example.com", "*.chat.example.com"],
            },
            "*": {"approvers": {"*": ["cab"]}},
        },
        "freezes": [
            {
                "start": "2026-12-20T00:00:00Z",
                "end": "2027-01-04T00:00:00Z",
                "reason": "year-end freeze",
            }
        ],
    }
    return data | fields


@pytest.fixture(scope="module")
def policy(keys: dict[str, SshKey]) -> Policy:
    return parse_policy(policy_data(keys))


def plan(**fields: Any) -> ReleasePlan:
    """A plan that names groups only (so it skips the plan's own member checks)."""
    data: dict[str, Any] = {
        "id": "payments-2.4.0",
        "application": "payments",
        "version": "2.4.0",
        "requested_by": "alice",
        "targets": [
            {"name": "api", "kind": "ssm_parameter", "parameter": "/p/api", "value": "2.4.0"}
        ],
        "waves": [
            {
                "name": "finance",
                "department": "finance",
                "targets": ["api"],
                "approval": {"groups": {"finance-cab": 2}},
            }
        ],
    }
    return ReleasePlan.model_validate(data | fields)


def problems(data: Any) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(data, "policy.yaml")
    return str(caught.value).splitlines()


# --- loading ---------------------------------------------------------------------------------


def test_a_policy_file_loads_with_its_version_and_digest(tmp_path, keys):
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy_data(keys)))
    policy = load_policy(path)
    assert policy.version == "2026-03-01.1"
    assert policy.person("bob") is not None and policy.person("zoe") is None
    assert policy.digest.startswith("sha256:") and len(policy.digest) == 7 + 64
    # The same policy written as JSON is the same version: same digest.
    assert load_policy_text(json.dumps(policy_data(keys))).digest == policy.digest


def test_the_digest_changes_with_any_rule_and_ignores_spelled_out_defaults(keys, policy):
    changed = policy_data(keys)
    changed["groups"]["cab"] = ["dave", "carol"]
    assert parse_policy(changed).digest != policy.digest
    explicit = policy_data(keys, dev=False, description="")
    assert parse_policy(explicit).digest == policy.digest


def test_the_schema_is_json_schema():
    schema = Policy.model_json_schema()
    assert schema["type"] == "object"
    assert {"version", "people", "groups", "applications", "freezes"} <= set(schema["properties"])
    assert set(schema["required"]) == {"version", "people"}


def test_cross_field_errors_name_each_field(keys):
    data = policy_data(keys)
    data["people"].append({"id": "bob", "name": "Bob again"})
    data["people"][2]["ssh_keys"] = [keys["bob"].public]  # carol with bob's key
    data["groups"]["cab"] = ["dave", "zoe"]
    data["operator_groups"] = ["release-managers", "sre"]
    data["applications"]["payments"]["approvers"]["finance"] = ["finance-cab", "auditors"]
    data["applications"]["payments"]["operator_groups"] = ["nobody"]
    assert problems(data) == [
        "policy.yaml: people[5].id: duplicate person id 'bob'",
        "policy.yaml: people[2].ssh_keys[0]: this key is also 'bob''s: a key identifies one person",
        "policy.yaml: groups.cab[1]: unknown person 'zoe'",
        "policy.yaml: operator_groups[1]: unknown group 'sre'",
        "policy.yaml: applications.payments.approvers.finance[1]: unknown group 'auditors'",
        "policy.yaml: applications.payments.operator_groups[0]: unknown group 'nobody'",
    ]


def test_field_errors_name_each_field(keys):
    data = policy_data(keys)
    data["people"][0]["ssh_keys"] = ["ecdsa-sha2-nistp256 AAAAE2VjZHNh alice@old"]
    data["people"][1]["ssh_keys"] = ["ssh-ed25519 AAAAnotbase64!! bob@laptop"]
    data["people"][2]["nickname"] = "caz"
    data["applications"]["payments"]["aws_roles"] = ["arn:aws:iam::1:user/x"]
    data["applications"]["payments"]["sns_topics"] = ["payments-releases"]
    data["applications"]["payments"]["webhook_hosts"] = ["https://hooks.example.com/x"]
    data["freezes"][0]["end"] = "2026-12-01T00:00:00Z"
    del data["version"]
    assert problems(data) == [
        "policy.yaml: version: required field is missing",
        "policy.yaml: people[0].ssh_keys[0]: ecdsa-sha2-nistp256 keys are not supported: write "
        "an OpenSSH public key of type ssh-ed25519 or ssh-rsa, as in id_ed25519.pub",
        "policy.yaml: people[1].ssh_keys[0]: not a valid ssh-ed25519 public key (its base64 "
        "part is damaged)",
        "policy.yaml: people[2].nickname: unknown field",
        "policy.yaml: applications.payments.aws_roles[0]: invalid value "
        "'arn:aws:iam::1:user/x' (must match ^arn:aws[a-z-]*:iam::\\d{12}:role/.+$)",
        "policy.yaml: applications.payments.sns_topics[0]: 'payments-releases' is not an SNS "
        "topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)",
        "policy.yaml: applications.payments.webhook_hosts[0]: invalid host "
        "'https://hooks.example.com/x' (a DNS name such as hooks.example.com, or "
        "*.example.com for its subdomains; no scheme, port or path)",
        "policy.yaml: freezes[0]: freeze end must be after its start",
    ]


def test_unreadable_and_malformed_files_are_named(tmp_path):
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "absent.yaml")
    assert str(caught.value) == (
        f"{tmp_path / 'absent.yaml'}: cannot read policy: No such file or directory"
    )
    with pytest.raises(PolicyError) as caught:
        load_policy_text("people: [", "p.yaml")
    assert str(caught.value).startswith("p.yaml: invalid YAML: line 1, column 10: ")
    assert problems(["a list"]) == ["policy.yaml: a policy must be a mapping of fields"]


# --- lookups and rules -----------------------------------------------------------------------


def test_an_application_entry_replaces_the_default_entry(policy):
    assert policy.application("payments").operator_groups == ["payments-oncall"]
    assert policy.application("checkout") == policy.applications["*"]
    no_default = policy.model_copy(
        update={"applications": {"payments": policy.applications["payments"]}}
    )
    assert no_default.application("checkout") is None


def test_eligible_approvers_by_department(policy):
    assert eligible_approvers(policy, "payments", "finance") == {"finance-cab": ["bob", "carol"]}
    assert eligible_approvers(policy, "payments", "operations") == {"cab": ["dave"]}
    assert eligible_approvers(policy, "checkout", "web") == {"cab": ["dave"]}


def test_operators_are_the_organisation_s_and_the_application_s(policy):
    assert is_operator(policy, "payments", "erin")  # release-managers, everywhere
    assert is_operator(policy, "payments", "dave")  # payments-oncall
    assert not is_operator(policy, "checkout", "dave")
    assert not is_operator(policy, "payments", "alice")


def test_may_approve_counts_the_groups_the_actor_is_in(policy):
    verdict = may_approve(policy, "payments", "finance", "bob", requester="alice")
    assert verdict and verdict.groups == ("finance-cab",)
    assert may_approve(
        policy, "payments", "ops", "dave", requester="alice", gate_groups=["cab"]
    ).groups == ("cab",)


@pytest.mark.parametrize(
    ("actor", "department", "gate_groups", "reason"),
    [
        ("zoe", "finance", None, "'zoe' is not a person in the organisation policy"),
        (
            "alice",
            "finance",
            None,
            "'alice' requested this release and may not approve it (application 'payments' "
            "does not allow self-approval)",
        ),
        (
            "dave",
            "finance",
            None,
            "'dave' is in none of the groups that may approve department 'finance' waves of "
            "'payments' here: 'finance-cab'",
        ),
        (
            "bob",
            "finance",
            ["cab"],  # a gate naming a group the policy does not let approve finance
            "'bob' is in none of the groups that may approve department 'finance' waves of "
            "'payments' here: (none)",
        ),
    ],
)
def test_may_approve_refusals(policy, actor, department, gate_groups, reason):
    verdict = may_approve(
        policy, "payments", department, actor, requester="alice", gate_groups=gate_groups
    )
    assert (verdict.allowed, verdict.reason) == (False, reason)


def test_self_approval_where_the_policy_allows_it(keys):
    data = policy_data(keys)
    data["applications"]["payments"]["allow_self_approval"] = True
    policy = parse_policy(data)
    assert may_approve(policy, "payments", "finance", "bob", requester="bob")
    assert plan_violations(plan(allow_self_approval=True), policy) == []


def test_an_application_outside_the_policy_may_do_nothing(keys, policy):
    data = policy_data(keys)
    del data["applications"]["*"]
    strict = parse_policy(data)
    assert may_approve(strict, "checkout", "web", "dave", requester="alice").reason == (
        "application 'checkout' is not in the organisation policy"
    )
    assert eligible_approvers(strict, "checkout", "web") == {}
    assert plan_violations(plan(application="checkout"), strict) == [
        "application: application 'checkout' is not in the organisation policy (and it has no "
        "'*' entry)"
    ]


# --- plans against the policy ----------------------------------------------------------------


def test_a_plan_that_names_groups_only_passes(policy):
    assert plan_violations(plan(), policy) == []


@pytest.mark.parametrize(
    ("fields", "violation"),
    [
        (
            {"approver_groups": {"finance-cab": ["alice", "bob"]}},
            "approver_groups.finance-cab: plans name groups only; who is in 'finance-cab' is up "
            "to the organisation policy",
        ),
        (
            {"operator_groups": ["release-managers"]},
            "operator_groups: plans may not name operators; the organisation policy says who "
            "operates 'payments' releases",
        ),
        (
            {"allow_self_approval": True},
            "allow_self_approval: the organisation policy does not allow self-approval for "
            "'payments'",
        ),
        (
            {"requested_by": "mallory"},
            "requested_by: 'mallory' is not a person in the organisation policy",
        ),
        (
            {"departments": {"finance": {"role_arn": "arn:aws:iam::999999999999:role/admin"}}},
            "departments.finance.role_arn: role 'arn:aws:iam::999999999999:role/admin' is not "
            "allowed for application 'payments' (the organisation policy lists the roles and "
            "accounts relman may assume for it)",
        ),
        (
            {
                "notifications": {
                    "sns_topic_arn": "arn:aws:sns:eu-central-1:123456789012:all-hands",
                    "role_arn": "arn:aws:iam::123456789012:role/other",
                }
            },
            "notifications.sns_topic_arn: topic 'arn:aws:sns:eu-central-1:123456789012:"
            "all-hands' is not one the organisation policy lets 'payments' notify",
        ),
        (
            {"notifications": {"webhook_url": "https://evil.example.net/hook"}},
            "notifications.webhook_url: host 'evil.example.net' is not one the organisation "
            "policy lets 'payments' notify",
        ),
        (
            {"notifications": {"webhook_url": "https://chat.example.com.evil.net/hook"}},
            "notifications.webhook_url: host 'chat.example.com.evil.net' is not one the "
            "organisation policy lets 'payments' notify",
        ),
    ],
)
def test_each_plan_rule_names_the_field(policy, fields, violation):
    assert violation in plan_violations(plan(**fields), policy)


def test_a_target_role_outside_the_policy_is_refused(policy):
    target = {
        "name": "api",
        "kind": "ssm_parameter",
        "parameter": "/p/api",
        "value": "2.4.0",
        "role_arn": "arn:aws:iam::123456789012:role/other",
    }
    assert plan_violations(plan(targets=[target]), policy) == [
        "targets[0].role_arn: role 'arn:aws:iam::123456789012:role/other' is not allowed for "
        "application 'payments' (the organisation policy lists the roles and accounts relman "
        "may assume for it)"
    ]


def test_roles_topics_and_hosts_the_policy_allows_pass(policy):
    allowed = plan(
        departments={
            "finance": {"role_arn": ROLE},
            "ops": {"role_arn": "arn:aws:iam::210987654321:role/anything"},  # allowed account
        },
        notifications={
            "sns_topic_arn": TOPIC,
            "webhook_url": "https://team.chat.example.com/hook",
            "role_arn": ROLE,
        },
    )
    assert plan_violations(allowed, policy) == []


@pytest.mark.parametrize(
    ("approval", "violation"),
    [
        (
            {"groups": {"finance-crew": 1}},
            "waves[0].approval.groups.finance-crew: unknown group 'finance-crew' (the "
            "organisation policy has no such group)",
        ),
        (
            {"groups": {"cab": 1}},
            "waves[0].approval.groups.cab: group 'cab' may not approve department 'finance' "
            "waves of 'payments' (the organisation policy allows: 'finance-cab')",
        ),
        (
            {"groups": {"finance-cab": 3}},
            "waves[0].approval.groups.finance-cab: needs 3 approvals but group 'finance-cab' "
            "has only 2 eligible approver(s) in the organisation policy",
        ),
        (
            {
                "groups": {"finance-cab": 1},
                "timeout": "1h",
                "on_timeout": "escalate",
                "escalate_to": {"release-managers": 1},
            },
            "waves[0].approval.escalate_to.release-managers: group 'release-managers' may not "
            "approve department 'finance' waves of 'payments' (the organisation policy allows: "
            "'finance-cab')",
        ),
    ],
)
def test_each_gate_rule_names_the_field(policy, approval, violation):
    wave = {"name": "finance", "department": "finance", "targets": ["api"], "approval": approval}
    assert plan_violations(plan(waves=[wave]), policy) == [violation]


def test_the_requester_does_not_count_toward_a_gate(keys):
    data = policy_data(keys)
    data["groups"]["finance-cab"] = ["alice", "bob"]
    violations = plan_violations(plan(), parse_policy(data))
    assert violations == [
        "waves[0].approval.groups.finance-cab: needs 2 approvals but group 'finance-cab' has "
        "only 1 eligible approver(s) in the organisation policy"
    ]


# --- the dev policy ----------------------------------------------------------------------------


def test_the_dev_policy_lets_the_demo_plans_run(tmp_path):
    keys = {person: make_key(tmp_path, person).public for person in DEV_PEOPLE}
    policy = dev_policy(keys)
    assert policy.dev and policy.version == "dev"
    for name in ("demo.yaml", "rollback-demo.yaml"):
        demo = load_plan(REPO / "examples" / name)
        # The demo plans name groups only; the dev policy says who is in them.
        assert demo.approver_groups == {}
        for wave in demo.waves:
            if wave.approval is None:
                continue
            groups = eligible_approvers(policy, demo.application, wave.department)
            assert {g: groups[g] for g in wave.approval.groups} == {
                g: DEV_GROUPS[g] for g in wave.approval.groups
            }
        assert plan_violations(demo, policy) == []
        assert is_operator(policy, demo.application, demo.requested_by)
    assert may_approve(policy, "payments", "finance", "bob", requester="alice")


def test_the_dev_policy_keeps_only_the_people_given(tmp_path):
    policy = dev_policy({"alice": make_key(tmp_path, "alice").public})
    assert [p.id for p in policy.people] == ["alice"]
    assert policy.members("finance-cab") == []
