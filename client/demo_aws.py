"""The demo's AWS resources: seeded at their pre-release state, read back, compared.

Seeding is idempotent: it creates what is missing and resets what exists to its
pre-release state, so the demo can run again against the same local endpoint. The crash
tests (tests/reliability) seed their releases' resources the same way.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from common.errors import CliError
from models.plan import (
    Elbv2WeightsTarget,
    LambdaAliasTarget,
    ReleasePlan,
    SsmParameterTarget,
    Target,
    Wave,
)

# What the demo's parameters hold before the release (the running version).
SEED_VALUES = {
    "/payments/finance/api/version": "2.3.0",
    "/payments/finance/settlement/engine": "ledger-v1",
    "/payments/operations/api/version": "2.3.0",
    "/checkout/api/version": "5.1.0",
}
DEMO_TAG = "relman-demo"
LAMBDA_ROLE = "relman-demo-lambda"
LISTENER_PORT = 80
SUBNETS = {"a": "10.0.1.0/24", "b": "10.0.2.0/24"}
RECOVERED_REASON = "relman demo: reset to OK before the release"
# Describe fields that count writes or record when they happened, not what the resource
# is: a restore necessarily bumps them (SSM Version, LastModifiedDate).
HISTORY_FIELDS = frozenset({"ResponseMetadata", "RevisionId", "Version", "LastModifiedDate"})


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _wave_of(plan: ReleasePlan, target: Any) -> Wave:
    return next(w for w in plan.waves if target.name in w.targets)


def _region(plan: ReleasePlan, target: Any) -> str | None:
    dept = plan.departments.get(_wave_of(plan, target).department)
    return target.region or (dept.region if dept else None)


def ssm_targets(plan: ReleasePlan) -> list[SsmParameterTarget]:
    return [t for t in plan.targets if isinstance(t, SsmParameterTarget)]


# --- seeding: every resource at its pre-release state --------------------------------------


def _seed_ssm(aws: Any, region: str | None, target: SsmParameterTarget) -> None:
    aws.client("ssm", region).put_parameter(
        Name=target.parameter,
        Value=SEED_VALUES.get(target.parameter, "previous"),
        Type=target.type,
        Overwrite=True,
    )


def lambda_zip(revision: int) -> bytes:
    """A deployment package whose handler returns ``revision`` (each revision a new version)."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("app.py", f"def handler(event, context):\n    return {revision}\n")
    return archive.getvalue()


def _lambda_role(aws: Any) -> str:
    iam = aws.client("iam")
    try:
        return str(iam.get_role(RoleName=LAMBDA_ROLE)["Role"]["Arn"])
    except ClientError as exc:
        if _error_code(exc) != "NoSuchEntity":
            raise
    return str(iam.create_role(RoleName=LAMBDA_ROLE, AssumeRolePolicyDocument="{}")["Role"]["Arn"])


def _previous_version(target: LambdaAliasTarget) -> str:
    """The version the alias serves before the release: the one before the plan's."""
    return str(max(1, int(target.version) - 1))


def _seed_lambda(aws: Any, region: str | None, target: LambdaAliasTarget) -> None:
    """The function with versions 1..target published, its alias on the previous version."""
    lam = aws.client("lambda", region)
    try:
        lam.get_function(FunctionName=target.function)
    except ClientError as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        lam.create_function(
            FunctionName=target.function,
            Runtime="python3.12",
            Role=_lambda_role(aws),
            Handler="app.handler",
            Code={"ZipFile": lambda_zip(1)},
            Publish=True,
        )
    pages = lam.get_paginator("list_versions_by_function").paginate(FunctionName=target.function)
    published = [v["Version"] for p in pages for v in p["Versions"] if v["Version"] != "$LATEST"]
    for revision in range(len(published) + 1, int(target.version) + 1):
        lam.update_function_code(
            FunctionName=target.function, ZipFile=lambda_zip(revision), Publish=True
        )
    # An explicit empty routing config: that is how the alias reads after any update.
    wanted = {
        "FunctionVersion": _previous_version(target),
        "RoutingConfig": {"AdditionalVersionWeights": {}},
    }
    try:
        alias = lam.get_alias(FunctionName=target.function, Name=target.alias)
    except ClientError as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        lam.create_alias(FunctionName=target.function, Name=target.alias, **wanted)
        return
    if {k: alias.get(k) for k in wanted} != wanted:
        lam.update_alias(FunctionName=target.function, Name=target.alias, **wanted)


def _arn_name(arn: str, kind: str) -> str:
    """The name inside an ELBv2 ARN: ``listener/app/NAME/..``, ``targetgroup/NAME/..``."""
    parts = arn.split(":", 5)[-1].split("/")
    return parts[2] if kind == "listener" else parts[1]


def _demo_subnets(aws: Any, region: str) -> list[str]:
    """Two subnets in the demo VPC (found by tag, created if missing)."""
    ec2 = aws.client("ec2", region)
    tag = [{"Name": "tag:Name", "Values": [DEMO_TAG]}]
    vpcs = ec2.describe_vpcs(Filters=tag)["Vpcs"]
    if vpcs:
        vpc = vpcs[0]["VpcId"]
    else:
        vpc = ec2.create_vpc(
            CidrBlock="10.0.0.0/16",
            TagSpecifications=[
                {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": DEMO_TAG}]}
            ],
        )["Vpc"]["VpcId"]
    existing = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in existing}
    for suffix, cidr in SUBNETS.items():
        zone = f"{region}{suffix}"
        if zone not in by_zone:
            created = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)
            by_zone[zone] = created["Subnet"]["SubnetId"]
    return [by_zone[f"{region}{suffix}"] for suffix in SUBNETS]


def _load_balancer(aws: Any, region: str, name: str) -> dict[str, Any]:
    elbv2 = aws.client("elbv2", region)
    try:
        return dict(elbv2.describe_load_balancers(Names=[name])["LoadBalancers"][0])
    except ClientError as exc:
        if _error_code(exc) != "LoadBalancerNotFound":
            raise
    subnets = _demo_subnets(aws, region)
    return dict(elbv2.create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0])


def _target_group(aws: Any, region: str, name: str, vpc: str) -> str:
    elbv2 = aws.client("elbv2", region)
    try:
        groups = elbv2.describe_target_groups(Names=[name])["TargetGroups"]
    except ClientError as exc:
        if _error_code(exc) != "TargetGroupNotFound":
            raise
        groups = elbv2.create_target_group(Name=name, Protocol="HTTP", Port=80, VpcId=vpc)[
            "TargetGroups"
        ]
    return str(groups[0]["TargetGroupArn"])


def _seed_elbv2(aws: Any, region: str, target: Elbv2WeightsTarget) -> Elbv2WeightsTarget:
    """Load balancer, blue and green groups, a listener all on blue; the target bound to them.

    The plan's ARNs carry the names; the ids in them are the ones AWS would have made, and
    moto makes its own, so the target is rewritten with the ARNs that exist here.
    """
    elbv2 = aws.client("elbv2", region)
    lb = _load_balancer(aws, region, _arn_name(target.listener_arn, "listener"))
    blue = _target_group(aws, region, _arn_name(target.blue_target_group_arn, "tg"), lb["VpcId"])
    green = _target_group(aws, region, _arn_name(target.green_target_group_arn, "tg"), lb["VpcId"])
    wanted = [
        {
            "Type": "forward",
            "ForwardConfig": {
                "TargetGroups": [
                    {"TargetGroupArn": blue, "Weight": 100},
                    {"TargetGroupArn": green, "Weight": 0},
                ],
                "TargetGroupStickinessConfig": {"Enabled": False},
            },
        }
    ]
    listeners = elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    listener = next((x for x in listeners if x["Port"] == LISTENER_PORT), None)
    if listener is None:
        listener = elbv2.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Protocol="HTTP",
            Port=LISTENER_PORT,
            DefaultActions=wanted,
        )["Listeners"][0]
    elif listener["DefaultActions"] != wanted:
        elbv2.modify_listener(ListenerArn=listener["ListenerArn"], DefaultActions=wanted)
    return target.model_copy(
        update={
            "listener_arn": listener["ListenerArn"],
            "blue_target_group_arn": blue,
            "green_target_group_arn": green,
        }
    )


def _seed_alarms(aws: Any, plan: ReleasePlan, wave: Wave) -> None:
    """The wave's alarms exist and are OK, as a healthy service's would be."""
    dept = plan.departments.get(wave.department)
    cloudwatch = aws.client("cloudwatch", dept.region if dept else None)
    for name in wave.alarms:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            AlarmDescription=f"5xx responses of {plan.application} (relman demo)",
            Namespace="AWS/ApplicationELB",
            MetricName="HTTPCode_Target_5XX_Count",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=5.0,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            TreatMissingData="notBreaching",
        )
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason=RECOVERED_REASON)


def seed(plan: ReleasePlan, aws: Any) -> ReleasePlan:
    """Create or reset every resource of the plan at its pre-release state.

    Returns the plan with its load balancer ARNs bound to the resources that exist.
    """
    targets: list[Target] = []
    for target in plan.targets:
        region = _region(plan, target)
        if isinstance(target, SsmParameterTarget):
            _seed_ssm(aws, region, target)
        elif isinstance(target, LambdaAliasTarget):
            _seed_lambda(aws, region, target)
        elif isinstance(target, Elbv2WeightsTarget):
            target = _seed_elbv2(aws, aws.region(region), target)
        else:
            raise CliError(f"the demo cannot seed {target.kind} targets ({target.name})")
        targets.append(target)
    for wave in plan.waves:
        _seed_alarms(aws, plan, wave)
    return plan.model_copy(update={"targets": targets})


# --- reading resources back --------------------------------------------------------------


def describe(plan: ReleasePlan, aws: Any) -> dict[str, dict[str, Any] | None]:
    """Each target's resource as AWS describes it (None if absent), minus history fields."""
    out: dict[str, dict[str, Any] | None] = {}
    for target in plan.targets:
        region = _region(plan, target)
        try:
            if isinstance(target, SsmParameterTarget):
                found = aws.client("ssm", region).get_parameter(
                    Name=target.parameter, WithDecryption=True
                )["Parameter"]
            elif isinstance(target, LambdaAliasTarget):
                found = aws.client("lambda", region).get_alias(
                    FunctionName=target.function, Name=target.alias
                )
            elif isinstance(target, Elbv2WeightsTarget):
                found = aws.client("elbv2", region).describe_listeners(
                    ListenerArns=[target.listener_arn]
                )["Listeners"][0]
            else:
                raise CliError(f"the demo cannot read {target.kind} targets ({target.name})")
        except ClientError as exc:
            if "NotFound" not in _error_code(exc):
                raise
            out[target.name] = None
            continue
        out[target.name] = {k: v for k, v in found.items() if k not in HISTORY_FIELDS}
    return out


def label(target: Target) -> str:
    """A short name for the resource (a listener's ARN is too long for a table cell)."""
    if isinstance(target, Elbv2WeightsTarget):
        return f"elbv2 listener of {_arn_name(target.listener_arn, 'listener')}"
    return target.resource


def show(target: Target, state: dict[str, Any] | None) -> str:
    """One line for a person: what the resource holds or how it splits traffic."""
    if state is None:
        return "(absent)"
    if isinstance(target, SsmParameterTarget):
        return "(secret)" if state.get("Type") == "SecureString" else str(state.get("Value"))
    if isinstance(target, LambdaAliasTarget):
        weights = (state.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        shares = [(state["FunctionVersion"], 1 - sum(weights.values())), *sorted(weights.items())]
        return " / ".join(f"v{v} {round(share * 100, 2):g}%" for v, share in shares)
    if isinstance(target, Elbv2WeightsTarget):
        colors = {target.blue_target_group_arn: "blue", target.green_target_group_arn: "green"}
        parts = []
        for action in state.get("DefaultActions", []):
            for group in (action.get("ForwardConfig") or {}).get("TargetGroups") or []:
                arn = group["TargetGroupArn"]
                parts.append(f"{colors.get(arn) or _arn_name(arn, 'tg')} {group['Weight']}")
        return " / ".join(parts) or "(no forward action)"
    return str(state)


@dataclass
class ResourceCheck:
    """One resource after the first release: what it was, what the plan wants, what AWS says."""

    resource: str
    before: str
    expected: str
    actual: str | None

    @property
    def ok(self) -> bool:
        return self.actual == self.expected


@dataclass
class RestoreCheck:
    """One resource of the rolled-back release: full describe before, during, after."""

    target: Target
    before: dict[str, Any] | None
    during: dict[str, Any] | None
    after: dict[str, Any] | None

    @property
    def resource(self) -> str:
        return self.target.resource

    @property
    def changed(self) -> bool:
        """The release did move it (else "restored" would prove nothing)."""
        return self.during is not None and self.during != self.before

    @property
    def restored(self) -> bool:
        """Exactly as before, field by field."""
        return self.after == self.before

    def differences(self) -> list[str]:
        """The describe fields that differ between before and after."""
        before, after = self.before or {}, self.after or {}
        return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def verify(plan: ReleasePlan, aws: Any) -> list[ResourceCheck]:
    """Read every SSM target back from AWS and compare it with the plan."""
    checks = []
    for target in ssm_targets(plan):
        if target.value is None:
            continue  # value_from a secret: the demo does not read secrets to compare them
        parameter = aws.client("ssm", _region(plan, target)).get_parameter(
            Name=target.parameter, WithDecryption=True
        )["Parameter"]
        checks.append(
            ResourceCheck(
                resource=target.resource,
                before=SEED_VALUES.get(target.parameter, "previous"),
                expected=target.value,
                actual=parameter["Value"],
            )
        )
    return checks


def set_alarm(aws: Any, plan: ReleasePlan, wave: Wave, state: str, reason: str) -> str:
    """Put the wave's first alarm into ``state`` through the CloudWatch API; its name."""
    dept = plan.departments.get(wave.department)
    name = wave.alarms[0]
    aws.client("cloudwatch", dept.region if dept else None).set_alarm_state(
        AlarmName=name, StateValue=state, StateReason=reason
    )
    return name
