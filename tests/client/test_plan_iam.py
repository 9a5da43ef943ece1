"""``relman plan iam`` from the command line: permission and trust policies, the options that
shape them, and iam:PassRole narrowed by the task definitions it reads from a moto server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from activities.aws import AwsClients
from client.commands.plan import OFFLINE_REASON
from models.iam import WORKER_ACCOUNT, WORKER_CREDENTIALS, FromAws, plan_policies, trust_policies
from models.loader import load_plan
from tests.client.test_cli import ROOT, relman

EVERY_KIND = ROOT / "tests" / "models" / "good" / "every-kind.yaml"
DEMO = ROOT / "examples" / "demo.yaml"
WORKER_ROLE = "arn:aws:iam::999988887777:role/relman-worker"
EU_ROLE = "arn:aws:iam::111122223333:role/relman-deployer"
US_ROLE = "arn:aws:iam::444455556666:role/relman-deployer"
TO_ECS = {"StringEquals": {"iam:PassedToService": ["ecs-tasks.amazonaws.com"]}}

PLAN = f"""\
id: shop-4.0.0
application: shop
version: "4.0.0"
requested_by: alice
departments:
  eu: {{region: eu-west-1, role_arn: "{EU_ROLE}", external_id: relman-eu}}
  us: {{region: us-east-1, role_arn: "{US_ROLE}"}}
targets:
  - {{name: eu-web, kind: ecs_service, cluster: shop, service: web, task_definition: "web:2"}}
  - {{name: us-flag, kind: ssm_parameter, parameter: /shop/flag, value: "on"}}
waves:
  - {{name: eu, department: eu, targets: [eu-web]}}
  - {{name: us, department: us, after: [eu], targets: [us-flag]}}
"""


@pytest.fixture(autouse=True)
def _no_worker_role_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELMAN_WORKER_ROLE_ARN", raising=False)


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(PLAN)
    return path


def moto_env(aws: AwsClients) -> dict[str, str]:
    return {"RELMAN_AWS_ENDPOINT_URL": str(aws.endpoint_url), "AWS_DEFAULT_REGION": "us-east-1"}


def iam_json(*args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    result = relman("plan", "iam", *args, "-o", "json", env=env)
    assert result.returncode == 0, result.stderr
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data


def eu_service_on_web_1(aws: AwsClients) -> None:
    """In the eu role's account: service shop/web runs web:1 (task role web-v1); web:2, the
    plan's, has task role web-v2; both name the execution role ecs-execution, web:2 by name."""
    ecs = aws.client("ecs", "eu-west-1", EU_ROLE, "relman-eu")
    ecs.create_cluster(clusterName="shop")
    for revision, execution in (
        (1, "arn:aws:iam::111122223333:role/ecs-execution"),
        (2, "ecs-execution"),
    ):
        ecs.register_task_definition(
            family="web",
            taskRoleArn=f"arn:aws:iam::111122223333:role/web-v{revision}",
            executionRoleArn=execution,
            containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}],
        )
    ecs.create_service(cluster="shop", serviceName="web", taskDefinition="web:1", desiredCount=1)


# --- trust policies and the options -----------------------------------------------------------


def test_plan_iam_prints_each_roles_policy_with_its_trust_policy_as_json(
    plan_file: Path,
) -> None:
    data = iam_json(str(plan_file), "--offline", "--worker-role", WORKER_ROLE)

    assert [(p["applies_to"], p["trust_policy"] is not None) for p in data] == [
        (WORKER_CREDENTIALS, False),
        (EU_ROLE, True),
        (US_ROLE, True),
    ]
    assume = {
        "Sid": "RelmanWorkerAssumesRole",
        "Effect": "Allow",
        "Principal": {"AWS": WORKER_ROLE},
        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
    }
    assert data[1]["trust_policy"] == {
        "Version": "2012-10-17",
        "Statement": [
            assume
            | {
                "Condition": {
                    "StringEquals": {"sts:ExternalId": ["relman-eu"]},
                    "StringLike": {"sts:SourceIdentity": ["relman-*"]},
                }
            }
        ],
    }
    assert data[2]["trust_policy"] == {
        "Version": "2012-10-17",
        "Statement": [assume | {"Condition": {"StringLike": {"sts:SourceIdentity": ["relman-*"]}}}],
    }


def test_plan_iam_of_every_kind_as_json_matches_the_policies_and_takes_the_role_from_env() -> None:
    data = iam_json(str(EVERY_KIND), "--offline", env={"RELMAN_WORKER_ROLE_ARN": WORKER_ROLE})

    plan = load_plan(EVERY_KIND)
    offline = FromAws(unread_because=OFFLINE_REASON)
    policies = plan_policies(plan, offline, trust_policies(plan, WORKER_ROLE))
    assert data == [p.to_json() for p in policies]


def test_plan_iam_without_the_worker_role_refuses_naming_the_options(plan_file: Path) -> None:
    result = relman("plan", "iam", str(plan_file), "--offline")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"error: {plan_file}: the trust policies of the 2 roles the plan assumes name the "
        "worker's role, which relman cannot guess: give --worker-role ARN (or "
        "RELMAN_WORKER_ROLE_ARN), or --no-trust to print the permission policies only"
    )


def test_plan_iam_no_trust_prints_the_permission_policies_only(plan_file: Path) -> None:
    data = iam_json(str(plan_file), "--offline", "--no-trust")

    assert [p["trust_policy"] for p in data] == [None, None, None]
    assert data[0]["policy"]["Statement"][0]["Resource"] == [EU_ROLE, US_ROLE]


def test_a_plan_assuming_no_role_needs_no_worker_role() -> None:
    data = iam_json(str(DEMO))

    assert [(p["applies_to"], p["trust_policy"]) for p in data] == [(WORKER_CREDENTIALS, None)]


def test_plan_iam_refuses_a_worker_role_that_is_not_a_role_arn(plan_file: Path) -> None:
    session = "arn:aws:sts::999988887777:assumed-role/relman-worker/i-0abc"

    result = relman("plan", "iam", str(plan_file), "--worker-role", session)

    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: --worker-role: '{session}' is a session of a role, not the role: give the "
        "role's ARN (arn:aws:iam::999988887777:role/relman-worker, with its path if it has one)"
    )


def test_plan_iam_refuses_a_role_with_two_external_ids_naming_both_fields(
    plan_file: Path,
) -> None:
    plan_file.write_text(
        PLAN.replace(
            "us-flag, kind: ssm_parameter,",
            f'us-flag, kind: ssm_parameter, role_arn: "{EU_ROLE}", external_id: other,',
        )
    )

    result = relman("plan", "iam", str(plan_file), "--offline", "--worker-role", WORKER_ROLE)

    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {plan_file}: role {EU_ROLE} is assumed with two external ids "
        "(departments.eu.external_id and targets[1].external_id), but its trust policy can "
        "require only one: give every use of the role the same external_id"
    )


def test_plan_iam_text_prints_each_policy_then_its_trust_policy_whole() -> None:
    result = relman("plan", "iam", str(EVERY_KIND), "--offline", "--worker-role", WORKER_ROLE)

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"The worker's own credentials (account {WORKER_ACCOUNT})" in out
    assert f"Role {EU_ROLE} (account 111122223333)" in out
    # Each policy is printed whole, ready to paste; long ARNs are not wrapped.
    plan = load_plan(EVERY_KIND)
    dns_role = "arn:aws:iam::444455556666:role/dns-only"
    [dns] = [
        p
        for p in plan_policies(plan, trust=trust_policies(plan, WORKER_ROLE))
        if p.role_arn == dns_role
    ]
    start = out.index("{", out.index(f"Role {dns_role}"))
    document, end = json.JSONDecoder().raw_decode(out[start:])
    assert document == dns.document()
    trust_at = out.index(f"Trust policy (who may assume {dns_role}):", start + end)
    trust, _ = json.JSONDecoder().raw_decode(out[out.index("{", trust_at) :])
    assert dns.trust is not None and trust == dns.trust.document()


def test_plan_iam_of_a_bad_plan_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("kind: ssm_parameter", "kind: ftp_server", 1))

    result = relman("plan", "iam", str(bad))

    assert result.returncode == 2
    assert str(bad) in result.stderr


# --- iam:PassRole: the task definitions' roles, read from AWS -----------------------------------


def test_pass_role_is_narrowed_to_the_roles_of_the_new_and_the_running_task_definition(
    plan_file: Path, aws: AwsClients
) -> None:
    eu_service_on_web_1(aws)

    data = iam_json(str(plan_file), "--worker-role", WORKER_ROLE, env=moto_env(aws))

    role = "arn:aws:iam::111122223333:role/{}".format
    eu = data[1]
    assert (eu["applies_to"], eu["wildcards"]) == (EU_ROLE, [])
    assert eu["policy"]["Statement"] == [
        {
            "Sid": "EcsDescribeCluster",
            "Effect": "Allow",
            "Action": ["ecs:DescribeClusters"],
            "Resource": ["arn:aws:ecs:eu-west-1:111122223333:cluster/shop"],
        },
        {
            "Sid": "EcsDescribeTaskDefinitionNeedsStar",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTaskDefinition"],
            "Resource": ["*"],
        },
        # web:2's roles for the release, web:1's for its rollback; to ECS tasks only.
        {
            "Sid": "EcsPassTaskDefinitionRoles",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": [role("ecs-execution"), role("web-v1"), role("web-v2")],
            "Condition": TO_ECS,
        },
        {
            "Sid": "EcsServices",
            "Effect": "Allow",
            "Action": ["ecs:DescribeServices", "ecs:UpdateService"],
            "Resource": ["arn:aws:ecs:eu-west-1:111122223333:service/shop/web"],
        },
    ]


def test_task_definitions_without_roles_pass_none(plan_file: Path, aws: AwsClients) -> None:
    ecs = aws.client("ecs", "eu-west-1", EU_ROLE, "relman-eu")
    ecs.create_cluster(clusterName="shop")
    for _ in range(2):
        ecs.register_task_definition(
            family="web", containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}]
        )
    ecs.create_service(cluster="shop", serviceName="web", taskDefinition="web:1", desiredCount=1)

    data = iam_json(str(plan_file), "--no-trust", env=moto_env(aws))

    assert [s["Sid"] for s in data[1]["policy"]["Statement"]] == [
        "EcsDescribeCluster",
        "EcsDescribeTaskDefinitionNeedsStar",
        "EcsServices",
    ]
    assert data[1]["wildcards"] == []


def test_a_task_definition_or_service_not_found_keeps_a_wildcard_and_says_why(
    plan_file: Path, aws: AwsClients
) -> None:
    eu_service_on_web_1(aws)
    # web:3 is not registered; service api does not exist.
    plan_file.write_text(
        PLAN.replace('task_definition: "web:2"', 'task_definition: "web:3"')
        .replace(
            "  - {name: us-flag,",
            "  - {name: eu-api, kind: ecs_service, cluster: shop, service: api, "
            'task_definition: "web:2"}\n  - {name: us-flag,',
        )
        .replace("targets: [eu-web]", "targets: [eu-web, eu-api]")
    )

    data = iam_json(str(plan_file), "--no-trust", env=moto_env(aws))

    wildcard = "arn:aws:iam::111122223333:role/*"
    eu = data[1]
    assert {s["Sid"]: s for s in eu["policy"]["Statement"]}["EcsPassTaskDefinitionRoles"] == {
        "Sid": "EcsPassTaskDefinitionRoles",
        "Effect": "Allow",
        "Action": ["iam:PassRole"],
        "Resource": [wildcard],
        "Condition": TO_ECS,
    }
    assert eu["wildcards"] == [
        {
            "statement": "EcsPassTaskDefinitionRoles",
            "target": "eu-web",
            "resource": wildcard,
            "reason": "task definition web:3 could not be read "
            "(ClientException: Unable to describe task definition.)",
        },
        {
            "statement": "EcsPassTaskDefinitionRoles",
            "target": "eu-api",
            "resource": wildcard,
            "reason": "ecs service api in cluster shop does not exist, so the task definition "
            "a rollback restores is unknown",
        },
    ]


def test_offline_keeps_the_wildcard_and_says_why(plan_file: Path, aws: AwsClients) -> None:
    eu_service_on_web_1(aws)  # there to be read, but --offline reads nothing
    args = (str(plan_file), "--offline", "--worker-role", WORKER_ROLE)

    data = iam_json(*args, env=moto_env(aws))
    text = relman("plan", "iam", *args, env=moto_env(aws))

    wildcard = "arn:aws:iam::111122223333:role/*"
    pass_role = {s["Sid"]: s for s in data[1]["policy"]["Statement"]}["EcsPassTaskDefinitionRoles"]
    assert pass_role["Resource"] == [wildcard]
    assert data[1]["wildcards"] == [
        {
            "statement": "EcsPassTaskDefinitionRoles",
            "target": "eu-web",
            "resource": wildcard,
            "reason": "its task definitions were not read (--offline)",
        }
    ]
    assert (
        f"  wildcard: EcsPassTaskDefinitionRoles allows {wildcard} for target eu-web: its task "
        "definitions were not read (--offline)\n" in text.stdout
    )
