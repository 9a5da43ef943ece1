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

Each assumed role also gets the **trust policy** that lets the worker's own role assume it:
``sts:AssumeRole`` with the plan's external id for that role, and ``sts:SetSourceIdentity``
with a source identity of ``relman-*``, which the worker sets to ``relman-<release id>`` so
CloudTrail ties every call made with the role to its release.

What the plan alone cannot narrow, ``relman plan iam`` reads from AWS (:class:`FromAws`):
the roles an ECS service update passes to ECS. Where it could not read them the statement
keeps a wildcard, and the policy says which target it is for and why (:class:`Wildcard`).

No boto3 and no Temporal here: this is plain data, shared by the CLI and the tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from models import arns
from models.checks import Check, HttpCheck, LambdaInvokeCheck, MetricCheck
from models.jobs import EcsTaskSpec, LambdaJobSpec, SsmCommandSpec
from models.plan import (
    Ec2FleetTarget,
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
from models.secrets import SecretSource

POLICY_VERSION = "2012-10-17"
WORKER_CREDENTIALS = "worker's own credentials"
# An IAM policy variable, not a template to fill in: see the module docstring.
WORKER_ACCOUNT = "${aws:PrincipalAccount}"
DEFAULT_PARTITION = "aws"
ANY_REGION = "*"
# The worker assumes every role with SourceIdentity ``relman-<release id>``
# (activities.aws.session_name); trust policies require the prefix.
SESSION_PREFIX = "relman-"
SOURCE_IDENTITY_PATTERN = f"{SESSION_PREFIX}*"
ASSUME_ACTIONS = ("sts:AssumeRole", "sts:SetSourceIdentity")
ECS_TASKS = "ecs-tasks.amazonaws.com"
# Secrets Manager ends every secret's ARN with "-" and six random characters.
_SECRET_WITH_SUFFIX = re.compile(r".+-[A-Za-z0-9]{6}")


@dataclass(frozen=True)
class AwsCall:
    """One boto3 client method a handler calls, and the IAM actions AWS checks for it."""

    method: str
    actions: tuple[str, ...]


# What each target kind's handler calls (snapshot, apply and compensate together). Some calls
# need more than their namesake action; the statements below say why for each.
KIND_CALLS: dict[str, tuple[AwsCall, ...]] = {
    "ssm_parameter": (
        # WithDecryption=True: a SecureString also needs kms:Decrypt on its key. Also reads
        # a ``value_from`` parameter.
        AwsCall("get_parameter", ("ssm:GetParameter", "kms:Decrypt")),
        # A ``value_from`` secret; under a customer managed key it needs kms:Decrypt too.
        AwsCall("get_secret_value", ("secretsmanager:GetSecretValue", "kms:Decrypt")),
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
    "ec2_fleet": (
        # Choosing the instances (activities/ssm_commands.py), by tags or group.
        AwsCall("describe_instances", ("ec2:DescribeInstances",)),
        AwsCall("describe_auto_scaling_groups", ("autoscaling:DescribeAutoScalingGroups",)),
        AwsCall("describe_target_health", ("elasticloadbalancing:DescribeTargetHealth",)),
        AwsCall("deregister_targets", ("elasticloadbalancing:DeregisterTargets",)),
        AwsCall("register_targets", ("elasticloadbalancing:RegisterTargets",)),
        # The command and the rollback command, sent once per key (a lookup first).
        AwsCall("send_command", ("ssm:SendCommand",)),
        AwsCall("list_commands", ("ssm:ListCommands",)),
        AwsCall("get_command_invocation", ("ssm:GetCommandInvocation",)),
    ),
}
# What the preflight (activities/preflight.py, read-only checks at release start) calls for
# a kind beyond its handler's own calls.
PREFLIGHT_CALLS: dict[str, tuple[AwsCall, ...]] = {
    # A SecureString's customer managed key is enabled.
    "ssm_parameter": (AwsCall("describe_key", ("kms:DescribeKey",)),),
    "route53_weighted": (AwsCall("get_hosted_zone", ("route53:GetHostedZone",)),),
    "ecs_service": (AwsCall("describe_clusters", ("ecs:DescribeClusters",)),),
    # The target groups and a document of the account's own exist.
    "ec2_fleet": (
        AwsCall("describe_target_groups", ("elasticloadbalancing:DescribeTargetGroups",)),
        AwsCall("describe_document", ("ssm:DescribeDocument",)),
    ),
}
# activities/preflight.py, checking that a ``value_from`` secret exists without reading it
# (with the target's role; the parameter read needs no decryption).
VALUE_FROM_PREFLIGHT_CALLS = (
    AwsCall("describe_secret", ("secretsmanager:DescribeSecret",)),
    AwsCall("get_parameter", ("ssm:GetParameter",)),
)
# activities/health.py, for waves with alarms (through a paginator).
ALARM_CALLS = (AwsCall("describe_alarms", ("cloudwatch:DescribeAlarms",)),)
# activities/aws.py, with the worker's own credentials, once per role. Passing a
# SourceIdentity needs sts:SetSourceIdentity besides the role's trust policy when the role
# is in another account.
ASSUME_ROLE_CALLS = (AwsCall("assume_role", ASSUME_ACTIONS),)
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


class Wildcard(BaseModel):
    """A resource left wider than the target needs, for want of what AWS would have told."""

    model_config = ConfigDict(frozen=True)

    statement: str  # the Sid
    target: str
    resource: str
    reason: str

    def __str__(self) -> str:
        return f"{self.statement} allows {self.resource} for target {self.target}: {self.reason}"


class TrustPolicy(BaseModel):
    """Who may assume one of the plan's roles: the worker's role, with the plan's external id
    for the role (if any) and a relman source identity."""

    model_config = ConfigDict(frozen=True)

    role_arn: str
    worker_role_arn: str
    external_id: str | None

    def document(self) -> dict[str, Any]:
        """The trust policy as IAM JSON, to set as the role's AssumeRolePolicyDocument."""
        condition: dict[str, dict[str, list[str]]] = {}
        if self.external_id is not None:
            condition["StringEquals"] = {"sts:ExternalId": [self.external_id]}
        # Both actions are evaluated against it; without a SourceIdentity the key is absent
        # and StringLike fails, so only sessions naming a relman release get in.
        condition["StringLike"] = {"sts:SourceIdentity": [SOURCE_IDENTITY_PATTERN]}
        return {
            "Version": POLICY_VERSION,
            "Statement": [
                {
                    "Sid": "RelmanWorkerAssumesRole",
                    "Effect": "Allow",
                    "Principal": {"AWS": self.worker_role_arn},
                    "Action": list(ASSUME_ACTIONS),
                    "Condition": condition,
                }
            ],
        }


class IamPolicy(BaseModel):
    """The policy for one set of credentials: the worker's own, or one assumed role (with
    that role's trust policy when the worker's role was given)."""

    model_config = ConfigDict(frozen=True)

    applies_to: str  # the role ARN, or WORKER_CREDENTIALS
    role_arn: str | None
    account: str
    used_by: list[str]
    statements: list[IamStatement]
    trust: TrustPolicy | None = None
    wildcards: list[Wildcard] = []

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
            "trust_policy": self.trust.document() if self.trust else None,
            "wildcards": [w.model_dump() for w in self.wildcards],
        }


# --- where a call goes -------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """The credentials and region a call runs with, as far as the plan tells."""

    role_arn: str | None
    region: str
    external_id: str | None = None
    # The plan field the external id comes from, else the role's: what an error names.
    field: str = ""

    @property
    def partition(self) -> str:
        return self.role_arn.split(":")[1] if self.role_arn else DEFAULT_PARTITION

    @property
    def account(self) -> str:
        return self.role_arn.split(":")[4] if self.role_arn else WORKER_ACCOUNT


def target_where(plan: ReleasePlan, wave: Wave, target: Target) -> Where:
    """Where a target's calls go: its own region, role and external id, else its
    department's.

    The same inheritance as the workflow's ``resolved_target`` (a test holds them equal).
    """
    department = plan.departments.get(wave.department)
    index = next(i for i, t in enumerate(plan.targets) if t.name == target.name)
    own, inherited = f"targets[{index}]", f"departments.{wave.department}"
    region = target.region or (department.region if department else None)
    role_arn = target.role_arn or (department.role_arn if department else None)
    if target.external_id:
        external_id, field = target.external_id, f"{own}.external_id"
    elif department and department.external_id:
        external_id, field = department.external_id, f"{inherited}.external_id"
    else:
        external_id, field = None, f"{own if target.role_arn else inherited}.role_arn"
    return Where(role_arn, region or ANY_REGION, external_id, field)


def alarm_where(plan: ReleasePlan, wave: Wave) -> Where:
    """Where a wave's alarms are read: its department's region, role and external id."""
    department = plan.departments.get(wave.department)
    if department is None or department.role_arn is None:
        region = department.region if department else None
        return Where(role_arn=None, region=region or ANY_REGION)
    field = f"departments.{wave.department}." + (
        "external_id" if department.external_id else "role_arn"
    )
    return Where(
        department.role_arn, department.region or ANY_REGION, department.external_id, field
    )


# --- statements per kind -----------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """Part of a statement: the Sid fixes the actions, resources and conditions add up."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: tuple[tuple[str, str, str], ...] = ()  # (operator, key, value)
    wildcard: Wildcard | None = None  # why a resource is wider than the target needs


@dataclass(frozen=True)
class TaskDefinitionRoles:
    """The roles an ``ecs_service`` target's UpdateService passes to ECS: the task and
    execution roles of the task definition it deploys and of the one a rollback restores
    (the service's current one); or, when they could not be read, why."""

    roles: tuple[str, ...] = ()
    unknown_because: str | None = None


@dataclass(frozen=True)
class FromAws:
    """What ``relman plan iam`` read from AWS where the plan alone cannot narrow a grant:
    per ``ecs_service`` target name, the roles it passes. A target missing from
    ``task_definitions`` keeps a wildcard, for ``unread_because``."""

    task_definitions: Mapping[str, TaskDefinitionRoles] = field(default_factory=dict)
    unread_because: str = "its task definitions were not read from AWS"


NOTHING_READ = FromAws()


def task_definition_roles(task_definition: Mapping[str, Any]) -> tuple[str, ...]:
    """The role ARNs in a DescribeTaskDefinition ``taskDefinition``: its task role and
    execution role, where it has them. A role registered by name is in the task
    definition's own account."""
    arn = arns.parse_arn(str(task_definition.get("taskDefinitionArn", "")))
    roles = []
    for key in ("taskRoleArn", "executionRoleArn"):
        role = task_definition.get(key)
        if not role:
            continue
        if not role.startswith("arn:") and arn is not None:
            role = f"arn:{arn.partition}:iam::{arn.account}:role/{role}"
        roles.append(str(role))
    return tuple(dict.fromkeys(roles))


def _arn_parts(arn: str) -> list[str]:
    return arn.split(":", 5)


def _parameter_arn(parameter: str, where: Where) -> tuple[str, str]:
    """The ARN and region of an SSM parameter the plan names by name or ARN."""
    if parameter.startswith("arn:"):  # a parameter shared from another account
        return parameter, _arn_parts(parameter)[3]
    name = parameter.removeprefix("/")
    return (
        f"arn:{where.partition}:ssm:{where.region}:{where.account}:parameter/{name}",
        where.region,
    )


def _secret_arn(arn: str) -> str:
    """The secret ARN to grant on: as given when it ends in Secrets Manager's random suffix,
    else with a pattern for the suffix (AWS's own advice for partial ARNs). A name that
    itself ends in "-" and six letters or digits is read as having a suffix, as Secrets
    Manager itself reads it."""
    name = _arn_parts(arn)[5].removeprefix("secret:")
    return arn if _SECRET_WITH_SUFFIX.fullmatch(name) else f"{arn}-??????"


def _value_from(source: SecretSource, where: Where) -> list[Grant]:
    """Reading a ``value_from`` secret when the target is applied (with decryption), and
    checking that it exists at preflight."""
    if source.secretsmanager is not None:
        arn = _secret_arn(source.secretsmanager)
        region = _arn_parts(arn)[3]
        return [
            Grant(
                "SecretsManagerValueFrom",
                ("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"),
                (arn,),
            ),
            Grant(
                # Only a secret under a customer managed key needs this (the key is not in
                # the plan); Secrets Manager puts the secret's ARN in the encryption context.
                "SecretsManagerValueFromKms",
                ("kms:Decrypt",),
                ("*",),
                (
                    ("StringLike", "kms:ViaService", f"secretsmanager.{region}.amazonaws.com"),
                    ("StringLike", "kms:EncryptionContext:SecretARN", arn),
                ),
            ),
        ]
    assert source.ssm is not None
    arn, region = _parameter_arn(source.ssm, where)
    return [
        Grant("SsmValueFromParameters", ("ssm:GetParameter",), (arn,)),
        Grant(
            # Read WithDecryption, as a SecureString target's own parameter is.
            "SsmValueFromKms",
            ("kms:Decrypt",),
            ("*",),
            (
                ("StringLike", "kms:ViaService", f"ssm.{region}.amazonaws.com"),
                ("StringLike", "kms:EncryptionContext:PARAMETER_ARN", arn),
            ),
        ),
    ]


def _ssm_parameter(target: SsmParameterTarget, where: Where, aws: FromAws) -> list[Grant]:
    arn, region = _parameter_arn(target.parameter, where)
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
        # The preflight checks that key is enabled (keys of the parameter's account and
        # region; the AWS managed alias/aws/ssm is not described).
        grants.append(
            Grant(
                "SsmSecureStringKeyCheck",
                ("kms:DescribeKey",),
                (f"arn:{where.partition}:kms:{region}:{where.account}:key/*",),
            )
        )
    if target.value_from is not None:
        grants.extend(_value_from(target.value_from, where))
    return grants


def _lambda_alias(target: LambdaAliasTarget, where: Where, aws: FromAws) -> list[Grant]:
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


def _elbv2_weights(target: Elbv2WeightsTarget, where: Where, aws: FromAws) -> list[Grant]:
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


def _route53_weighted(target: Route53WeightedTarget, where: Where, aws: FromAws) -> list[Grant]:
    zone_id = target.hosted_zone_id.removeprefix("/hostedzone/")
    zone = f"arn:{where.partition}:route53:::hostedzone/{zone_id}"
    # Route 53 compares record names lower case, without the final dot.
    name = target.record_name.lower().removesuffix(".")
    changes = "ForAllValues:StringEquals"
    return [
        # GetHostedZone: the preflight checks the zone exists.
        Grant(
            "Route53ListRecords",
            ("route53:GetHostedZone", "route53:ListResourceRecordSets"),
            (zone,),
        ),
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


def _ecs_service(target: EcsServiceTarget, where: Where, aws: FromAws) -> list[Grant]:
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
    if target.cluster.startswith("arn:"):
        cluster_arn = target.cluster
    else:
        cluster_arn = f"arn:{where.partition}:ecs:{where.region}:{where.account}:cluster/{cluster}"
    grants = [
        Grant("EcsServices", ("ecs:DescribeServices", "ecs:UpdateService"), (service_arn,)),
        # The preflight checks the cluster is active.
        Grant("EcsDescribeCluster", ("ecs:DescribeClusters",), (cluster_arn,)),
        Grant(
            # ecs:DescribeTaskDefinition supports no resource-level permissions.
            "EcsDescribeTaskDefinitionNeedsStar",
            ("ecs:DescribeTaskDefinition",),
            ("*",),
        ),
    ]
    # UpdateService passes the task and execution roles of the task definition it switches
    # to: the plan's on apply, the service's current one on rollback. The plan names
    # neither's roles; where AWS did not tell them, any role of the account, to ECS only.
    sid, to_ecs = "EcsPassTaskDefinitionRoles", ("StringEquals", "iam:PassedToService", ECS_TASKS)
    known = aws.task_definitions.get(target.name)
    reason = aws.unread_because if known is None else known.unknown_because
    if reason is not None:
        wildcard = f"arn:{where.partition}:iam::{where.account}:role/*"
        note = Wildcard(statement=sid, target=target.name, resource=wildcard, reason=reason)
        grants.append(Grant(sid, ("iam:PassRole",), (wildcard,), (to_ecs,), note))
    elif known is not None and known.roles:  # task definitions without roles pass none
        grants.append(Grant(sid, ("iam:PassRole",), known.roles, (to_ecs,)))
    return grants


def _s3_artifact(target: S3ArtifactTarget, where: Where, aws: FromAws) -> list[Grant]:
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


def _document_arn(document: str, where: Where) -> str:
    """An SSM document's ARN: AWS's own (``AWS-*``) have no account."""
    if document.startswith("arn:"):
        return document
    account = "" if document.startswith("AWS-") else where.account
    return f"arn:{where.partition}:ssm:{where.region}:{account}:document/{document}"


def _ec2_fleet(target: Ec2FleetTarget, where: Where, aws: FromAws) -> list[Grant]:
    commands = [target.command] + ([target.rollback] if target.rollback != "none" else [])
    documents = tuple(dict.fromkeys(_document_arn(c.document, where) for c in commands))
    instances = f"arn:{where.partition}:ec2:{where.region}:{where.account}:instance/*"
    own = tuple(d for d in documents if ":document/AWS-" not in d)
    grants = [
        Grant(
            # The instances are chosen by tags or group when the batch runs.
            "SsmFleetCommands",
            ("ssm:SendCommand",),
            (*documents, instances),
        ),
        Grant(
            # None of these supports resource-level permissions.
            "FleetReadsNeedStar",
            (
                "autoscaling:DescribeAutoScalingGroups",
                "ec2:DescribeInstances",
                "elasticloadbalancing:DescribeTargetGroups",
                "elasticloadbalancing:DescribeTargetHealth",
                "ssm:GetCommandInvocation",
                "ssm:ListCommands",
            ),
            ("*",),
        ),
    ]
    if own:
        # The preflight checks the account's own documents exist (AWS's always do).
        grants.append(Grant("SsmFleetDocuments", ("ssm:DescribeDocument",), own))
    if target.target_groups:
        grants.append(
            Grant(
                "Elbv2FleetTargets",
                (
                    "elasticloadbalancing:DeregisterTargets",
                    "elasticloadbalancing:RegisterTargets",
                ),
                tuple(target.target_groups),
            )
        )
    return grants


# Any: each builder takes its own kind's target, which target_grants picks by kind.
_KIND_GRANTS: dict[str, Callable[[Any, Where, FromAws], list[Grant]]] = {
    "ssm_parameter": _ssm_parameter,
    "lambda_alias": _lambda_alias,
    "elbv2_weights": _elbv2_weights,
    "route53_weighted": _route53_weighted,
    "ecs_service": _ecs_service,
    "s3_artifact": _s3_artifact,
    "ec2_fleet": _ec2_fleet,
}


def target_grants(target: Target, where: Where, aws: FromAws = NOTHING_READ) -> list[Grant]:
    """What one target's snapshot, apply and compensate need (and the preflight of its
    ``value_from``), with ``where``'s credentials, narrowed by what ``aws`` tells."""
    return _KIND_GRANTS[target.kind](target, where, aws)


def alarm_grants(alarms: Iterable[str], where: Where) -> list[Grant]:
    """Reading a wave's CloudWatch alarms (metric and composite share the ARN form)."""
    arns = tuple(
        f"arn:{where.partition}:cloudwatch:{where.region}:{where.account}:alarm:{name}"
        for name in alarms
    )
    return [Grant("CloudWatchWaveAlarms", ("cloudwatch:DescribeAlarms",), arns)] if arns else []


def check_grants(checks: Iterable[Check], where: Where) -> list[Grant]:
    """A wave's checks (activities/checks.py): invoking smoke-test functions, reading
    metrics (GetMetricData takes no resource), and reading http checks' header secrets."""
    grants: list[Grant] = []
    functions = tuple(
        (
            c.function
            if c.function.startswith("arn:")
            else f"arn:{where.partition}:lambda:{where.region}:{where.account}:function:"
            f"{c.function}"
        )
        + (f":{c.qualifier}" if c.qualifier and not c.function.startswith("arn:") else "")
        for c in checks
        if isinstance(c, LambdaInvokeCheck)
    )
    if functions:
        grants.append(Grant("LambdaInvokeChecks", ("lambda:InvokeFunction",), functions))
    if any(isinstance(c, MetricCheck) for c in checks):
        grants.append(Grant("CloudWatchMetricChecks", ("cloudwatch:GetMetricData",), ("*",)))
    for c in checks:
        if isinstance(c, HttpCheck) and c.headers_from is not None:
            ref = c.headers_from
            grants += _value_from(ref, where)
    return grants


def job_where(
    plan: ReleasePlan, wave: Wave, job: EcsTaskSpec | LambdaJobSpec | SsmCommandSpec
) -> Where:
    """Where a job's calls go: its own region, role and external id, else its department's
    (as ``workflows.jobs.resolved`` runs it)."""
    department = plan.departments.get(wave.department)
    region = job.region or (department.region if department else None)
    role_arn = job.role_arn or (department.role_arn if department else None)
    external_id = job.external_id or (department.external_id if department else None)
    return Where(role_arn, region or ANY_REGION, external_id, f"waves.{wave.name}.jobs")


def job_grants(job: EcsTaskSpec | LambdaJobSpec | SsmCommandSpec, where: Where) -> list[Grant]:
    """What a job step (activities/jobs.py) and the preflight of it need."""
    prefix = f"arn:{where.partition}"
    if isinstance(job, LambdaJobSpec):
        function = (
            job.function
            if job.function.startswith("arn:")
            else f"{prefix}:lambda:{where.region}:{where.account}:function:{job.function}"
        ) + (f":{job.qualifier}" if job.qualifier and not job.function.startswith("arn:") else "")
        return [Grant("LambdaJobs", ("lambda:GetFunction", "lambda:InvokeFunction"), (function,))]
    if isinstance(job, SsmCommandSpec):
        document = (
            f"{prefix}:ssm:{where.region}::document/{job.document}"
            if job.document.startswith("AWS-")
            else f"{prefix}:ssm:{where.region}:{where.account}:document/{job.document}"
        )
        return [
            Grant(
                # The instances are chosen by tags when the job runs.
                "SsmJobCommands",
                ("ssm:SendCommand",),
                (document, f"{prefix}:ec2:{where.region}:{where.account}:instance/*"),
            ),
            Grant("SsmJobDocuments", ("ssm:DescribeDocument",), (document,)),
            Grant(
                # None of these supports resource-level permissions.
                "SsmJobReadsNeedStar",
                ("ec2:DescribeInstances", "ssm:GetCommandInvocation", "ssm:ListCommands"),
                ("*",),
            ),
        ]
    definition = (
        job.task_definition
        if job.task_definition.startswith("arn:")
        else f"{prefix}:ecs:{where.region}:{where.account}:task-definition/{job.task_definition}"
    )
    cluster = job.cluster.rsplit("/", 1)[-1]
    tasks = f"{prefix}:ecs:{where.region}:{where.account}:task/{cluster}/*"
    sid, to_ecs = "EcsJobPassTaskRoles", ("StringEquals", "iam:PassedToService", ECS_TASKS)
    roles = f"{prefix}:iam::{where.account}:role/*"
    note = Wildcard(
        statement=sid,
        target=job.name,
        resource=roles,
        reason="the task definition's task and execution roles are not read from AWS",
    )
    return [
        Grant("EcsJobRunTask", ("ecs:RunTask",), (definition,)),
        Grant("EcsJobTasks", ("ecs:DescribeTasks", "ecs:TagResource"), (tasks,)),
        Grant(
            # ListTasks and DescribeTaskDefinition support no resource-level permissions.
            "EcsJobReadsNeedStar",
            ("ecs:DescribeTaskDefinition", "ecs:ListTasks"),
            ("*",),
        ),
        Grant(sid, ("iam:PassRole",), (roles,), (to_ecs,), note),
    ]


# --- putting policies together -----------------------------------------------------------


def _uses(plan: ReleasePlan, aws: FromAws) -> Iterator[tuple[str, Where, list[Grant]]]:
    """Everything the worker does for ``plan``, in plan order: what for, with which
    credentials, needing which grants."""
    for wave in plan.waves:
        for name in wave.targets:
            target = plan.target(name)
            where = target_where(plan, wave, target)
            yield (
                f"target {target.name} ({target.resource})",
                where,
                target_grants(target, where, aws),
            )
        if wave.alarms:
            where = alarm_where(plan, wave)
            yield f"alarms of wave {wave.name}", where, alarm_grants(wave.alarms, where)
        if wave.checks:
            where = alarm_where(plan, wave)
            yield f"checks of wave {wave.name}", where, check_grants(wave.checks, where)
        for job in wave.jobs:
            for spec in (job.run, job.compensation):
                if spec is None or isinstance(spec, str):
                    continue
                where = job_where(plan, wave, spec)
                yield f"job {spec.name} ({spec.resource})", where, job_grants(spec, where)
    notifications = plan.notifications
    if notifications is not None and notifications.sns_topic_arn:
        topic = notifications.sns_topic_arn
        field = "notifications." + ("external_id" if notifications.external_id else "role_arn")
        where = Where(notifications.role_arn, ANY_REGION, notifications.external_id, field)
        grant = Grant("PublishReleaseNotifications", ("sns:Publish",), (topic,))
        yield f"notifications to {topic}", where, [grant]


def assumed_roles(plan: ReleasePlan) -> list[str]:
    """The roles the worker assumes for ``plan``, in the order the plan first uses them."""
    return list(dict.fromkeys(w.role_arn for _, w, _ in _uses(plan, NOTHING_READ) if w.role_arn))


class TrustConflict(ValueError):
    """Roles the plan assumes in ways no single trust policy allows; one line per role."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def check_worker_role(value: str) -> str:
    """``value`` if it is an IAM role ARN, the principal a trust policy names; else a
    ValueError saying what to give instead."""
    arn = arns.parse_arn(value)
    if arn is not None and arn.service == "sts" and arn.resource.startswith("assumed-role/"):
        role = arn.resource.split("/")[1]
        raise ValueError(
            f"{value!r} is a session of a role, not the role: give the role's ARN "
            f"(arn:{arn.partition}:iam::{arn.account}:role/{role}, with its path if it has one)"
        )
    arns.IAM_ROLE.check(value)
    return value


def trust_policies(plan: ReleasePlan, worker_role_arn: str) -> list[TrustPolicy]:
    """The trust policy of each role ``plan`` assumes, letting ``worker_role_arn`` in.

    A trust policy can require one external id or none: a role the plan uses with two
    different external ids, or with one and without, raises :class:`TrustConflict` naming
    the plan fields, since the worker could not assume it every way the plan does.
    """
    first: dict[str, Where] = {}
    problems: dict[str, str] = {}
    for _, where, _ in _uses(plan, NOTHING_READ):
        role = where.role_arn
        if role is None:
            continue
        seen = first.setdefault(role, where)
        if seen.external_id == where.external_id or role in problems:
            continue
        if seen.external_id is not None and where.external_id is not None:
            how = f"with two external ids ({seen.field} and {where.field})"
        else:
            with_id, without = (seen, where) if seen.external_id is not None else (where, seen)
            how = f"with an external id ({with_id.field}) and without one ({without.field})"
        problems[role] = (
            f"role {role} is assumed {how}, but its trust policy can require only one: "
            "give every use of the role the same external_id"
        )
    if problems:
        raise TrustConflict(list(problems.values()))
    return [
        TrustPolicy(role_arn=role, worker_role_arn=worker_role_arn, external_id=w.external_id)
        for role, w in first.items()
    ]


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

    def wildcards(self) -> list[Wildcard]:
        return list(dict.fromkeys(g.wildcard for g in self.grants if g.wildcard is not None))


def plan_policies(
    plan: ReleasePlan,
    aws: FromAws = NOTHING_READ,
    trust: Iterable[TrustPolicy] = (),
) -> list[IamPolicy]:
    """The IAM policies a worker needs to run ``plan``: its own first, then one per role
    (with the role's trust policy, if ``trust`` has it: see :func:`trust_policies`), narrowed
    by what ``aws`` tells.

    Roles come in the order the plan first uses them. The worker's own policy always holds
    ``sts:AssumeRole`` on every role, and is there even when every target has a role.
    """
    own = _Draft(role_arn=None, account=WORKER_ACCOUNT)
    drafts: dict[str | None, _Draft] = {None: own}
    for use, where, grants in _uses(plan, aws):
        if where.role_arn not in drafts:
            drafts[where.role_arn] = _Draft(role_arn=where.role_arn, account=where.account)
        drafts[where.role_arn].used_by.append(use)
        drafts[where.role_arn].grants.extend(grants)

    roles = [role for role in drafts if role is not None]
    if roles:
        own.used_by.append("assuming " + ", ".join(roles))
        own.grants.append(Grant("AssumeReleaseRoles", ASSUME_ACTIONS, tuple(roles)))

    trusted = {t.role_arn: t for t in trust}
    return [
        IamPolicy(
            applies_to=d.role_arn or WORKER_CREDENTIALS,
            role_arn=d.role_arn,
            account=d.account,
            used_by=list(dict.fromkeys(d.used_by)),
            statements=d.statements(),
            trust=trusted.get(d.role_arn) if d.role_arn else None,
            wildcards=d.wildcards(),
        )
        for d in drafts.values()
    ]
