"""The least-privilege IAM policies a worker needs to run a release plan (``relman plan iam``).

One policy per set of credentials the worker uses: its own (for targets and alarms with no
role, and to assume every role the plan names) and one per assumed role. Each statement
grants only the actions the target handlers really call (``KIND_CALLS``, checked against
their source by the tests) on the ARNs the plan names.

Where the plan cannot say:

- **Account.** A role's account comes from its ARN. The worker's own account is written
  ``${aws:PrincipalAccount}``, an IAM policy variable that IAM replaces with the account of
  the credentials the policy is attached to, so the policy can be used as printed.
- **Region.** A target's region, else its department's, else ``*``: the worker then uses
  ``AWS_REGION`` (or us-east-1), which the plan does not know.
- **Partition.** A role's partition comes from its ARN; for the worker's own credentials it
  is ``aws``.

No boto3 and no Temporal here: this is plain data, shared by the CLI and the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from models.plan import (
    EcsServiceTarget,
    Elbv2WeightsTarget,
    LambdaAliasTarget,
    ReleasePlan,
    Route53WeightedTarget,
    S3ArtifactTarget,
    SsmParameterTarget,
    Target,
    Wave,
)

POLICY_VERSION = "2012-10-17"
WORKER_CREDENTIALS = "worker's own credentials"
# An IAM policy variable, not a template to fill in: see the module docstring.
WORKER_ACCOUNT = "${aws:PrincipalAccount}"
DEFAULT_PARTITION = "aws"
ANY_REGION = "*"


@dataclass(frozen=True)
class AwsCall:
    """One boto3 client method a handler calls, and the IAM actions AWS checks for it."""

    method: str
    actions: tuple[str, ...]


# What each target kind's handler calls (snapshot, apply and compensate together). Some calls
# need more than their namesake action; the statements below say why for each.
KIND_CALLS: dict[str, tuple[AwsCall, ...]] = {
    "ssm_parameter": (
        # WithDecryption=True: a SecureString also needs kms:Decrypt on its key.
        AwsCall("get_parameter", ("ssm:GetParameter", "kms:Decrypt")),
        # A SecureString restored under its own KMS key: kms:Encrypt on that key.
        AwsCall("put_parameter", ("ssm:PutParameter", "kms:Encrypt")),
        AwsCall("delete_parameter", ("ssm:DeleteParameter",)),
        # A SecureString's snapshot records its KMS key.
        AwsCall("describe_parameters", ("ssm:DescribeParameters",)),
    ),
    "lambda_alias": (
        AwsCall("get_alias", ("lambda:GetAlias",)),
        AwsCall("get_function_configuration", ("lambda:GetFunctionConfiguration",)),
        AwsCall("update_alias", ("lambda:UpdateAlias",)),
    ),
    "elbv2_weights": (
        AwsCall("describe_listeners", ("elasticloadbalancing:DescribeListeners",)),
        AwsCall("describe_target_groups", ("elasticloadbalancing:DescribeTargetGroups",)),
        AwsCall("modify_listener", ("elasticloadbalancing:ModifyListener",)),
    ),
    "route53_weighted": (
        AwsCall("list_resource_record_sets", ("route53:ListResourceRecordSets",)),
        AwsCall("change_resource_record_sets", ("route53:ChangeResourceRecordSets",)),
    ),
    "ecs_service": (
        AwsCall("describe_services", ("ecs:DescribeServices",)),
        AwsCall("describe_task_definition", ("ecs:DescribeTaskDefinition",)),
        # Switching to a task definition passes its task and execution roles to ECS.
        AwsCall("update_service", ("ecs:UpdateService", "iam:PassRole")),
    ),
    "s3_artifact": (
        AwsCall("get_bucket_versioning", ("s3:GetBucketVersioning",)),
        # HEAD needs GetObject (GetObjectVersion with a VersionId); without ListBucket on
        # the bucket S3 answers 403 instead of 404 for an absent key.
        AwsCall("head_object", ("s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket")),
        # Reads the source version and writes the key; a tagged version's tags come along.
        AwsCall(
            "copy_object",
            (
                "s3:GetObjectVersion",
                "s3:GetObjectVersionTagging",
                "s3:PutObject",
                "s3:PutObjectTagging",
            ),
        ),
        AwsCall("delete_object", ("s3:DeleteObject",)),
    ),
}
# activities/health.py, for waves with alarms (through a paginator).
ALARM_CALLS = (AwsCall("describe_alarms", ("cloudwatch:DescribeAlarms",)),)
# activities/aws.py, with the worker's own credentials, once per role.
ASSUME_ROLE_CALLS = (AwsCall("assume_role", ("sts:AssumeRole",)),)
# activities/notify.py, for a plan whose notifications go to an SNS topic.
NOTIFY_CALLS = (AwsCall("publish", ("sns:Publish",)),)


class IamStatement(BaseModel):
    """One ``Allow`` statement: sorted, deduplicated actions and resources."""

    model_config = ConfigDict(frozen=True)

    sid: str
    actions: list[str]
    resources: list[str]
    # operator -> condition key -> values, e.g. {"StringLike": {"kms:ViaService": [...]}}
    condition: dict[str, dict[str, list[str]]] = {}

    def document(self) -> dict[str, Any]:
        """The statement as IAM JSON."""
        statement: dict[str, Any] = {
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": self.actions,
            "Resource": self.resources,
        }
        if self.condition:
            statement["Condition"] = self.condition
        return statement


class IamPolicy(BaseModel):
    """The policy for one set of credentials: the worker's own, or one assumed role."""

    model_config = ConfigDict(frozen=True)

    applies_to: str  # the role ARN, or WORKER_CREDENTIALS
    role_arn: str | None
    account: str
    used_by: list[str]
    statements: list[IamStatement]

    def document(self) -> dict[str, Any]:
        """The policy as IAM JSON, ready to attach."""
        return {"Version": POLICY_VERSION, "Statement": [s.document() for s in self.statements]}

    def to_json(self) -> dict[str, Any]:
        """What ``relman plan iam --output json`` prints for this policy."""
        return {
            "applies_to": self.applies_to,
            "role_arn": self.role_arn,
            "account": self.account,
            "used_by": self.used_by,
            "policy": self.document(),
        }


# --- where a call goes -------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """The credentials and region a call runs with, as far as the plan tells."""

    role_arn: str | None
    region: str

    @property
    def partition(self) -> str:
        return self.role_arn.split(":")[1] if self.role_arn else DEFAULT_PARTITION

    @property
    def account(self) -> str:
        return self.role_arn.split(":")[4] if self.role_arn else WORKER_ACCOUNT


def target_where(plan: ReleasePlan, wave: Wave, target: Target) -> Where:
    """Where a target's calls go: its own region and role, else its department's.

    The same inheritance as the workflow's ``resolved_target`` (a test holds them equal).
    """
    department = plan.departments.get(wave.department)
    region = target.region or (department.region if department else None)
    role_arn = target.role_arn or (department.role_arn if department else None)
    return Where(role_arn=role_arn, region=region or ANY_REGION)


def alarm_where(plan: ReleasePlan, wave: Wave) -> Where:
    """Where a wave's alarms are read: its department's region and role."""
    department = plan.departments.get(wave.department)
    if department is None:
        return Where(role_arn=None, region=ANY_REGION)
    return Where(role_arn=department.role_arn, region=department.region or ANY_REGION)


# --- statements per kind -----------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """Part of a statement: the Sid fixes the actions, resources and conditions add up."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: tuple[tuple[str, str, str], ...] = ()  # (operator, key, value)


def _arn_parts(arn: str) -> list[str]:
    return arn.split(":", 5)


def _ssm_parameter(target: SsmParameterTarget, where: Where) -> list[Grant]:
    if target.parameter.startswith("arn:"):  # a parameter shared from another account
        arn = target.parameter
        region = _arn_parts(arn)[3]
    else:
        name = target.parameter.removeprefix("/")
        region = where.region
        arn = f"arn:{where.partition}:ssm:{region}:{where.account}:parameter/{name}"
    grants = [
        Grant(
            # DeleteParameter: compensating a parameter the release created removes it.
            "SsmParameters",
            ("ssm:DeleteParameter", "ssm:GetParameter", "ssm:PutParameter"),
            (arn,),
        )
    ]
    if target.type == "SecureString":
        # The parameter's KMS key is not in the plan, so the Resource is "*"; the
        # conditions confine Decrypt (reading it) and Encrypt (restoring it under the key it
        # had) to SSM in this region working on this very parameter (SSM puts the
        # parameter's ARN in the encryption context). DescribeParameters, which tells the
        # snapshot that key, has no resource-level permissions.
        grants.append(
            Grant(
                "SsmSecureStringKms",
                ("kms:Decrypt", "kms:Encrypt"),
                ("*",),
                (
                    ("StringLike", "kms:ViaService", f"ssm.{region}.amazonaws.com"),
                    ("StringLike", "kms:EncryptionContext:PARAMETER_ARN", arn),
                ),
            )
        )
        grants.append(Grant("SsmDescribeParameters", ("ssm:DescribeParameters",), ("*",)))
    return grants


def _lambda_alias(target: LambdaAliasTarget, where: Where) -> list[Grant]:
    if target.function.startswith("arn:"):
        parts = target.function.split(":")
        function_arn = ":".join(parts[:7])  # without a qualifier
    else:
        function_arn = (
            f"arn:{where.partition}:lambda:{where.region}:{where.account}"
            f":function:{target.function}"
        )
    # AWS's authorization reference lists these actions on the function resource only; the
    # Lambda guide lets them be scoped by alias or version ARN. Both ARNs are granted, so the
    # policy holds whichever the service checks, and neither reaches another function.
    return [
        Grant(
            "LambdaAliases",
            ("lambda:GetAlias", "lambda:UpdateAlias"),
            (function_arn, f"{function_arn}:{target.alias}"),
        ),
        Grant(
            # Checks that the version to shift traffic to was published.
            "LambdaVersionCheck",
            ("lambda:GetFunctionConfiguration",),
            (function_arn, f"{function_arn}:{target.version}"),
        ),
    ]


def _elbv2_weights(target: Elbv2WeightsTarget, where: Where) -> list[Grant]:
    return [
        Grant(
            # ELBv2's Describe* actions support no resource-level permissions.
            "Elbv2DescribeNeedsStar",
            (
                "elasticloadbalancing:DescribeListeners",
                "elasticloadbalancing:DescribeTargetGroups",
            ),
            ("*",),
        ),
        Grant(
            "Elbv2ModifyListener", ("elasticloadbalancing:ModifyListener",), (target.listener_arn,)
        ),
    ]


def _route53_weighted(target: Route53WeightedTarget, where: Where) -> list[Grant]:
    zone_id = target.hosted_zone_id.removeprefix("/hostedzone/")
    zone = f"arn:{where.partition}:route53:::hostedzone/{zone_id}"
    # Route 53 compares record names lower case, without the final dot.
    name = target.record_name.lower().removesuffix(".")
    changes = "ForAllValues:StringEquals"
    return [
        Grant("Route53ListRecords", ("route53:ListResourceRecordSets",), (zone,)),
        Grant(
            # Only UPSERTs of the plan's record names and types.
            "Route53UpsertWeightedRecords",
            ("route53:ChangeResourceRecordSets",),
            (zone,),
            (
                (changes, "route53:ChangeResourceRecordSetsActions", "UPSERT"),
                (changes, "route53:ChangeResourceRecordSetsNormalizedRecordNames", name),
                (changes, "route53:ChangeResourceRecordSetsRecordTypes", target.record_type),
            ),
        ),
    ]


def _ecs_service(target: EcsServiceTarget, where: Where) -> list[Grant]:
    cluster = (
        target.cluster.rsplit("/", 1)[-1] if target.cluster.startswith("arn:") else target.cluster
    )
    if target.service.startswith("arn:"):
        service_arn = target.service
    else:
        service_arn = (
            f"arn:{where.partition}:ecs:{where.region}:{where.account}"
            f":service/{cluster}/{target.service}"
        )
    return [
        Grant("EcsServices", ("ecs:DescribeServices", "ecs:UpdateService"), (service_arn,)),
        Grant(
            # ecs:DescribeTaskDefinition supports no resource-level permissions.
            "EcsDescribeTaskDefinitionNeedsStar",
            ("ecs:DescribeTaskDefinition",),
            ("*",),
        ),
        Grant(
            # UpdateService passes the new task definition's task and execution roles to
            # ECS. The plan does not name them: this allows any role of the account, to ECS
            # tasks only. Narrow it to the task definitions' roles where they are known.
            "EcsPassTaskDefinitionRoles",
            ("iam:PassRole",),
            (f"arn:{where.partition}:iam::{where.account}:role/*",),
            (("StringEquals", "iam:PassedToService", "ecs-tasks.amazonaws.com"),),
        ),
    ]


def _s3_artifact(target: S3ArtifactTarget, where: Where) -> list[Grant]:
    bucket = f"arn:{where.partition}:s3:::{target.bucket}"
    key = f"{bucket}/{target.key}"
    source = f"{bucket}/{target.source_key}"
    return [
        Grant(
            # ListBucket lets HeadObject answer 404 for a key the release creates.
            "S3ArtifactBuckets",
            ("s3:GetBucketVersioning", "s3:ListBucket"),
            (bucket,),
        ),
        Grant(
            # The release key: read, promoted to by copy, restored by copy or delete.
            # Tagging only matters for a tagged version, which the copy brings along.
            "S3ArtifactKeys",
            (
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:GetObjectVersionTagging",
                "s3:PutObject",
                "s3:PutObjectTagging",
            ),
            (key,),
        ),
        Grant(
            "S3ArtifactSourceVersions",
            ("s3:GetObjectVersion", "s3:GetObjectVersionTagging"),
            (source,),
        ),
    ]


# Any: each builder takes its own kind's target, which target_grants picks by kind.
_KIND_GRANTS: dict[str, Callable[[Any, Where], list[Grant]]] = {
    "ssm_parameter": _ssm_parameter,
    "lambda_alias": _lambda_alias,
    "elbv2_weights": _elbv2_weights,
    "route53_weighted": _route53_weighted,
    "ecs_service": _ecs_service,
    "s3_artifact": _s3_artifact,
}


def target_grants(target: Target, where: Where) -> list[Grant]:
    """What one target's snapshot, apply and compensate need, with ``where``'s credentials."""
    return _KIND_GRANTS[target.kind](target, where)


def alarm_grants(alarms: Iterable[str], where: Where) -> list[Grant]:
    """Reading a wave's CloudWatch alarms (metric and composite share the ARN form)."""
    arns = tuple(
        f"arn:{where.partition}:cloudwatch:{where.region}:{where.account}:alarm:{name}"
        for name in alarms
    )
    return [Grant("CloudWatchWaveAlarms", ("cloudwatch:DescribeAlarms",), arns)] if arns else []


# --- putting policies together -----------------------------------------------------------


@dataclass
class _Draft:
    role_arn: str | None
    account: str
    used_by: list[str] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)

    def statements(self) -> list[IamStatement]:
        merged: dict[str, tuple[tuple[str, ...], set[str], dict[str, dict[str, set[str]]]]] = {}
        for grant in self.grants:
            actions, resources, condition = merged.setdefault(grant.sid, (grant.actions, set(), {}))
            assert actions == grant.actions, f"Sid {grant.sid} used for different actions"
            resources.update(grant.resources)
            for operator, key, value in grant.condition:
                condition.setdefault(operator, {}).setdefault(key, set()).add(value)
        return [
            IamStatement(
                sid=sid,
                actions=sorted(set(actions)),
                resources=sorted(resources),
                condition={
                    op: {key: sorted(values) for key, values in sorted(keys.items())}
                    for op, keys in sorted(condition.items())
                },
            )
            for sid, (actions, resources, condition) in sorted(merged.items())
        ]


def plan_policies(plan: ReleasePlan) -> list[IamPolicy]:
    """The IAM policies a worker needs to run ``plan``: its own first, then one per role.

    Roles come in the order the plan first uses them. The worker's own policy always holds
    ``sts:AssumeRole`` on every role, and is there even when every target has a role.
    """
    own = _Draft(role_arn=None, account=WORKER_ACCOUNT)
    drafts: dict[str | None, _Draft] = {None: own}

    def draft(where: Where) -> _Draft:
        if where.role_arn not in drafts:
            drafts[where.role_arn] = _Draft(role_arn=where.role_arn, account=where.account)
        return drafts[where.role_arn]

    for wave in plan.waves:
        for name in wave.targets:
            target = plan.target(name)
            where = target_where(plan, wave, target)
            policy = draft(where)
            policy.used_by.append(f"target {target.name} ({target.resource})")
            policy.grants.extend(target_grants(target, where))
        if wave.alarms:
            where = alarm_where(plan, wave)
            policy = draft(where)
            policy.used_by.append(f"alarms of wave {wave.name}")
            policy.grants.extend(alarm_grants(wave.alarms, where))

    notifications = plan.notifications
    if notifications is not None and notifications.sns_topic_arn:
        topic = notifications.sns_topic_arn
        where = Where(role_arn=notifications.role_arn, region=ANY_REGION)
        policy = draft(where)
        policy.used_by.append(f"notifications to {topic}")
        policy.grants.append(Grant("PublishReleaseNotifications", ("sns:Publish",), (topic,)))

    roles = [role for role in drafts if role is not None]
    if roles:
        own.used_by.append("assuming " + ", ".join(roles))
        own.grants.append(Grant("AssumeReleaseRoles", ("sts:AssumeRole",), tuple(roles)))

    return [
        IamPolicy(
            applies_to=d.role_arn or WORKER_CREDENTIALS,
            role_arn=d.role_arn,
            account=d.account,
            used_by=list(dict.fromkeys(d.used_by)),
            statements=d.statements(),
        )
        for d in drafts.values()
    ]
