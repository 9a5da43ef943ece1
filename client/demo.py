"""``relman demo``: two real releases on the embedded stack, end to end, checked against AWS.

It uses the same paths a person would: the plan file, ``submit``, the approval Update that
``relman approve`` sends, and the status Query; then it reads the resources back from the
local AWS endpoint. The first release completes and must leave AWS as the plan says. The
second shifts a Lambda alias and a load balancer in steps; while it bakes at its first
step the demo puts its CloudWatch alarm into ALARM through the CloudWatch API (as a real
alarm changes state), and the release must roll back and leave every resource exactly as
it was before, compared as full describe snapshots.

Seeding is idempotent: it creates what is missing and resets what exists to its
pre-release state, so the demo can run again against the same local endpoint.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from client import service
from client.errors import CliError
from models.plan import (
    Elbv2WeightsTarget,
    LambdaAliasTarget,
    ReleasePlan,
    SsmParameterTarget,
    Target,
    Wave,
)
from models.status import ReleasePhase, ReleaseStatus, WavePhase

Say = Callable[[str], None]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEMO_PLAN = EXAMPLES / "demo.yaml"
ROLLBACK_PLAN = EXAMPLES / "rollback-demo.yaml"
DEMO_TIMEOUT_SECONDS = 90.0
POLL_SECONDS = 0.3
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
# Worded like CloudWatch's own reasons, since the demo plays the part of the metric.
ALARM_REASON = (
    "Threshold Crossed: 1 out of the last 1 datapoints [42.0] was greater than or equal to "
    "the threshold (5.0) (minimum 1 datapoint for OK -> ALARM transition)."
)
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


def _ssm_targets(plan: ReleasePlan) -> list[SsmParameterTarget]:
    return [t for t in plan.targets if isinstance(t, SsmParameterTarget)]


def unique_release(plan: ReleasePlan) -> ReleasePlan:
    """The plan under a release id of its own: a release id is usable once only."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return plan.model_copy(update={"id": f"{plan.id}-demo-{stamp}"})


# --- seeding: every resource at its pre-release state --------------------------------------


def _seed_ssm(aws: Any, region: str | None, target: SsmParameterTarget) -> None:
    aws.client("ssm", region).put_parameter(
        Name=target.parameter,
        Value=SEED_VALUES.get(target.parameter, "previous"),
        Type=target.type,
        Overwrite=True,
    )


def _zip(revision: int) -> bytes:
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
            Code={"ZipFile": _zip(1)},
            Publish=True,
        )
    pages = lam.get_paginator("list_versions_by_function").paginate(FunctionName=target.function)
    published = [v["Version"] for p in pages for v in p["Versions"] if v["Version"] != "$LATEST"]
    for revision in range(len(published) + 1, int(target.version) + 1):
        lam.update_function_code(FunctionName=target.function, ZipFile=_zip(revision), Publish=True)
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
    for target in _ssm_targets(plan):
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


# --- driving a release --------------------------------------------------------------------


async def drive(
    release_id: str,
    say: Say,
    on_status: Callable[[ReleaseStatus], Awaitable[None]] | None = None,
) -> ReleaseStatus:
    """Approve each gate as its first eligible approver, narrating events, until the end.

    ``on_status`` sees every status polled before the release ends (to act at a phase).
    """
    shown = 0
    decided: set[tuple[str, str]] = set()
    deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        st = await service.status(release_id)
        for event in st.timeline[shown:]:
            actor = f" [{event.actor}]" if event.actor else ""
            say(f"  {event.at.astimezone(UTC):%H:%M:%S} {event.kind:<22}{actor} {event.message}")
        shown = len(st.timeline)
        if st.finished:
            return st
        if on_status is not None:
            await on_status(st)
        for pending in st.pending_approvals:
            if not pending.eligible_approvers:
                continue
            approver = pending.eligible_approvers[0]
            if (pending.wave, approver) in decided:
                continue
            decided.add((pending.wave, approver))
            result = await service.decide(
                release_id, pending.wave, approver, "approved in relman demo", True
            )
            say(f"  -> {approver} approves wave {pending.wave}: {result.message}")
        await asyncio.sleep(POLL_SECONDS)
    raise CliError(f"demo release {release_id} did not finish within {DEMO_TIMEOUT_SECONDS:.0f}s")


async def release_scenario(
    plan: ReleasePlan, aws: Any, say: Say, queue: str | None = None
) -> tuple[ReleaseStatus, list[ResourceCheck]]:
    """Seed, submit, approve, watch and verify a release that should complete."""
    plan = await asyncio.to_thread(seed, plan, aws)
    say(f"seeded {len(_ssm_targets(plan))} SSM parameters at their pre-release values")
    release_id = await service.submit(plan, queue)
    say(f"submitted release {release_id}")
    final = await drive(release_id, say)
    return final, await asyncio.to_thread(verify, plan, aws)


@dataclass
class RollbackOutcome:
    """How the alarm release ended and what each resource was before, during and after."""

    final: ReleaseStatus
    checks: list[RestoreCheck]
    alarm: str | None  # the alarm put into ALARM; None if the canary never baked

    @property
    def succeeded(self) -> bool:
        """Rolled back after the alarm, every resource moved and then restored exactly."""
        return (
            self.final.phase == ReleasePhase.ROLLED_BACK
            and self.alarm is not None
            and all(c.changed and c.restored for c in self.checks)
        )


def set_alarm(aws: Any, plan: ReleasePlan, wave: Wave, state: str, reason: str) -> str:
    """Put the wave's first alarm into ``state`` through the CloudWatch API; its name."""
    dept = plan.departments.get(wave.department)
    name = wave.alarms[0]
    aws.client("cloudwatch", dept.region if dept else None).set_alarm_state(
        AlarmName=name, StateValue=state, StateReason=reason
    )
    return name


async def rollback_scenario(
    plan: ReleasePlan, aws: Any, say: Say, queue: str | None = None
) -> RollbackOutcome:
    """Seed, snapshot, submit, approve; fire the alarm in the first bake; compare after."""
    canary = next((w for w in plan.waves if w.alarms and w.bake), None)
    if canary is None:
        raise CliError(f"plan {plan.id} has no wave that bakes watching an alarm")
    plan = await asyncio.to_thread(seed, plan, aws)
    before = await asyncio.to_thread(describe, plan, aws)
    say(
        f"seeded {len(plan.targets)} resources at their pre-release state and alarm "
        f"{', '.join(canary.alarms)} (OK):"
    )
    for target in plan.targets:
        say(f"  {label(target)}: {show(target, before[target.name])}")
    during: dict[str, dict[str, Any] | None] = {}
    fired: list[str] = []

    async def fire_alarm_in_first_bake(st: ReleaseStatus) -> None:
        wave = st.wave(canary.name)
        if fired or wave.phase != WavePhase.BAKING or wave.step != 0:
            return
        during.update(await asyncio.to_thread(describe, plan, aws))
        say(f"  wave {canary.name} is baking at {wave.percent}%:")
        for target in plan.targets:
            say(f"    {label(target)}: {show(target, during[target.name])}")
        fired.append(await asyncio.to_thread(set_alarm, aws, plan, canary, "ALARM", ALARM_REASON))
        say(f"  -> CloudWatch alarm {fired[0]} goes into ALARM (5xx above its threshold)")

    release_id = await service.submit(plan, queue)
    say(f"submitted release {release_id}")
    final = await drive(release_id, say, on_status=fire_alarm_in_first_bake)
    after = await asyncio.to_thread(describe, plan, aws)
    checks = [
        RestoreCheck(t, before[t.name], during.get(t.name), after[t.name]) for t in plan.targets
    ]
    return RollbackOutcome(final=final, checks=checks, alarm=fired[0] if fired else None)


# --- the command's entry points -------------------------------------------------------------


def use_local_aws(endpoint: str) -> Any:
    """Clients for the local endpoint with local-only credentials (never real AWS)."""
    from activities.aws import AwsClients
    from client.stack import LOCAL_AWS_ENV

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(LOCAL_AWS_ENV)
    return AwsClients(endpoint_url=endpoint, max_attempts=2)


def load_demo_plan(plan_path: Path) -> ReleasePlan:
    """The plan at ``plan_path`` under a fresh release id; a bad plan is bad input."""
    from client.errors import BadInput
    from models.loader import PlanError, load_plan

    try:
        return unique_release(load_plan(plan_path))
    except PlanError as exc:
        raise BadInput(str(exc)) from None


def run_release_demo(
    plan: ReleasePlan, aws: Any, say: Say
) -> tuple[ReleaseStatus, list[ResourceCheck]]:
    """Seed, submit, approve, watch and verify one release of the demo plan."""
    return asyncio.run(release_scenario(plan, aws, say))


def run_rollback_demo(plan: ReleasePlan, aws: Any, say: Say) -> RollbackOutcome:
    """Run the alarm release and compare its resources before and after."""
    return asyncio.run(rollback_scenario(plan, aws, say))


def demo_succeeded(final: ReleaseStatus, checks: list[ResourceCheck]) -> bool:
    """The release completed and every resource is what the plan says."""
    return final.phase == ReleasePhase.COMPLETED and all(c.ok for c in checks)
