"""Rollback end to end: time-skipping Temporal, the real worker, and AWS resources in moto.

Every test compares complete descriptions of the resources (what ``describe``/``get`` calls
return) before the release and after it, not one field. Bakes that watch alarms run a real
heartbeating activity, so they last real seconds: they are kept to a few.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from rich.console import Console
from temporalio import activity
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, CancelledError

from activities.aws import AwsClients
from activities.release import TargetActivities
from client.demo_aws import lambda_zip
from client.views import StatusView
from models.messages import (
    APPLY_TARGETS,
    COMPENSATE_TARGET,
    ApplyStepInput,
    ApplyStepResult,
    CompensateInput,
    CompensateResult,
    DecisionInput,
    OperatorInput,
    TargetActionInput,
    WaveActionInput,
    wave_workflow_id,
)
from models.preflight import PREFLIGHT, PreflightInput, PreflightResult
from models.status import ReleasePhase, ReleaseStatus, TargetPhase, WavePhase
from tests.helpers import (
    approve,
    assert_replays,
    events,
    make_plan,
    signed_update,
    ssm,
    start_release,
    status_of,
    wait_for,
    wait_for_gate,
    wave,
)
from tests.trust import build_test_worker
from workflows.release import ReleaseWorkflow

# Department accounts: moto keeps each account's resources apart and accepts any role.
ROLE_A = "arn:aws:iam::111111111111:role/relman-deployer"
ROLE_B = "arn:aws:iam::222222222222:role/relman-deployer"
# A name AWS refuses to write ("/aws" is reserved): applying it fails for good.
RESERVED = "/aws/payments/flag"
ALARM = "web-5xx"
RECORD = "app.example.com"


# --- AWS resources -----------------------------------------------------------------------------


@dataclass
class Account:
    """AWS clients in one account: the default one (role None) or a department's."""

    aws: AwsClients
    role: str | None = None

    def client(self, service: str) -> Any:
        return self.aws.client(service, None, self.role)


@dataclass
class Backend:
    """An SSM parameter and a Lambda alias (``checkout:live`` on version 1 of 2)."""

    account: Account
    parameter: str = "/payments/config"

    def targets(self) -> list[dict[str, Any]]:
        return [
            ssm("config", self.parameter, "config-v2"),
            alias_target("checkout-alias", "2"),
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "ssm": ssm_description(self.account, self.parameter),
            "alias": alias_description(self.account),
        }


@dataclass
class Edge:
    """A listener forwarding to blue/green groups, weighted DNS records, and an alarm."""

    account: Account
    listener: str
    blue: str
    green: str
    zone: str

    def targets(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "web-lb",
                "kind": "elbv2_weights",
                "listener_arn": self.listener,
                "blue_target_group_arn": self.blue,
                "green_target_group_arn": self.green,
            },
            {
                "name": "web-dns",
                "kind": "route53_weighted",
                "hosted_zone_id": self.zone,
                "record_name": RECORD,
                "blue_set_identifier": "blue",
                "green_set_identifier": "green",
            },
        ]

    def describe(self) -> dict[str, Any]:
        listener = self.account.client("elbv2").describe_listeners(ListenerArns=[self.listener])
        records = self.account.client("route53").list_resource_record_sets(HostedZoneId=self.zone)
        return {
            "listener": listener["Listeners"],
            "records": records["ResourceRecordSets"],
        }

    def weights(self) -> tuple[dict[str, int], dict[str, int]]:
        """(listener weights, DNS weights) by color."""
        (action,) = self.describe()["listener"][0]["DefaultActions"]
        colors = {self.blue: "blue", self.green: "green"}
        lb = {
            colors[g["TargetGroupArn"]]: g["Weight"]
            for g in action["ForwardConfig"]["TargetGroups"]
        }
        dns = {r["SetIdentifier"]: r["Weight"] for r in self.describe()["records"] if "Weight" in r}
        return lb, dns

    def set_alarm(self, state: str, reason: str = "") -> None:
        self.account.client("cloudwatch").set_alarm_state(
            AlarmName=ALARM, StateValue=state, StateReason=reason or f"test set {state}"
        )


def alias_target(name: str, version: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "lambda_alias",
        "function": "checkout",
        "alias": "live",
        "version": version,
    }


def ssm_description(account: Account, name: str) -> dict[str, Any] | None:
    """The parameter as GetParameter and DescribeParameters show it.

    Version and LastModifiedDate are left out: SSM keeps history, so restoring a value
    necessarily writes a new version.
    """
    client = account.client("ssm")
    found = client.get_parameters(Names=[name], WithDecryption=True)["Parameters"]
    if not found:
        return None
    described = client.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])[
        "Parameters"
    ]
    volatile = {"Version", "LastModifiedDate", "LastModifiedUser"}
    return {
        "parameter": {k: v for k, v in found[0].items() if k not in volatile},
        "described": [{k: v for k, v in d.items() if k not in volatile} for d in described],
    }


def alias_description(account: Account) -> dict[str, Any]:
    """GetAlias without RevisionId (a fresh id on every write, even one that restores).

    An alias that never had weights has no RoutingConfig; once weights are cleared moto
    answers an empty one. Both mean "no additional version", so both read as absent.
    """
    alias = account.client("lambda").get_alias(FunctionName="checkout", Name="live")
    described = {k: v for k, v in alias.items() if k not in ("ResponseMetadata", "RevisionId")}
    if described.get("RoutingConfig") == {"AdditionalVersionWeights": {}}:
        del described["RoutingConfig"]
    return described


def make_backend(account: Account) -> Backend:
    """``/payments/config`` = config-v1; ``checkout`` versions 1 and 2, ``live`` on 1."""
    account.client("ssm").put_parameter(
        Name="/payments/config", Value="config-v1", Type="String", Description="payments config"
    )
    role = account.client("iam").create_role(RoleName="lambda", AssumeRolePolicyDocument="{}")
    lam = account.client("lambda")
    lam.create_function(
        FunctionName="checkout",
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="app.handler",
        Code={"ZipFile": lambda_zip(1)},
        Publish=True,
    )
    lam.update_function_code(FunctionName="checkout", ZipFile=lambda_zip(2), Publish=True)
    lam.create_alias(
        FunctionName="checkout", Name="live", FunctionVersion="1", Description="production"
    )
    return Backend(account)


def make_edge(account: Account) -> Edge:
    """Listener blue 100 / green 0 (sticky), DNS blue 100 / green 0, alarm web-5xx OK."""
    ec2, elbv2 = account.client("ec2"), account.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in ((1, "a"), (2, "b"))
    ]
    lb = elbv2.create_load_balancer(Name="web", Subnets=subnets)["LoadBalancers"][0]

    def group(name: str) -> str:
        created = elbv2.create_target_group(Name=name, Protocol="HTTP", Port=80, VpcId=vpc)
        return str(created["TargetGroups"][0]["TargetGroupArn"])

    blue, green = group("blue"), group("green")
    listener = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": blue, "Weight": 100},
                        {"TargetGroupArn": green, "Weight": 0},
                    ],
                    "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 300},
                },
            }
        ],
    )["Listeners"][0]["ListenerArn"]

    route53 = account.client("route53")
    zone = route53.create_hosted_zone(Name="example.com", CallerReference="relman")["HostedZone"][
        "Id"
    ]

    def record(identifier: str, weight: int, ttl: int) -> dict[str, Any]:
        return {
            "Action": "CREATE",
            "ResourceRecordSet": {
                "Name": RECORD,
                "Type": "CNAME",
                "SetIdentifier": identifier,
                "Weight": weight,
                "TTL": ttl,
                "ResourceRecords": [{"Value": f"{identifier}.example.com"}],
            },
        }

    route53.change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={"Changes": [record("blue", 100, 60), record("green", 0, 30)]},
    )
    cloudwatch = account.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM,
        Namespace="AWS/ApplicationELB",
        MetricName="HTTPCode_Target_5XX_Count",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=10.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="quiet")
    return Edge(account, listener, blue, green, zone)


def make_ecs(account: Account) -> None:
    """Cluster ``prod``, service ``web`` on ``web:1`` x2; ``web:2`` registered, ``web:3`` not."""
    ecs = account.client("ecs")
    ecs.create_cluster(clusterName="prod")
    for _ in range(2):
        register_web(account)
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition="web:1", desiredCount=2)


def register_web(account: Account) -> None:
    account.client("ecs").register_task_definition(
        family="web", containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}]
    )


def ecs_description(account: Account) -> dict[str, Any]:
    """The service as DescribeServices shows it, less its deployments' progress.

    Deployments, events and running/pending counts are ECS's own progress (fake in moto),
    not configuration a release sets or restores.
    """
    (service,) = account.client("ecs").describe_services(cluster="prod", services=["web"])[
        "services"
    ]
    volatile = {"deployments", "events", "runningCount", "pendingCount"}
    return {k: v for k, v in service.items() if k not in volatile}


ECS_TARGET = {
    "name": "web-service",
    "kind": "ecs_service",
    "cluster": "prod",
    "service": "web",
    "task_definition": "web:3",
    "desired_count": 3,
}


# --- workflow helpers --------------------------------------------------------------------------


def restored_order(status: ReleaseStatus) -> list[str | None]:
    return [e.target for e in status.timeline if e.kind == "target_restored"]


async def refusal(update: Any) -> str:
    """The message with which the workflow's update validator refused ``update``."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await update
    return str(getattr(info.value.cause, "message", info.value.cause))


def wave_is(name: str, phase: WavePhase, percent: int | None = None) -> Callable[..., bool]:
    def check(s: ReleaseStatus) -> bool:
        w = s.wave(name)
        return w.phase == phase and (percent is None or w.percent == percent)

    return check


async def wait_long(
    handle: WorkflowHandle[Any, Any], predicate: Callable[[ReleaseStatus], bool], limit: float = 20
) -> ReleaseStatus:
    """``wait_for`` with room for real bake seconds."""
    return await wait_for(handle, predicate, limit)


# --- 1. an alarm during a bake rolls back every wave, in every account, newest first -----------


async def test_alarm_during_bake_rolls_back_both_waves_across_accounts(
    time_skipping_env, aws, make_worker, task_queue
):
    backend = make_backend(Account(aws, ROLE_A))
    edge = make_edge(Account(aws, ROLE_B))
    # The same parameter name in the worker's own account: a release in account A leaves it.
    neighbour = make_backend(Account(aws))
    before = {"backend": backend.describe(), "edge": edge.describe(), "own": neighbour.describe()}
    plan = make_plan(
        backend.targets() + edge.targets(),
        [
            wave("backend", ["config", "checkout-alias"], traffic=[50, 100]),
            wave(
                "edge",
                ["web-lb", "web-dns"],
                department="operations",
                after=["backend"],
                traffic=[10, 50, 100],
                bake="2s",
                bake_interval="1s",
                alarms=[ALARM],
            ),
        ],
        departments={"finance": {"role_arn": ROLE_A}, "operations": {"role_arn": ROLE_B}},
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        status = await wait_long(handle, wave_is("edge", WavePhase.BAKING, 50))
        # Mid-release: wave 1 fully applied in account A, wave 2 at 50 % in account B.
        assert backend.describe()["alias"]["FunctionVersion"] == "2"
        assert backend.describe()["ssm"]["parameter"]["Value"] == "config-v2"
        assert edge.weights() == ({"blue": 50, "green": 50}, {"blue": 50, "green": 50})
        assert status.phase == ReleasePhase.BAKING
        edge.set_alarm("ALARM", "5xx above 10 for 1 datapoint")
        outcome = await handle.result()
        status = await status_of(handle)
    await assert_replays(handle)

    assert outcome.phase == ReleasePhase.ROLLED_BACK
    assert outcome.error == (
        f"wave edge: alarm in ALARM while baking at 50%: {ALARM} (5xx above 10 for 1 datapoint)"
    )
    after = {"backend": backend.describe(), "edge": edge.describe(), "own": neighbour.describe()}
    assert after == before
    assert restored_order(status) == ["web-dns", "web-lb", "checkout-alias", "config"]
    assert {w.name: w.phase for w in status.waves} == {
        "backend": WavePhase.ROLLED_BACK,
        "edge": WavePhase.FAILED,
    }
    assert [(t.name, t.phase, t.before, t.after) for w in status.waves for t in w.targets] == [
        ("config", TargetPhase.ROLLED_BACK, "config-v1", "config-v1"),
        (
            "checkout-alias",
            TargetPhase.ROLLED_BACK,
            "version 1 (all traffic)",
            "version 1 (all traffic)",
        ),
        ("web-lb", TargetPhase.ROLLED_BACK, "blue 100 / green 0", "blue 100 / green 0"),
        ("web-dns", TargetPhase.ROLLED_BACK, "blue 100 / green 0", "blue 100 / green 0"),
    ]
    shifted = [e.message for e in status.timeline if e.kind == "traffic_shifted"]
    assert shifted == [
        "wave backend at 50%",
        "wave backend at 100%",
        "wave edge at 10%",
        "wave edge at 50%",
    ]
    [alarm] = [e for e in status.timeline if e.kind == "alarm"]
    assert alarm.wave == "edge" and ALARM in alarm.message
    # The edge wave failed and its targets were rolled back: status says both.
    assert status.wave("edge").targets_note == "its targets were rolled back"
    assert status.wave("backend").targets_note is None
    # CloudTrail ties every call of the release to it: each department role was assumed
    # in the release's name (the test's own setup assumed them as plain "relman").
    sessions = assumed_sessions()
    assert sessions[ROLE_A] - {"relman"} == sessions[ROLE_B] - {"relman"} == {f"relman-{plan.id}"}


def assumed_sessions() -> dict[str, set[str]]:
    """The session names each role was assumed with, as the moto server recorded them."""
    from moto.sts.models import sts_backends

    sessions: dict[str, set[str]] = {}
    for account in sts_backends.values():
        for backend in account.values():
            for role in backend.assumed_roles:
                sessions.setdefault(role.role_arn, set()).add(role.session_name)
    return sessions


async def test_a_finished_wave_keeps_no_bake_line_and_its_steps_read_by_version(
    time_skipping_env, aws, make_worker, task_queue
):
    backend = make_backend(Account(aws))
    canary = wave("backend", ["config", "checkout-alias"], traffic=[50, 100], bake="20s")
    plan = make_plan(backend.targets(), [canary])
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        baking = await wait_for(handle, wave_is("backend", WavePhase.BAKING, 50))
        assert baking.wave("backend").waiting_for == "baking 20s at 50%"
        outcome = await handle.result()
        status = await status_of(handle)
        child = time_skipping_env.client.get_workflow_handle(
            wave_workflow_id(plan.id, "backend", 1)
        )
        metadata = await child.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)

    assert outcome.phase == ReleasePhase.COMPLETED
    # Done baking: neither status nor the wave's Web UI details still say it bakes.
    assert status.wave("backend").waiting_for is None
    console = Console(record=True, width=200)
    StatusView(status).render(console)
    assert "baking" not in console.export_text()
    assert metadata.current_details == "wave backend: completed, step 2/2 at 100%"
    # Each step of the alias reads by version, not ``1: 100% -> 2: 100%``.
    steps = [e.message for e in events(status, "target_applied") if e.target == "checkout-alias"]
    assert [step.split(": ", 1)[1] for step in steps] == [
        "version 1 (all traffic) -> version 1 50% / version 2 50% (50%)",
        "version 1 (all traffic) -> version 2 (all traffic) (100%)",
    ]


# --- 2. a wave whose alarm already fires does not start ----------------------------------------


async def test_wave_with_alarm_already_firing_changes_nothing_and_rolls_back_the_release(
    time_skipping_env, aws, make_worker, task_queue
):
    backend = make_backend(Account(aws))
    edge = make_edge(Account(aws))
    edge.set_alarm("ALARM", "5xx storm since last night")
    before = {"backend": backend.describe(), "edge": edge.describe()}
    plan = make_plan(
        backend.targets() + edge.targets(),
        [
            wave("backend", ["config", "checkout-alias"]),
            wave(
                "edge",
                ["web-lb", "web-dns"],
                after=["backend"],
                traffic=[10, 100],
                bake="2s",
                bake_interval="1s",
                alarms=[ALARM],
            ),
        ],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.ROLLED_BACK
    assert outcome.error == (
        "wave edge: alarm already in ALARM before the wave started: "
        f"{ALARM} (5xx storm since last night)"
    )
    assert {"backend": backend.describe(), "edge": edge.describe()} == before
    # The edge wave never snapshotted, applied or shifted anything.
    edge_events = [e.kind for e in status.timeline if e.wave == "edge"]
    assert not {"target_applied", "traffic_shifted", "target_restored"} & set(edge_events)
    assert [(t.name, t.phase, t.before) for t in status.wave("edge").targets] == [
        ("web-lb", TargetPhase.PENDING, None),
        ("web-dns", TargetPhase.PENDING, None),
    ]
    assert restored_order(status) == ["checkout-alias", "config"]
    assert {w.name: w.phase for w in status.waves} == {
        "backend": WavePhase.ROLLED_BACK,
        "edge": WavePhase.FAILED,
    }


def backend_then_edge(aws: AwsClients, **edge_wave: Any) -> tuple[Backend, Edge, Any, Any]:
    """A backend wave, then an edge wave after it (``edge_wave``: its alarms, gate), both in
    the worker's account: the resources, what they held before, and the plan."""
    backend, edge = make_backend(Account(aws)), make_edge(Account(aws))
    before = {"backend": backend.describe(), "edge": edge.describe()}
    plan = make_plan(
        backend.targets() + edge.targets(),
        [
            wave("backend", ["config", "checkout-alias"]),
            wave("edge", ["web-lb", "web-dns"], after=["backend"], **edge_wave),
        ],
    )
    return backend, edge, before, plan


async def test_a_plan_naming_a_missing_alarm_is_refused_before_changing_anything(
    time_skipping_env, aws, make_worker, task_queue
):
    backend, edge, before, plan = backend_then_edge(aws, alarms=["web-5xxx"])
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        outcome = await handle.result()
        status = await status_of(handle)

    # A typo in an alarm name is found by the preflight, before the first wave changes AWS.
    assert outcome.phase == ReleasePhase.FAILED
    assert outcome.error == (
        f"release {plan.id} refused: the AWS preflight found 1 problem(s): waves[1].alarms "
        "(edge): CloudWatch alarm 'web-5xxx' does not exist in us-east-1; it changed nothing"
    )
    assert {"backend": backend.describe(), "edge": edge.describe()} == before
    assert events(status, "target_applied") == []


async def test_an_alarm_deleted_while_its_wave_waited_fails_the_wave_before_it_changes_anything(
    time_skipping_env, aws, make_worker, task_queue
):
    backend, edge, before, plan = backend_then_edge(aws, alarms=[ALARM], groups={"finance-cab": 1})
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        await wait_for_gate(handle, "edge")
        assert events(await status_of(handle), "preflight") != []
        # Between the release's preflight and the wave's start (long enough that the wave
        # checks its resources again), the alarm goes away.
        await time_skipping_env.sleep(timedelta(minutes=5))
        edge.account.client("cloudwatch").delete_alarms(AlarmNames=[ALARM])
        await approve(handle, "edge", "bob")
        outcome = await handle.result()
        status = await status_of(handle)
    await assert_replays(handle)

    # The wave's own preflight finds it: a failure of the wave, so the saga restores wave 1.
    assert outcome.phase == ReleasePhase.ROLLED_BACK
    assert outcome.error == (
        "wave edge: preflight found waves[1].alarms (edge): CloudWatch alarm 'web-5xx' does "
        "not exist in us-east-1; nothing was changed"
    )
    assert {"backend": backend.describe(), "edge": edge.describe()} == before
    assert restored_order(status) == ["checkout-alias", "config"]
    assert status.wave("edge").targets[0].phase == TargetPhase.PENDING


async def test_wave_paused_on_a_firing_alarm_starts_once_it_clears_and_retried(
    time_skipping_env, aws, make_worker, task_queue
):
    edge = make_edge(Account(aws))
    edge.set_alarm("ALARM", "5xx storm")
    before = edge.describe()
    plan = make_plan(
        edge.targets(),
        [wave("edge", ["web-lb", "web-dns"], alarms=[ALARM], on_failure="pause")],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        status = await wait_for(handle, wave_is("edge", WavePhase.PAUSED))
        assert status.phase == ReleasePhase.PAUSED
        assert "alarm already in ALARM before the wave started" in status.wave("edge").error
        assert edge.describe() == before

        edge.set_alarm("OK", "recovered")
        await signed_update(
            handle,
            ReleaseWorkflow.retry,
            WaveActionInput(wave="edge", actor="alice", reason="5xx recovered"),
        )
        outcome = await handle.result()

    assert outcome.phase == ReleasePhase.COMPLETED
    assert edge.weights() == ({"blue": 0, "green": 100}, {"blue": 0, "green": 100})


# --- 3. on_failure: pause — retry, skip a target, or roll back ---------------------------------


def paused_plan(backend: Backend) -> Any:
    """``backend`` (no gate) then ``services`` (ssm + an ECS service on unregistered web:3)."""
    return make_plan(
        [*backend.targets(), ssm("flag", "/payments/flag", "on"), ECS_TARGET],
        [
            wave("backend", ["config", "checkout-alias"]),
            wave(
                "services",
                ["flag", "web-service"],
                department="operations",
                after=["backend"],
                on_failure="pause",
            ),
        ],
    )


async def start_paused(env: Any, aws: AwsClients, task_queue: str) -> tuple[Any, Backend, Any]:
    """Start ``paused_plan`` and wait until ``services`` is paused on web:3 missing."""
    account = Account(aws)
    backend = make_backend(account)
    make_ecs(account)
    account.client("ssm").put_parameter(Name="/payments/flag", Value="off", Type="String")
    before = {
        "backend": backend.describe(),
        "flag": ssm_description(account, "/payments/flag"),
        "ecs": ecs_description(account),
    }
    handle = await start_release(env.client, paused_plan(backend), task_queue)
    status = await wait_for(handle, wave_is("services", WavePhase.PAUSED))
    assert status.phase == ReleasePhase.PAUSED
    assert status.wave("backend").phase == WavePhase.COMPLETED
    failed = status.target("web-service")
    assert failed.phase == TargetPhase.FAILED
    assert failed.error == "ecs service prod/web: task definition 'web:3' is not registered"
    assert status.target("flag").phase == TargetPhase.APPLIED
    assert ecs_description(account) == before["ecs"]
    return handle, backend, before


@activity.defn(name=PREFLIGHT)
def preflight(input: PreflightInput) -> PreflightResult:
    """The pause tests need a wave that fails while it applies: the AWS preflight would
    refuse their plan (web:3 is not registered) before it started, so it stands aside."""
    return PreflightResult(checked=len(input.targets) + len(input.alarms))


def paused_worker(env: Any, aws: AwsClients, task_queue: str, executor: Any) -> Any:
    """The relman worker, without the AWS preflight (the stand-in ``preflight``)."""
    return build_test_worker(env.client, task_queue, aws, executor, stand_ins=[preflight])


def operator(**fields: Any) -> dict[str, Any]:
    return {"actor": "dave", "reason": "on call"} | fields


async def test_pause_then_retry_after_fixing_the_cause_completes(
    time_skipping_env, aws, activity_executor, task_queue
):
    account = Account(aws)
    async with paused_worker(time_skipping_env, aws, task_queue, activity_executor):
        handle, backend, before = await start_paused(time_skipping_env, aws, task_queue)

        # Only a wave paused on a failure can be retried.
        assert (
            await refusal(
                signed_update(
                    handle, ReleaseWorkflow.retry, WaveActionInput(**operator(wave="backend"))
                )
            )
            == "wave 'backend' is not paused on a failure"
        )
        assert (
            await refusal(
                signed_update(
                    handle, ReleaseWorkflow.retry, WaveActionInput(**operator(wave="nope"))
                )
            )
            == f"release {handle.id} has no wave 'nope' (waves: backend, services)"
        )
        assert (
            await refusal(
                signed_update(
                    handle,
                    ReleaseWorkflow.retry,
                    WaveActionInput(actor="mallory", wave="services", reason="me"),
                )
            )
            == f"mallory may not retry release {handle.id}: not its requester or an operator"
        )

        register_web(account)  # web:3 now exists
        result = await signed_update(
            handle, ReleaseWorkflow.retry, WaveActionInput(**operator(wave="services"))
        )
        assert result.message == "wave services retrying"
        outcome = await handle.result()
        status = await status_of(handle)
    await assert_replays(handle)

    assert outcome.phase == ReleasePhase.COMPLETED and outcome.error is None
    service = ecs_description(account)
    assert (service["taskDefinition"].rsplit("/", 1)[-1], service["desiredCount"]) == ("web:3", 3)
    assert {k: v for k, v in service.items() if k not in ("taskDefinition", "desiredCount")} == {
        k: v for k, v in before["ecs"].items() if k not in ("taskDefinition", "desiredCount")
    }
    assert ssm_description(account, "/payments/flag")["parameter"]["Value"] == "on"
    assert status.target("web-service").phase == TargetPhase.APPLIED
    assert status.target("web-service").error is None
    [retry] = [e for e in status.timeline if e.kind == "retry"]
    assert (retry.actor, retry.wave, retry.comment) == ("dave", "services", "on call")
    assert status.wave("services").error is None


async def test_pause_then_skip_target_completes_the_wave_without_it(
    time_skipping_env, aws, activity_executor, task_queue
):
    account = Account(aws)
    async with paused_worker(time_skipping_env, aws, task_queue, activity_executor):
        handle, backend, before = await start_paused(time_skipping_env, aws, task_queue)
        assert await refusal(
            signed_update(
                handle, ReleaseWorkflow.skip_target, TargetActionInput(**operator(target="config"))
            )
        ) == (
            "target 'config' can be skipped only while its wave is paused on a failure "
            "or its rollback failed"
        )
        result = await signed_update(
            handle,
            ReleaseWorkflow.skip_target,
            TargetActionInput(**operator(target="web-service", reason="web:3 ships next week")),
        )
        assert result.message == "target web-service skipped; wave services goes on"
        outcome = await handle.result()
        status = await status_of(handle)
    await assert_replays(handle)

    assert outcome.phase == ReleasePhase.COMPLETED
    assert ecs_description(account) == before["ecs"]
    assert ssm_description(account, "/payments/flag")["parameter"]["Value"] == "on"
    assert status.target("web-service").phase == TargetPhase.SKIPPED
    assert status.wave("services").phase == WavePhase.COMPLETED
    [skipped] = [e for e in status.timeline if e.kind == "target_skipped"]
    assert (skipped.actor, skipped.wave, skipped.comment) == (
        "dave",
        "services",
        "web:3 ships next week",
    )


async def test_a_target_skipped_after_it_shifted_traffic_is_still_rolled_back(
    time_skipping_env, aws, make_worker, task_queue
):
    edge = make_edge(Account(aws))
    before = edge.describe()
    plan = make_plan(
        [*edge.targets(), ssm("bad", RESERVED, "on")],
        [
            wave(
                "edge",
                ["web-lb", "web-dns"],
                traffic=[10, 100],
                bake="1s",
                bake_interval="1s",
                alarms=[ALARM],
                on_failure="pause",
            ),
            wave("last", ["bad"], after=["edge"], groups={"ops-leads": 1}),
        ],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        await wait_long(handle, wave_is("edge", WavePhase.BAKING, 10))
        edge.set_alarm("ALARM", "dns errors")
        await wait_long(handle, wave_is("edge", WavePhase.PAUSED))
        # The operator keeps DNS where it is (10 %) and lets the listener go on.
        edge.set_alarm("OK", "quiet again")
        await signed_update(
            handle,
            ReleaseWorkflow.skip_target,
            TargetActionInput(actor="alice", target="web-dns", reason="dns stays at 10%"),
        )
        await wait_long(handle, lambda s: bool(s.pending_approvals))
        assert edge.weights() == ({"blue": 0, "green": 100}, {"blue": 90, "green": 10})
        await signed_update(
            handle, ReleaseWorkflow.approve, DecisionInput(wave="last", approver="dave")
        )
        outcome = await handle.result()
        status = await status_of(handle)

    # Skipping a target's later steps does not exempt what it already changed from rollback.
    assert outcome.phase == ReleasePhase.ROLLED_BACK
    assert edge.describe() == before
    # Newest change first: the listener went on to 100 % after DNS stopped at 10 %.
    assert restored_order(status) == ["bad", "web-lb", "web-dns"]


async def test_pause_then_rollback_restores_every_wave(
    time_skipping_env, aws, activity_executor, task_queue
):
    account = Account(aws)
    async with paused_worker(time_skipping_env, aws, task_queue, activity_executor):
        handle, backend, before = await start_paused(time_skipping_env, aws, task_queue)
        result = await signed_update(
            handle, ReleaseWorkflow.rollback, WaveActionInput(**operator(wave="services"))
        )
        assert result.message == "rolling back the release"
        outcome = await handle.result()
        status = await status_of(handle)
    await assert_replays(handle)

    assert outcome.phase == ReleasePhase.ROLLED_BACK
    assert {
        "backend": backend.describe(),
        "flag": ssm_description(account, "/payments/flag"),
        "ecs": ecs_description(account),
    } == before
    assert restored_order(status) == ["web-service", "flag", "checkout-alias", "config"]
    assert {w.name: w.phase for w in status.waves} == {
        "backend": WavePhase.ROLLED_BACK,
        "services": WavePhase.FAILED,
    }
    [decision] = [e for e in status.timeline if e.kind == "rollback"]
    assert (decision.actor, decision.wave) == ("dave", "services")


# --- 4. a worker dies in the middle of a rollback ----------------------------------------------


class CrashingCompensation:
    """``compensate_target`` that restores ``crash_on`` and then hangs until its worker
    stops: the write reached AWS, but the attempt fails with the worker and its result
    never reaches Temporal.

    (A worker killed outright is only noticed when the attempt times out: the time-skipping
    server does not skip time while an activity is in flight, so this test stops the worker
    instead of waiting minutes for that.)
    """

    def __init__(self, aws: AwsClients, crash_on: str):
        self.real = TargetActivities(aws)
        self.crash_on = crash_on
        self.hanging = threading.Event()

    @activity.defn(name=COMPENSATE_TARGET)
    def compensate_target(self, input: CompensateInput) -> CompensateResult:
        result = self.real.compensate_target(input)
        if input.target.name == self.crash_on:
            self.hanging.set()
            # Bounded: a test that fails before it stops the worker must not leave this
            # thread of the session's executor waiting for ever.
            activity.wait_for_worker_shutdown_sync(timeout=60)
            raise RuntimeError("worker stopped in the middle of the rollback")
        return result


async def test_rollback_finishes_on_a_new_worker_after_a_crash_mid_rollback(
    time_skipping_env, aws, make_worker, task_queue, activity_executor
):
    account = Account(aws)
    backend = make_backend(account)
    account.client("ssm").put_parameter(Name="/payments/two", Value="two-v1", Type="String")
    before = {"backend": backend.describe(), "two": ssm_description(account, "/payments/two")}
    plan = make_plan(
        [*backend.targets(), ssm("two", "/payments/two", "two-v2"), ssm("bad", RESERVED, "on")],
        [
            wave("backend", ["config", "checkout-alias"]),
            wave("more", ["two", "bad"], after=["backend"]),
        ],
    )
    crashing = CrashingCompensation(aws, crash_on="two")
    first = build_test_worker(
        time_skipping_env.client,
        task_queue,
        aws,
        activity_executor,
        stand_ins=[crashing.compensate_target],
        # No sticky cache: the next worker gets the workflow's tasks straight away.
        max_cached_workflows=0,
    )
    async with first:
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        # Real seconds: no client waits on a result, so the server skips no time meanwhile.
        await asyncio.get_running_loop().run_in_executor(None, crashing.hanging.wait, 30)
        assert crashing.hanging.is_set()
        # The wave's targets are restored side by side: "bad" is, "two" hangs. Their
        # timeline entries wait for the whole wave, to keep the saga's order.
        status = await wait_for(handle, lambda s: s.target("bad").phase == TargetPhase.ROLLED_BACK)
        assert status.phase == ReleasePhase.ROLLING_BACK
        assert restored_order(status) == []
        # "two" is restored in AWS, but the release does not know it yet.
        assert ssm_description(account, "/payments/two") == before["two"]
        assert status.target("two").phase == TargetPhase.ROLLING_BACK
    # The first worker is gone; a new one picks the rollback up where it was.
    async with make_worker(time_skipping_env, aws):
        outcome = await handle.result()
        status = await status_of(handle)
    await assert_replays(handle)

    assert outcome.phase == ReleasePhase.ROLLED_BACK
    assert {"backend": backend.describe(), "two": ssm_description(account, "/payments/two")} == (
        before
    )
    # Each resource restored once: "two" was found already restored, not written again.
    assert restored_order(status) == ["bad", "two", "checkout-alias", "config"]
    [two] = [e for e in status.timeline if e.kind == "target_restored" and e.target == "two"]
    assert two.message == "ssm parameter /payments/two restored to two-v1 (it already was)"
    versions = account.client("ssm").get_parameter_history(Name="/payments/two")["Parameters"]
    assert [p["Value"] for p in versions] == ["two-v1", "two-v2", "two-v1"]


class SlowCompensation:
    """``compensate_target`` that waits for the test before restoring ``slow``."""

    def __init__(self, aws: AwsClients, slow: str):
        self.real = TargetActivities(aws)
        self.slow = slow
        self.waiting = threading.Event()
        self.go = threading.Event()

    @activity.defn(name=COMPENSATE_TARGET)
    def compensate_target(self, input: CompensateInput) -> CompensateResult:
        if input.target.name == self.slow:
            self.waiting.set()
            self.go.wait(10)
        return self.real.compensate_target(input)


async def test_cancelling_in_the_middle_of_a_rollback_does_not_interrupt_it(
    time_skipping_env, aws, task_queue, activity_executor
):
    account = Account(aws)
    backend = make_backend(account)
    before = backend.describe()
    plan = make_plan(
        [*backend.targets(), ssm("bad", RESERVED, "on")],
        [wave("backend", ["config", "checkout-alias"]), wave("more", ["bad"], after=["backend"])],
    )
    slow = SlowCompensation(aws, slow="checkout-alias")
    worker = build_test_worker(
        time_skipping_env.client,
        task_queue,
        aws,
        activity_executor,
        stand_ins=[slow.compensate_target],
    )
    async with worker:
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        await asyncio.get_running_loop().run_in_executor(None, slow.waiting.wait, 10)
        await handle.cancel()
        await asyncio.sleep(0.5)  # the cancellation reaches the workflow meanwhile
        slow.go.set()
        outcome = await handle.result()
        status = await status_of(handle)
    await assert_replays(handle)

    assert backend.describe() == before
    assert restored_order(status) == ["bad", "checkout-alias", "config"]
    assert not [e for e in status.timeline if e.kind == "rollback_failed"]
    # The release was already rolling back a failure: that is how it ends.
    assert outcome.phase == ReleasePhase.ROLLED_BACK


class LostBatchApply:
    """``apply_targets`` that changes every target, then fails as a whole, as when every
    attempt of the batch timed out: the wave cannot tell which of its targets changed."""

    def __init__(self, aws: AwsClients):
        self.real = TargetActivities(aws)
        self.calls = 0

    @activity.defn(name=APPLY_TARGETS)
    def apply_targets(self, input: ApplyStepInput) -> ApplyStepResult:
        self.calls += 1
        self.real.apply_targets(input)
        raise ApplicationError("every attempt of the batch timed out", non_retryable=True)


async def test_a_step_that_fails_as_a_whole_fails_every_target_and_restores_them_all(
    time_skipping_env, aws, task_queue, activity_executor
):
    account = Account(aws)
    backend = make_backend(account)
    before = backend.describe()
    plan = make_plan(backend.targets(), [wave("backend", ["config", "checkout-alias"])])
    lost = LostBatchApply(aws)
    worker = build_test_worker(
        time_skipping_env.client, task_queue, aws, activity_executor, stand_ins=[lost.apply_targets]
    )
    async with worker:
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        outcome = await handle.result()
        status = await status_of(handle)
    await assert_replays(handle)

    assert lost.calls == 1
    assert outcome.phase == ReleasePhase.ROLLED_BACK
    # Both were changed by the lost batch, and both are back as they were.
    assert backend.describe() == before
    error = "every attempt of the batch timed out"
    assert {t.name: (t.phase, t.error) for t in status.wave("backend").targets} == {
        "config": (TargetPhase.ROLLED_BACK, error),
        "checkout-alias": (TargetPhase.ROLLED_BACK, error),
    }
    assert sorted(restored_order(status)) == ["checkout-alias", "config"]
    assert outcome.error == f"wave backend: {error}; {error}"


# --- 5. a resource deleted behind the release's back: rollback_failed waits for an operator ----


async def fail_rollback_on_deleted_alias(
    env: Any, aws: AwsClients, task_queue: str
) -> tuple[Any, Backend, dict[str, Any]]:
    """Deploy ``backend``, pause ``more`` on a failure, delete the alias, roll back."""
    account = Account(aws)
    backend = make_backend(account)
    before = backend.describe()
    plan = make_plan(
        [*backend.targets(), ssm("bad", RESERVED, "on")],
        [
            wave("backend", ["config", "checkout-alias"]),
            wave("more", ["bad"], after=["backend"], on_failure="pause"),
        ],
    )
    handle = await start_release(env.client, plan, task_queue)
    await wait_for(handle, wave_is("more", WavePhase.PAUSED))
    account.client("lambda").delete_alias(FunctionName="checkout", Name="live")
    await signed_update(
        handle,
        ReleaseWorkflow.rollback,
        WaveActionInput(actor="alice", wave="more", reason="abandon"),
    )
    status = await wait_for(handle, lambda s: s.phase == ReleasePhase.ROLLBACK_FAILED)

    # Everything else was restored; the alias is named with what it should be restored to.
    assert ssm_description(account, backend.parameter) == before["ssm"]
    alias = status.target("checkout-alias")
    assert alias.phase == TargetPhase.ROLLBACK_FAILED and alias.error is not None
    assert alias.error.startswith(
        "lambda:GetAlias on lambda alias checkout:live failed: ResourceNotFoundException"
    )
    assert alias.error.endswith("; it should be restored to version 1 (all traffic)")
    assert status.error == "rollback of 1 resource(s) failed; see targets"
    [event] = [e for e in status.timeline if e.kind == "rollback_failed"]
    assert event.target == "checkout-alias"
    assert event.message == f"lambda alias checkout:live: {alias.error}"
    assert restored_order(status) == ["bad", "config"]
    [halted] = [e for e in status.timeline if e.kind == "rollback_halted"]
    assert halted.message == (
        "rollback of 1 resource(s) failed and waits for an operator: "
        f"relman rollback {plan.id} (retry) or relman skip-target"
    )
    assert not status.finished
    return handle, backend, before


async def test_rollback_failed_then_skip_target_ends_rolled_back_with_skips(
    time_skipping_env, aws, make_worker, task_queue
):
    async with make_worker(time_skipping_env, aws):
        handle, backend, before = await fail_rollback_on_deleted_alias(
            time_skipping_env, aws, task_queue
        )
        result = await signed_update(
            handle,
            ReleaseWorkflow.skip_target,
            TargetActionInput(actor="alice", target="checkout-alias", reason="alias retired"),
        )
        assert result.message == "rollback of checkout-alias skipped"
        outcome = await handle.result()
        status = await status_of(handle)
        # The Web UI's "Current Details" of the ended release: its outcome and cause.
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert metadata.current_details == f"release rolled_back_with_skips: {status.error}"
    await assert_replays(handle)

    # Not a clean rollback: the outcome says so and names what a person must check.
    assert outcome.phase == ReleasePhase.ROLLED_BACK_WITH_SKIPS
    assert outcome.error == status.error
    assert status.error is not None and status.error.endswith(
        "; not restored by relman (an operator skipped their rollback; check them by hand): "
        "checkout-alias"
    )
    assert status.target("checkout-alias").phase == TargetPhase.SKIPPED
    [skipped] = [e for e in status.timeline if e.kind == "rollback_skipped"]
    assert (skipped.actor, skipped.comment) == ("alice", "alias retired")
    assert skipped.message.startswith("lambda alias checkout:live: rollback skipped; restore it")
    assert "it should be restored to version 1 (all traffic)" in skipped.message
    assert restored_order(status) == ["bad", "config"]


async def test_rollback_failed_then_recreate_and_rollback_restores_it(
    time_skipping_env, aws, make_worker, task_queue
):
    account = Account(aws)
    async with make_worker(time_skipping_env, aws):
        handle, backend, before = await fail_rollback_on_deleted_alias(
            time_skipping_env, aws, task_queue
        )
        # Someone recreates the alias on the new version; the retried rollback moves it back.
        account.client("lambda").create_alias(
            FunctionName="checkout", Name="live", FunctionVersion="2", Description="production"
        )
        result = await signed_update(
            handle,
            ReleaseWorkflow.rollback,
            WaveActionInput(actor="alice", wave="more", reason="alias recreated"),
        )
        assert result.message == "retrying the rollback"
        outcome = await handle.result()
        status = await status_of(handle)
    await assert_replays(handle)

    assert outcome.phase == ReleasePhase.ROLLED_BACK
    assert backend.describe() == before
    alias = status.target("checkout-alias")
    assert (alias.phase, alias.error, alias.after) == (
        TargetPhase.ROLLED_BACK,
        None,
        "version 1 (all traffic)",
    )
    assert restored_order(status) == ["bad", "config", "checkout-alias"]
    assert {w.name: w.phase for w in status.waves} == {
        "backend": WavePhase.ROLLED_BACK,
        "more": WavePhase.FAILED,
    }


async def test_rollback_failed_when_the_previous_task_definition_was_deleted(
    time_skipping_env, aws, make_worker, task_queue
):
    account = Account(aws)
    make_ecs(account)
    plan = make_plan(
        [
            ECS_TARGET | {"task_definition": "web:2", "desired_count": None},
            ssm("bad", RESERVED, "on"),
        ],
        [wave("services", ["web-service", "bad"], on_failure="pause")],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        await wait_for(handle, wave_is("services", WavePhase.PAUSED))
        ecs = account.client("ecs")
        ecs.deregister_task_definition(taskDefinition="web:1")
        ecs.delete_task_definitions(taskDefinitions=["web:1"])
        await signed_update(
            handle,
            ReleaseWorkflow.rollback,
            WaveActionInput(actor="alice", wave="services", reason="abandon"),
        )
        # ECS's ClientException cannot succeed by retrying: an operator hears of it at once.
        status = await wait_for(handle, lambda s: s.phase == ReleasePhase.ROLLBACK_FAILED)
        assert status.target("web-service").error == (
            "ecs:UpdateService on ecs service prod/web failed: ClientException: "
            "Unable to describe task definition.; it should be restored to web:1 x2"
        )
        await signed_update(
            handle,
            ReleaseWorkflow.skip_target,
            TargetActionInput(actor="alice", target="web-service", reason="web:1 is gone"),
        )
        outcome = await handle.result()

    # The operator took it over: the service stays on what the release made it.
    assert outcome.phase == ReleasePhase.ROLLED_BACK_WITH_SKIPS
    service = ecs_description(account)
    assert (service["taskDefinition"].rsplit("/", 1)[-1], service["desiredCount"]) == ("web:2", 2)


# --- 6. cancelling the workflow during a bake --------------------------------------------------


async def test_cancelling_during_a_bake_rolls_back_everything(
    time_skipping_env, aws, make_worker, task_queue
):
    backend = make_backend(Account(aws, ROLE_A))
    edge = make_edge(Account(aws))
    before = {"backend": backend.describe(), "edge": edge.describe()}
    plan = make_plan(
        backend.targets() + edge.targets(),
        [
            wave("backend", ["config", "checkout-alias"]),
            wave(
                "edge",
                ["web-lb", "web-dns"],
                department="operations",
                after=["backend"],
                traffic=[10, 100],
                # Long enough that only the cancellation can end it within the test.
                bake="5m",
                bake_interval="1s",
                alarms=[ALARM],
                # A cancelled bake is not a failure: it must not wait for an operator.
                on_failure="pause",
            ),
        ],
        departments={"finance": {"role_arn": ROLE_A}, "operations": {}},
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        await wait_long(handle, wave_is("edge", WavePhase.BAKING, 10))
        assert edge.weights() == ({"blue": 90, "green": 10}, {"blue": 90, "green": 10})
        started = asyncio.get_running_loop().time()
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as info:
            await asyncio.wait_for(handle.result(), timeout=30)
        assert isinstance(info.value.cause, CancelledError)
        assert asyncio.get_running_loop().time() - started < 30
        status = await status_of(handle)
    await assert_replays(handle)

    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert status.phase == ReleasePhase.CANCELLED
    assert {"backend": backend.describe(), "edge": edge.describe()} == before
    assert restored_order(status) == ["web-dns", "web-lb", "checkout-alias", "config"]
    assert {w.name: w.phase for w in status.waves} == {
        "backend": WavePhase.ROLLED_BACK,
        "edge": WavePhase.CANCELLED,
    }
    assert status.error is None and status.wave("edge").error is None
    assert not [e for e in status.timeline if e.kind in ("wave_failed", "wave_paused")]


# --- 6. the saga undoes changes newest first by when they were applied, across waves --------


async def test_parallel_waves_are_undone_newest_applied_first(
    time_skipping_env, aws, make_worker, task_queue
):
    """``canary`` shifts 50 % of the alias, then ``config`` (approved meanwhile) changes the
    parameter, then ``canary`` shifts to 100 %: the alias changed last, so it is restored
    first, although the parameter's snapshot was recorded after the alias's."""
    env = time_skipping_env
    account = Account(aws)
    backend = make_backend(account)
    before = backend.describe()
    plan = make_plan(
        backend.targets(),
        [
            wave("canary", ["checkout-alias"], traffic=[50, 100], bake="1h"),
            wave("settings", ["config"], groups={"finance-cab": 1}),
        ],
    )
    async with make_worker(env, aws):
        handle = await start_release(env.client, plan, task_queue)
        await wait_for(handle, wave_is("canary", WavePhase.BAKING, 50))
        await wait_for(handle, lambda s: s.wave("settings").phase == WavePhase.AWAITING_APPROVAL)
        await signed_update(
            handle, ReleaseWorkflow.approve, DecisionInput(wave="settings", approver="bob")
        )
        await wait_for(handle, lambda s: s.wave("settings").phase == WavePhase.COMPLETED)
        await env.sleep(timedelta(minutes=61))
        await wait_for(handle, wave_is("canary", WavePhase.BAKING, 100))
        await signed_update(
            handle, ReleaseWorkflow.abort, OperatorInput(actor="olga", reason="called off")
        )
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.CANCELLED
    assert backend.describe() == before
    recorded = [e.target for e in status.timeline if e.kind == "target_applied"]
    assert recorded == ["checkout-alias", "config", "checkout-alias"]
    assert restored_order(status) == ["checkout-alias", "config"]
