"""``relman plan iam``: the least-privilege policies a worker needs, per role.

The policies must hold exactly what the handlers call: a missing action fails a release in
production, an extra one is privilege nobody needs. The action table in ``models.iam`` is
checked against the handlers' source, and the policies against the table.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from models.iam import (
    ALARM_CALLS,
    ASSUME_ROLE_CALLS,
    KIND_CALLS,
    WORKER_ACCOUNT,
    WORKER_CREDENTIALS,
    IamPolicy,
    Where,
    plan_policies,
    target_grants,
    target_where,
)
from models.loader import load_plan, load_plan_text
from models.plan import TARGET_KINDS, ReleasePlan
from workflows.release_state import resolved_target

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.yaml"
EVERY_KIND = ROOT / "tests" / "models" / "good" / "every-kind.yaml"
EU_ROLE = "arn:aws:iam::111122223333:role/relman-deployer"
US_ROLE = "arn:aws-us-gov:iam::444455556666:role/relman-deployer"
DNS_ROLE = "arn:aws:iam::444455556666:role/dns-only"
W = WORKER_ACCOUNT


def statements(policy: IamPolicy) -> dict[str, dict[str, Any]]:
    """The policy's statements as IAM JSON, by Sid."""
    return {s["Sid"]: s for s in policy.document()["Statement"]}


def by_principal(plan: ReleasePlan) -> dict[str, IamPolicy]:
    return {p.applies_to: p for p in plan_policies(plan)}


def plan_text(targets: str, waves: str, departments: str = "") -> ReleasePlan:
    return load_plan_text(
        f"""
id: iam-test
application: app
version: "1"
requested_by: alice
{departments}
targets:
{targets}
waves:
{waves}
"""
    )


# --- the two reference plans, statement by statement --------------------------------------


def test_demo_plan_needs_only_the_workers_own_ssm_parameters() -> None:
    [policy] = plan_policies(load_plan(DEMO))

    assert policy.applies_to == WORKER_CREDENTIALS
    assert policy.account == W
    assert policy.document() == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SsmParameters",
                "Effect": "Allow",
                "Action": ["ssm:DeleteParameter", "ssm:GetParameter", "ssm:PutParameter"],
                "Resource": [
                    f"arn:aws:ssm:eu-central-1:{W}:parameter/payments/finance/api/version",
                    f"arn:aws:ssm:eu-central-1:{W}:parameter/payments/finance/settlement/engine",
                    f"arn:aws:ssm:us-east-1:{W}:parameter/payments/operations/api/version",
                ],
            }
        ],
    }


def test_every_kind_plan_has_one_policy_per_role_after_the_workers_own() -> None:
    policies = plan_policies(load_plan(EVERY_KIND))

    assert [(p.applies_to, p.account) for p in policies] == [
        (WORKER_CREDENTIALS, W),
        (EU_ROLE, "111122223333"),
        (DNS_ROLE, "444455556666"),  # us-dns overrides its department's role
        (US_ROLE, "444455556666"),
    ]
    assert {p.applies_to: p.used_by for p in policies}[DNS_ROLE] == [
        "target us-dns (route53 record checkout.shop.example.com in Z0123456789ABCDEFGHIJ)"
    ]


def test_every_kind_worker_policy_covers_ssm_secure_string_s3_and_assume_role() -> None:
    policy = by_principal(load_plan(EVERY_KIND))[WORKER_CREDENTIALS]
    engine = f"arn:aws:ssm:eu-central-1:{W}:parameter/shop/checkout/engine"

    assert statements(policy) == {
        "AssumeReleaseRoles": {
            "Sid": "AssumeReleaseRoles",
            "Effect": "Allow",
            "Action": ["sts:AssumeRole"],
            "Resource": sorted([EU_ROLE, US_ROLE, DNS_ROLE]),
        },
        "SsmParameters": {
            "Sid": "SsmParameters",
            "Effect": "Allow",
            "Action": ["ssm:DeleteParameter", "ssm:GetParameter", "ssm:PutParameter"],
            "Resource": [f"arn:aws:ssm:eu-central-1:{W}:parameter/shop/checkout/enabled", engine],
        },
        # Only the SecureString parameter, only through SSM in its region.
        "SsmSecureStringKms": {
            "Sid": "SsmSecureStringKms",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:Encrypt"],
            "Resource": ["*"],
            "Condition": {
                "StringLike": {
                    "kms:EncryptionContext:PARAMETER_ARN": [engine],
                    "kms:ViaService": ["ssm.eu-central-1.amazonaws.com"],
                }
            },
        },
        # Its snapshot records which KMS key it is under (no resource-level permission).
        "SsmDescribeParameters": {
            "Sid": "SsmDescribeParameters",
            "Effect": "Allow",
            "Action": ["ssm:DescribeParameters"],
            "Resource": ["*"],
        },
        "S3ArtifactBuckets": {
            "Sid": "S3ArtifactBuckets",
            "Effect": "Allow",
            "Action": ["s3:GetBucketVersioning", "s3:ListBucket"],
            "Resource": ["arn:aws:s3:::shop-releases"],
        },
        "S3ArtifactKeys": {
            "Sid": "S3ArtifactKeys",
            "Effect": "Allow",
            "Action": [
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:GetObjectVersionTagging",
                "s3:PutObject",
                "s3:PutObjectTagging",
            ],
            "Resource": ["arn:aws:s3:::shop-releases/checkout/current.zip"],
        },
        "S3ArtifactSourceVersions": {
            "Sid": "S3ArtifactSourceVersions",
            "Effect": "Allow",
            "Action": ["s3:GetObjectVersion", "s3:GetObjectVersionTagging"],
            "Resource": ["arn:aws:s3:::shop-releases/checkout/3.0.0.zip"],
        },
    }


def test_every_kind_eu_role_covers_lambda_elbv2_and_the_waves_alarms() -> None:
    policy = by_principal(load_plan(EVERY_KIND))[EU_ROLE]
    function = "arn:aws:lambda:eu-west-1:111122223333:function:shop-checkout-eu"
    listener = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:listener/app/shop/1/2"

    assert policy.document() == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CloudWatchWaveAlarms",
                "Effect": "Allow",
                "Action": ["cloudwatch:DescribeAlarms"],
                "Resource": [
                    "arn:aws:cloudwatch:eu-west-1:111122223333:alarm:shop-eu-5xx",
                    "arn:aws:cloudwatch:eu-west-1:111122223333:alarm:shop-eu-latency",
                ],
            },
            {
                "Sid": "Elbv2DescribeNeedsStar",
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:DescribeListeners",
                    "elasticloadbalancing:DescribeTargetGroups",
                ],
                "Resource": ["*"],
            },
            {
                "Sid": "Elbv2ModifyListener",
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:ModifyListener"],
                "Resource": [listener],
            },
            {
                "Sid": "LambdaAliases",
                "Effect": "Allow",
                "Action": ["lambda:GetAlias", "lambda:UpdateAlias"],
                "Resource": [function, f"{function}:live"],
            },
            {
                "Sid": "LambdaVersionCheck",
                "Effect": "Allow",
                "Action": ["lambda:GetFunctionConfiguration"],
                "Resource": [function, f"{function}:42"],
            },
        ],
    }


def test_every_kind_us_roles_cover_route53_ecs_and_alarms_in_their_partitions() -> None:
    policies = by_principal(load_plan(EVERY_KIND))
    zone = "arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ"

    assert statements(policies[DNS_ROLE]) == {
        "Route53ListRecords": {
            "Sid": "Route53ListRecords",
            "Effect": "Allow",
            "Action": ["route53:ListResourceRecordSets"],
            "Resource": [zone],
        },
        "Route53UpsertWeightedRecords": {
            "Sid": "Route53UpsertWeightedRecords",
            "Effect": "Allow",
            "Action": ["route53:ChangeResourceRecordSets"],
            "Resource": [zone],
            "Condition": {
                "ForAllValues:StringEquals": {
                    "route53:ChangeResourceRecordSetsActions": ["UPSERT"],
                    "route53:ChangeResourceRecordSetsNormalizedRecordNames": [
                        "checkout.shop.example.com"
                    ],
                    "route53:ChangeResourceRecordSetsRecordTypes": ["CNAME"],
                }
            },
        },
    }
    assert statements(policies[US_ROLE]) == {
        "CloudWatchWaveAlarms": {
            "Sid": "CloudWatchWaveAlarms",
            "Effect": "Allow",
            "Action": ["cloudwatch:DescribeAlarms"],
            "Resource": ["arn:aws-us-gov:cloudwatch:us-east-1:444455556666:alarm:shop-us-5xx"],
        },
        "EcsServices": {
            "Sid": "EcsServices",
            "Effect": "Allow",
            "Action": ["ecs:DescribeServices", "ecs:UpdateService"],
            "Resource": [
                "arn:aws-us-gov:ecs:us-east-1:444455556666:service/shop-us/checkout-workers"
            ],
        },
        "EcsDescribeTaskDefinitionNeedsStar": {
            "Sid": "EcsDescribeTaskDefinitionNeedsStar",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTaskDefinition"],
            "Resource": ["*"],
        },
        "EcsPassTaskDefinitionRoles": {
            "Sid": "EcsPassTaskDefinitionRoles",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": ["arn:aws-us-gov:iam::444455556666:role/*"],
            "Condition": {"StringEquals": {"iam:PassedToService": ["ecs-tasks.amazonaws.com"]}},
        },
    }


# --- merging, accounts, regions ------------------------------------------------------------


def test_targets_sharing_resources_share_statements_without_duplicates() -> None:
    plan = plan_text(
        targets="""
  - {name: a, kind: ssm_parameter, parameter: /app/flag, value: "1", region: eu-west-1}
  - {name: b, kind: ssm_parameter, parameter: /app/mode, value: "1", region: eu-west-1}
  - {name: c, kind: lambda_alias, function: fn, alias: live, version: "3", region: eu-west-1}
  - {name: d, kind: lambda_alias, function: fn, alias: beta, version: "3", region: eu-west-1}
""",
        waves="""
  - {name: one, department: ops, targets: [a, c], alarms: [high-5xx]}
  - {name: two, department: ops, after: [one], targets: [b, d], alarms: [high-5xx]}
""",
    )
    [policy] = plan_policies(plan)
    found = statements(policy)
    function = f"arn:aws:lambda:eu-west-1:{W}:function:fn"

    # Two targets may not change one parameter (plan validation refuses it); functions,
    # permissions and alarms are shared.
    assert found["SsmParameters"]["Resource"] == [
        f"arn:aws:ssm:eu-west-1:{W}:parameter/app/{name}" for name in ("flag", "mode")
    ]
    assert found["LambdaAliases"]["Resource"] == [function, f"{function}:beta", f"{function}:live"]
    assert found["LambdaVersionCheck"]["Resource"] == [function, f"{function}:3"]
    # The department names no region: the alarms are read wherever the worker runs.
    assert found["CloudWatchWaveAlarms"]["Resource"] == [f"arn:aws:cloudwatch:*:{W}:alarm:high-5xx"]


def test_cross_account_plan_has_a_policy_per_role_and_the_worker_only_assumes_them() -> None:
    role_a = "arn:aws:iam::111111111111:role/deploy"
    role_b = "arn:aws:iam::222222222222:role/deploy"
    role_c = "arn:aws:iam::333333333333:role/path/special"
    plan = plan_text(
        departments=f"""
departments:
  a: {{region: eu-west-1, role_arn: "{role_a}", external_id: ext-a}}
  b: {{region: us-west-2, role_arn: "{role_b}"}}
""",
        targets=f"""
  - {{name: pa, kind: ssm_parameter, parameter: /x, value: "1"}}
  - {{name: pb, kind: ssm_parameter, parameter: /x, value: "1"}}
  - {{name: pc, kind: ssm_parameter, parameter: /x, value: "1", role_arn: "{role_c}"}}
""",
        waves="""
  - {name: wa, department: a, targets: [pa]}
  - {name: wb, department: b, targets: [pb, pc]}
""",
    )
    policies = plan_policies(plan)

    assert [p.applies_to for p in policies] == [WORKER_CREDENTIALS, role_a, role_b, role_c]
    assert policies[0].document()["Statement"] == [
        {
            "Sid": "AssumeReleaseRoles",
            "Effect": "Allow",
            "Action": ["sts:AssumeRole"],
            "Resource": [role_a, role_b, role_c],
        }
    ]
    resources = {p.applies_to: statements(p)["SsmParameters"]["Resource"] for p in policies[1:]}
    assert resources == {
        role_a: ["arn:aws:ssm:eu-west-1:111111111111:parameter/x"],
        role_b: ["arn:aws:ssm:us-west-2:222222222222:parameter/x"],
        # pc keeps its own role and inherits wave wb's department region.
        role_c: ["arn:aws:ssm:us-west-2:333333333333:parameter/x"],
    }
    assert "ext-a" not in json.dumps([p.to_json() for p in policies])


def test_secure_string_without_region_decrypts_through_ssm_in_any_region() -> None:
    plan = plan_text(
        targets="""
  - {name: s, kind: ssm_parameter, parameter: plain-name, value: v, type: SecureString}
""",
        waves="  - {name: w, department: ops, targets: [s]}",
    )
    found = statements(plan_policies(plan)[0])

    arn = f"arn:aws:ssm:*:{W}:parameter/plain-name"
    assert found["SsmParameters"]["Resource"] == [arn]
    assert found["SsmDescribeParameters"]["Resource"] == ["*"]
    assert found["SsmSecureStringKms"]["Condition"] == {
        "StringLike": {
            "kms:EncryptionContext:PARAMETER_ARN": [arn],
            "kms:ViaService": ["ssm.*.amazonaws.com"],
        }
    }


def test_resources_given_as_arns_keep_their_own_names() -> None:
    plan = plan_text(
        targets="""
  - name: fn
    kind: lambda_alias
    function: arn:aws:lambda:eu-west-1:999999999999:function:shop:7
    alias: live
    version: "8"
  - {name: svc, kind: ecs_service, cluster: "arn:aws:ecs:eu-west-1:999999999999:cluster/main",
     service: web, task_definition: "web:2", region: eu-west-1}
  - {name: dns, kind: route53_weighted, hosted_zone_id: /hostedzone/ZONE,
     record_name: A.Example.COM., record_type: A, blue_set_identifier: b, green_set_identifier: g}
""",
        waves="  - {name: w, department: ops, targets: [fn, svc, dns]}",
    )
    found = statements(plan_policies(plan)[0])

    function = "arn:aws:lambda:eu-west-1:999999999999:function:shop"
    assert found["LambdaAliases"]["Resource"] == [function, f"{function}:live"]
    assert found["EcsServices"]["Resource"] == [f"arn:aws:ecs:eu-west-1:{W}:service/main/web"]
    assert found["Route53ListRecords"]["Resource"] == ["arn:aws:route53:::hostedzone/ZONE"]
    names = found["Route53UpsertWeightedRecords"]["Condition"]["ForAllValues:StringEquals"]
    assert names["route53:ChangeResourceRecordSetsNormalizedRecordNames"] == ["a.example.com"]
    assert names["route53:ChangeResourceRecordSetsRecordTypes"] == ["A"]


@pytest.mark.parametrize("path", [DEMO, EVERY_KIND], ids=lambda p: p.name)
def test_policies_are_well_formed_iam(path: Path) -> None:
    for policy in plan_policies(load_plan(path)):
        document = policy.document()
        assert set(document) == {"Version", "Statement"}
        assert document["Version"] == "2012-10-17"
        sids = [s["Sid"] for s in document["Statement"]]
        assert len(sids) == len(set(sids))
        for statement in document["Statement"]:
            assert re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"])
            assert statement["Effect"] == "Allow"
            for key in ("Action", "Resource"):
                values = statement[key]
                assert values and values == sorted(set(values)), (statement["Sid"], key)
            assert all(re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", a) for a in statement["Action"])
            assert all(r == "*" or r.startswith("arn:") for r in statement["Resource"])
        json.dumps(document)  # plain JSON all the way down


# --- the table against the handlers, the policies against the table -------------------------


def client_methods(source: str) -> set[str]:
    """Methods called on boto3 clients in ``source``: ``x.client(...).m(``, or through a
    name bound to ``x.client(...)``, and paginators by operation name."""
    tree = ast.parse(source)

    def is_client_call(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "client"
        )

    clients = {
        t.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and is_client_call(node.value)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    methods: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver = node.func.value
        if is_client_call(receiver) or (isinstance(receiver, ast.Name) and receiver.id in clients):
            if node.func.attr == "get_paginator":
                methods.update(str(a.value) for a in node.args if isinstance(a, ast.Constant))
            else:
                methods.add(node.func.attr)
    return methods


def handler_source(kind: str) -> str:
    return (ROOT / "activities" / "targets" / f"{kind}.py").read_text()


@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_action_table_lists_exactly_the_calls_each_handler_makes(kind: str) -> None:
    assert {call.method for call in KIND_CALLS[kind]} == client_methods(handler_source(kind))


def test_action_table_lists_the_alarm_and_assume_role_calls() -> None:
    health = (ROOT / "activities" / "health.py").read_text()
    aws = (ROOT / "activities" / "aws.py").read_text()
    assert {c.method for c in ALARM_CALLS} == client_methods(health)
    # botocore's AssumeRoleCredentialFetcher calls sts.assume_role for relman (and again
    # before the credentials expire), so the call does not appear in the source itself.
    assert "AssumeRoleCredentialFetcher(" in aws
    assert {c.method for c in ASSUME_ROLE_CALLS} == client_methods(aws) | {"assume_role"}


@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_each_kinds_statements_grant_exactly_the_tables_actions(kind: str) -> None:
    plan = load_plan(EVERY_KIND)  # has every kind, and a SecureString parameter
    table = {action for call in KIND_CALLS[kind] for action in call.actions}
    granted: set[str] = set()
    for target in plan.targets:
        if target.kind == kind:
            for grant in target_grants(target, Where(role_arn=None, region="eu-west-1")):
                granted.update(grant.actions)
    assert granted == table


def test_regions_and_roles_are_inherited_as_the_workflow_does() -> None:
    for path in (DEMO, EVERY_KIND):
        plan = load_plan(path)
        for wave in plan.waves:
            for name in wave.targets:
                target = plan.target(name)
                where = target_where(plan, wave, target)
                resolved = resolved_target(plan, wave, target)
                assert (where.role_arn, where.region) == (
                    resolved.role_arn,
                    resolved.region or "*",
                )


# --- the command line ------------------------------------------------------------------------


def relman(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, as a user runs it (tests/client/test_cli.py does too)."""
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_plan_iam_prints_the_policies_as_json() -> None:
    result = relman("plan", "iam", str(EVERY_KIND), "-o", "json")

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data == [p.to_json() for p in plan_policies(load_plan(EVERY_KIND))]
    assert [p["applies_to"] for p in data] == [WORKER_CREDENTIALS, EU_ROLE, DNS_ROLE, US_ROLE]


def test_plan_iam_text_heads_each_policy_with_its_role() -> None:
    result = relman("plan", "iam", str(EVERY_KIND))

    assert result.returncode == 0, result.stderr
    assert f"The worker's own credentials (account {W})" in result.stdout
    assert f"Role {EU_ROLE} (account 111122223333)" in result.stdout
    # Each policy is printed whole, ready to paste; long ARNs are not wrapped.
    start = result.stdout.index("{", result.stdout.index(f"Role {DNS_ROLE}"))
    document, _ = json.JSONDecoder().raw_decode(result.stdout[start:])
    assert document == by_principal(load_plan(EVERY_KIND))[DNS_ROLE].document()


def test_plan_iam_of_a_bad_plan_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("kind: ssm_parameter", "kind: ftp_server", 1))

    result = relman("plan", "iam", str(bad))

    assert result.returncode == 2
    assert str(bad) in result.stderr
