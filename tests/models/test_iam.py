"""``relman plan iam``: the least-privilege policies a worker needs, per role, and the
trust policy of each role it assumes.

The policies must hold exactly what the handlers call: a missing action fails a release in
production, an extra one is privilege nobody needs. The action table in ``models.iam`` is
checked against the handlers' source, and the policies against the table. The command line
(and what it reads from AWS) is tested in ``tests/client/test_plan_iam.py``.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from botocore import xform_name
from botocore.session import get_session

from models.iam import (
    ALARM_CALLS,
    ASSUME_ROLE_CALLS,
    KIND_CALLS,
    PREFLIGHT_CALLS,
    VALUE_FROM_PREFLIGHT_CALLS,
    WORKER_ACCOUNT,
    WORKER_CREDENTIALS,
    FromAws,
    IamPolicy,
    TaskDefinitionRoles,
    TrustConflict,
    Where,
    assumed_roles,
    check_worker_role,
    plan_policies,
    target_grants,
    target_where,
    task_definition_roles,
    trust_policies,
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
WORKER_ROLE = "arn:aws:iam::999988887777:role/relman-worker"
W = WORKER_ACCOUNT
ASSUME = ["sts:AssumeRole", "sts:SetSourceIdentity"]


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
        # SetSourceIdentity: the worker names the release it assumes a role for.
        "AssumeReleaseRoles": {
            "Sid": "AssumeReleaseRoles",
            "Effect": "Allow",
            "Action": ASSUME,
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
        # The preflight checks that key is enabled: keys of the parameter's account.
        "SsmSecureStringKeyCheck": {
            "Sid": "SsmSecureStringKeyCheck",
            "Effect": "Allow",
            "Action": ["kms:DescribeKey"],
            "Resource": [f"arn:aws:kms:eu-central-1:{W}:key/*"],
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


def test_every_kind_eu_role_covers_lambda_elbv2_the_fleet_and_the_waves_alarms() -> None:
    policy = by_principal(load_plan(EVERY_KIND))[EU_ROLE]
    function = "arn:aws:lambda:eu-west-1:111122223333:function:shop-checkout-eu"
    listener = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:listener/app/shop/1/2"
    blue = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/blue/1"

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
                # The fleet eu-servers takes its batches out of the group and back.
                "Sid": "Elbv2FleetTargets",
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:DeregisterTargets",
                    "elasticloadbalancing:RegisterTargets",
                ],
                "Resource": [blue],
            },
            {
                "Sid": "Elbv2ModifyListener",
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:ModifyListener"],
                "Resource": [listener],
            },
            {
                "Sid": "FleetReadsNeedStar",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:DescribeAutoScalingGroups",
                    "ec2:DescribeInstances",
                    "elasticloadbalancing:DescribeTargetGroups",
                    "elasticloadbalancing:DescribeTargetHealth",
                    "ssm:GetCommandInvocation",
                    "ssm:ListCommands",
                ],
                "Resource": ["*"],
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
            {
                # Its command (AWS's document) and its rollback (the account's own).
                "Sid": "SsmFleetCommands",
                "Effect": "Allow",
                "Action": ["ssm:SendCommand"],
                "Resource": [
                    "arn:aws:ec2:eu-west-1:111122223333:instance/*",
                    "arn:aws:ssm:eu-west-1:111122223333:document/shop-rollback",
                    "arn:aws:ssm:eu-west-1::document/AWS-RunShellScript",
                ],
            },
            {
                "Sid": "SsmFleetDocuments",
                "Effect": "Allow",
                "Action": ["ssm:DescribeDocument"],
                "Resource": ["arn:aws:ssm:eu-west-1:111122223333:document/shop-rollback"],
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
            "Action": ["route53:GetHostedZone", "route53:ListResourceRecordSets"],
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
        "EcsDescribeCluster": {
            "Sid": "EcsDescribeCluster",
            "Effect": "Allow",
            "Action": ["ecs:DescribeClusters"],
            "Resource": ["arn:aws-us-gov:ecs:us-east-1:444455556666:cluster/shop-us"],
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
        # Nothing was read from AWS: any role of the account, to ECS only, and a note why.
        "EcsPassTaskDefinitionRoles": {
            "Sid": "EcsPassTaskDefinitionRoles",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": ["arn:aws-us-gov:iam::444455556666:role/*"],
            "Condition": {"StringEquals": {"iam:PassedToService": ["ecs-tasks.amazonaws.com"]}},
        },
    }
    assert [str(w) for w in policies[US_ROLE].wildcards] == [
        "EcsPassTaskDefinitionRoles allows arn:aws-us-gov:iam::444455556666:role/* for target "
        "us-workers: its task definitions were not read from AWS"
    ]
    assert [p.wildcards for p in policies.values() if p.role_arn != US_ROLE] == [[], [], []]


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
            "Action": ASSUME,
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


def helper_methods(source: str, clients: set[str]) -> set[str]:
    """Methods called on the clients a helper module takes as parameters (``ssm``...)."""
    methods: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver = node.func.value
        if isinstance(receiver, ast.Name) and receiver.id in clients:
            if node.func.attr == "get_paginator":
                methods.update(str(a.value) for a in node.args if isinstance(a, ast.Constant))
            else:
                methods.add(node.func.attr)
    return methods


@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_action_table_lists_exactly_the_calls_each_handler_makes(kind: str) -> None:
    called = client_methods(handler_source(kind))
    if kind == "ec2_fleet":
        # A fleet sends its commands through the shared Run Command helpers.
        helpers = (ROOT / "activities" / "ssm_commands.py").read_text()
        called |= helper_methods(helpers, {"ec2", "ssm", "autoscaling"})
    assert {call.method for call in KIND_CALLS[kind]} == called


def test_action_table_lists_the_alarm_and_assume_role_calls() -> None:
    health = (ROOT / "activities" / "health.py").read_text()
    aws = (ROOT / "activities" / "aws.py").read_text()
    assert {c.method for c in ALARM_CALLS} == client_methods(health)
    # botocore's AssumeRoleCredentialFetcher calls sts.assume_role for relman (and again
    # before the credentials expire), so the call does not appear in the source itself.
    assert "AssumeRoleCredentialFetcher(" in aws
    assert {c.method for c in ASSUME_ROLE_CALLS} == client_methods(aws) | {"assume_role"}


def test_action_table_lists_the_value_from_preflight_calls() -> None:
    """What the preflight calls to check a ``value_from`` secret without reading it."""
    source = (ROOT / "activities" / "preflight.py").read_text()
    [check] = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.name == "_value_source"
    ]
    session = get_session()
    aws_methods = {
        xform_name(operation)
        for service in ("secretsmanager", "ssm")
        for operation in session.get_service_model(service).operation_names
    }
    called = {
        node.func.attr
        for node in ast.walk(check)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert {call.method for call in VALUE_FROM_PREFLIGHT_CALLS} == called & aws_methods


PREFLIGHT_SERVICES = {
    "ssm_parameter": ("ssm", "kms"),
    "lambda_alias": ("lambda",),
    "elbv2_weights": ("elbv2",),
    "route53_weighted": ("route53",),
    "ecs_service": ("ecs",),
    "s3_artifact": ("s3",),
    "ec2_fleet": ("ec2", "autoscaling", "elbv2", "ssm"),
}


@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_the_preflight_of_each_kind_calls_only_what_the_tables_grant(kind: str) -> None:
    source = (ROOT / "activities" / "preflight.py").read_text()
    checks = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.name in (f"_{kind}", f"_{kind}_itself")
    ]
    session = get_session()
    aws_methods = {
        xform_name(operation)
        for service in PREFLIGHT_SERVICES[kind]
        for operation in session.get_service_model(service).operation_names
    }
    called = {
        node.func.attr
        for check in checks
        for node in ast.walk(check)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    } & aws_methods
    # The route53 preflight reads the records through the handler's own reader.
    handler = {call.method for call in KIND_CALLS[kind]}
    extra = {call.method for call in PREFLIGHT_CALLS.get(kind, ())}
    assert called and called <= handler | extra and extra <= called


VALUE_FROM_TARGETS = """
  - name: db
    kind: ssm_parameter
    parameter: /app/db
    value_from:
      secretsmanager: arn:aws:secretsmanager:eu-west-1:111122223333:secret:app/db-AbCdEf
  - name: api-key
    kind: ssm_parameter
    parameter: /app/api-key
    value_from:
      secretsmanager: arn:aws:secretsmanager:eu-central-1:111122223333:secret:app/api-key
  - name: token
    kind: ssm_parameter
    parameter: /app/token
    type: SecureString
    value_from: {ssm: /vault/app/token}
"""
VALUE_FROM_WAVE = "  - {name: w, department: d, targets: [db, api-key, token]}"


@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_each_kinds_statements_grant_exactly_the_tables_actions(kind: str) -> None:
    plan = load_plan(EVERY_KIND)  # has every kind, and a SecureString parameter
    value_from = plan_text(VALUE_FROM_TARGETS, VALUE_FROM_WAVE)
    calls = (*KIND_CALLS[kind], *PREFLIGHT_CALLS.get(kind, ()))
    table = {action for call in calls for action in call.actions}
    if kind == "ssm_parameter":
        table |= {action for call in VALUE_FROM_PREFLIGHT_CALLS for action in call.actions}
    granted: set[str] = set()
    for target in [*plan.targets, *value_from.targets]:
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
                assert (where.role_arn, where.region, where.external_id) == (
                    resolved.role_arn,
                    resolved.region or "*",
                    resolved.external_id,
                )


# --- value_from secrets --------------------------------------------------------------------


def test_value_from_grants_reading_either_source_decrypted_and_checking_it_exists() -> None:
    plan = plan_text(
        VALUE_FROM_TARGETS, VALUE_FROM_WAVE, departments="departments: {d: {region: eu-west-1}}"
    )
    found = statements(plan_policies(plan)[0])
    db = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:app/db-AbCdEf"
    # Given without its random suffix: the name plus any six characters.
    api_key = "arn:aws:secretsmanager:eu-central-1:111122223333:secret:app/api-key-??????"
    vault = f"arn:aws:ssm:eu-west-1:{W}:parameter/vault/app/token"

    assert {sid: s for sid, s in found.items() if "ValueFrom" in sid} == {
        # GetSecretValue when the target is applied, DescribeSecret at preflight.
        "SecretsManagerValueFrom": {
            "Sid": "SecretsManagerValueFrom",
            "Effect": "Allow",
            "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
            "Resource": [api_key, db],
        },
        # A secret under a customer managed key: only through Secrets Manager, only these.
        "SecretsManagerValueFromKms": {
            "Sid": "SecretsManagerValueFromKms",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": ["*"],
            "Condition": {
                "StringLike": {
                    "kms:EncryptionContext:SecretARN": [api_key, db],
                    "kms:ViaService": [
                        "secretsmanager.eu-central-1.amazonaws.com",
                        "secretsmanager.eu-west-1.amazonaws.com",
                    ],
                }
            },
        },
        # Read (decrypted) at apply, and without decryption at preflight.
        "SsmValueFromParameters": {
            "Sid": "SsmValueFromParameters",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter"],
            "Resource": [vault],
        },
        "SsmValueFromKms": {
            "Sid": "SsmValueFromKms",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": ["*"],
            "Condition": {
                "StringLike": {
                    "kms:EncryptionContext:PARAMETER_ARN": [vault],
                    "kms:ViaService": ["ssm.eu-west-1.amazonaws.com"],
                }
            },
        },
    }
    # The parameters written are granted as ever; the secrets only ever read.
    assert found["SsmParameters"]["Resource"] == [
        f"arn:aws:ssm:eu-west-1:{W}:parameter/app/{name}" for name in ("api-key", "db", "token")
    ]


def test_value_from_is_read_with_the_targets_role() -> None:
    plan = plan_text(
        VALUE_FROM_TARGETS,
        VALUE_FROM_WAVE,
        departments=f'departments: {{d: {{region: eu-west-1, role_arn: "{EU_ROLE}"}}}}',
    )
    own, role = plan_policies(plan)

    assert [s.sid for s in own.statements] == ["AssumeReleaseRoles"]
    assert statements(role)["SsmValueFromParameters"]["Resource"] == [
        "arn:aws:ssm:eu-west-1:111122223333:parameter/vault/app/token"
    ]


# --- trust policies ------------------------------------------------------------------------

US_AWS_ROLE = "arn:aws:iam::444455556666:role/relman-deployer"


def two_departments(targets: str = "", waves: str = "", notifications: str = "") -> ReleasePlan:
    """Departments eu (a role with an external id) and us (a role without), a parameter in
    each, and alarms in eu: every use of a role the plan makes."""
    return plan_text(
        departments=f"""
departments:
  eu: {{region: eu-west-1, role_arn: "{EU_ROLE}", external_id: relman-eu}}
  us: {{region: us-east-1, role_arn: "{US_AWS_ROLE}"}}
{notifications}""",
        targets=f"""
  - {{name: eu-flag, kind: ssm_parameter, parameter: /shop/flag, value: "on"}}
  - {{name: us-flag, kind: ssm_parameter, parameter: /shop/flag, value: "on"}}
{targets}""",
        waves=f"""
  - {{name: eu, department: eu, targets: [eu-flag], alarms: [shop-eu-5xx]}}
  - {{name: us, department: us, after: [eu], targets: [us-flag]}}
{waves}""",
    )


def test_trust_policies_let_the_worker_role_in_with_the_external_id_and_a_relman_identity() -> None:
    plan = two_departments()
    trust = trust_policies(plan, WORKER_ROLE)

    assert [(t.role_arn, t.document()) for t in trust] == [
        (
            EU_ROLE,
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "RelmanWorkerAssumesRole",
                        "Effect": "Allow",
                        "Principal": {"AWS": WORKER_ROLE},
                        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
                        "Condition": {
                            "StringEquals": {"sts:ExternalId": ["relman-eu"]},
                            "StringLike": {"sts:SourceIdentity": ["relman-*"]},
                        },
                    }
                ],
            },
        ),
        (
            US_AWS_ROLE,
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "RelmanWorkerAssumesRole",
                        "Effect": "Allow",
                        "Principal": {"AWS": WORKER_ROLE},
                        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
                        "Condition": {"StringLike": {"sts:SourceIdentity": ["relman-*"]}},
                    }
                ],
            },
        ),
    ]
    # Each role's policy carries its trust policy; the worker's own credentials have none.
    policies = plan_policies(plan, trust=trust)
    assert [(p.applies_to, p.trust) for p in policies] == [
        (WORKER_CREDENTIALS, None),
        (EU_ROLE, trust[0]),
        (US_AWS_ROLE, trust[1]),
    ]
    assert policies[1].to_json()["trust_policy"] == trust[0].document()


def test_a_role_assumed_with_two_external_ids_is_refused_naming_both_fields() -> None:
    plan = two_departments(
        targets=f"""
  - {{name: eu-api, kind: lambda_alias, function: api, alias: live, version: "2",
     role_arn: "{EU_ROLE}", external_id: other-id}}""",
        waves="  - {name: api, department: us, after: [us], targets: [eu-api]}",
    )

    with pytest.raises(TrustConflict) as refused:
        trust_policies(plan, WORKER_ROLE)

    assert refused.value.problems == [
        f"role {EU_ROLE} is assumed with two external ids (departments.eu.external_id and "
        "targets[2].external_id), but its trust policy can require only one: give every use "
        "of the role the same external_id"
    ]


def test_a_role_assumed_with_and_without_an_external_id_is_refused_naming_both_fields() -> None:
    plan = two_departments(
        notifications=f"""notifications:
  sns_topic_arn: arn:aws:sns:eu-west-1:111122223333:releases
  role_arn: "{EU_ROLE}"
""",
    )

    with pytest.raises(TrustConflict) as refused:
        trust_policies(plan, WORKER_ROLE)

    assert str(refused.value) == (
        f"role {EU_ROLE} is assumed with an external id (departments.eu.external_id) and "
        "without one (notifications.role_arn), but its trust policy can require only one: "
        "give every use of the role the same external_id"
    )


def test_a_target_with_its_own_role_inherits_its_departments_external_id() -> None:
    # As the workflow resolves it: the role from the target, the external id from the
    # department, so the trust policy requires the department's external id.
    plan = two_departments(
        targets=f"""
  - {{name: eu-api, kind: lambda_alias, function: api, alias: live, version: "2",
     role_arn: "{DNS_ROLE}"}}""",
        waves="  - {name: api, department: eu, after: [us], targets: [eu-api]}",
    )

    assert assumed_roles(plan) == [EU_ROLE, US_AWS_ROLE, DNS_ROLE]
    dns = trust_policies(plan, WORKER_ROLE)[2]
    assert (dns.role_arn, dns.external_id) == (DNS_ROLE, "relman-eu")


@pytest.mark.parametrize(
    ("given", "error"),
    [
        (
            "arn:aws:sts::999988887777:assumed-role/relman-worker/i-0abc",
            "'arn:aws:sts::999988887777:assumed-role/relman-worker/i-0abc' is a session of a "
            "role, not the role: give the role's ARN "
            "(arn:aws:iam::999988887777:role/relman-worker, with its path if it has one)",
        ),
        (
            "relman-worker",
            "'relman-worker' is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
        ),
        (
            "arn:aws:iam::999988887777:user/alice",
            "'arn:aws:iam::999988887777:user/alice' is not an IAM role ARN "
            "(arn:aws:iam::ACCOUNT:role/NAME)",
        ),
    ],
)
def test_the_worker_role_must_be_an_iam_role_arn(given: str, error: str) -> None:
    assert check_worker_role(WORKER_ROLE) == WORKER_ROLE
    assert check_worker_role("arn:aws:iam::999988887777:role/ops/relman") is not None
    with pytest.raises(ValueError) as refused:
        check_worker_role(given)
    assert str(refused.value) == error


# --- iam:PassRole narrowed by what AWS told ------------------------------------------------


def test_pass_role_is_narrowed_to_the_roles_read_from_the_task_definitions() -> None:
    task = "arn:aws-us-gov:iam::444455556666:role/checkout-task"
    execution = "arn:aws-us-gov:iam::444455556666:role/ecs-execution"
    read = FromAws(task_definitions={"us-workers": TaskDefinitionRoles(roles=(task, execution))})

    policy = by_principal_with(load_plan(EVERY_KIND), read)[US_ROLE]

    assert statements(policy)["EcsPassTaskDefinitionRoles"] == {
        "Sid": "EcsPassTaskDefinitionRoles",
        "Effect": "Allow",
        "Action": ["iam:PassRole"],
        "Resource": [task, execution],
        "Condition": {"StringEquals": {"iam:PassedToService": ["ecs-tasks.amazonaws.com"]}},
    }
    assert policy.wildcards == []


def test_task_definitions_without_roles_need_no_pass_role() -> None:
    read = FromAws(task_definitions={"us-workers": TaskDefinitionRoles(roles=())})

    policy = by_principal_with(load_plan(EVERY_KIND), read)[US_ROLE]

    assert "EcsPassTaskDefinitionRoles" not in statements(policy)
    assert "iam:PassRole" not in json.dumps(policy.document())


def test_a_task_definition_that_could_not_be_read_keeps_the_wildcard_and_says_why() -> None:
    why = "task definition checkout-workers:57 could not be read (AccessDenied: no)"
    read = FromAws(task_definitions={"us-workers": TaskDefinitionRoles(unknown_because=why)})

    policy = by_principal_with(load_plan(EVERY_KIND), read)[US_ROLE]

    assert statements(policy)["EcsPassTaskDefinitionRoles"]["Resource"] == [
        "arn:aws-us-gov:iam::444455556666:role/*"
    ]
    assert policy.to_json()["wildcards"] == [
        {
            "statement": "EcsPassTaskDefinitionRoles",
            "target": "us-workers",
            "resource": "arn:aws-us-gov:iam::444455556666:role/*",
            "reason": why,
        }
    ]


def test_task_definition_roles_are_arns_in_the_task_definitions_account() -> None:
    described = {
        "taskDefinitionArn": "arn:aws-cn:ecs:cn-north-1:123456789012:task-definition/web:3",
        "taskRoleArn": "arn:aws-cn:iam::123456789012:role/web",
        "executionRoleArn": "ecs-execution",  # registered by name
    }

    assert task_definition_roles(described) == (
        "arn:aws-cn:iam::123456789012:role/web",
        "arn:aws-cn:iam::123456789012:role/ecs-execution",
    )
    assert task_definition_roles({"taskDefinitionArn": described["taskDefinitionArn"]}) == ()


def by_principal_with(plan: ReleasePlan, read: FromAws) -> dict[str, IamPolicy]:
    return {p.applies_to: p for p in plan_policies(plan, read)}
