"""Plan builders, SSM seeding and status polling shared by the workflow and activity tests."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.aws import AwsClients
from client.service import local_activity
from models.loader import parse_plan
from models.messages import DecisionInput
from models.plan import WEEKDAYS, ReleasePlan
from models.status import ReleaseStatus, TimelineEvent
from tests import trust
from tests.trust import signed_update  # noqa: F401 - tests import it from here
from workflows.release import ReleaseWorkflow

# The groups most test plans' gates name (members in tests.trust's policy); alice requests.
APPROVER_GROUPS = {"finance-cab": ["bob", "carol"], "ops-leads": ["dave", "erin"]}
# How long a test waits for a workflow to reach a state before failing (real seconds).
WAIT_LIMIT = 30.0


def ssm(name: str, parameter: str, value: str, type_: str = "String") -> dict[str, Any]:
    """A plan's ``ssm_parameter`` target."""
    return {"name": name, "kind": "ssm_parameter", "parameter": parameter, "value": value} | (
        {"type": type_} if type_ != "String" else {}
    )


def create_alarm(aws: Any, name: str, state: str = "OK", reason: str = "quiet") -> None:
    """A CloudWatch alarm on a load balancer's 5xx count, in ``state`` (moto never
    evaluates alarms: tests set their state)."""
    cloudwatch = aws.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/ApplicationELB",
        MetricName="HTTPCode_Target_5XX_Count",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=10.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)


def wave(
    name: str,
    targets: list[str],
    *,
    department: str = "finance",
    after: list[str] | None = None,
    groups: dict[str, int] | None = None,
    timeout: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A plan's wave; ``groups`` adds an approval gate (with ``timeout`` if given)."""
    data: dict[str, Any] = {"name": name, "department": department, "targets": targets}
    if after:
        data["after"] = after
    if groups:
        data["approval"] = {"groups": groups} | ({"timeout": timeout} if timeout else {})
    return data | fields


def make_plan(
    targets: list[dict[str, Any]], waves: list[dict[str, Any]], **fields: Any
) -> ReleasePlan:
    """A validated plan with a unique release id; ``fields`` override the plan's top level."""
    data: dict[str, Any] = {
        "id": f"rel-{uuid.uuid4().hex[:10]}",
        "application": "payments",
        "version": "2.4.0",
        "requested_by": "alice",
        "targets": targets,
        "waves": waves,
    }
    return parse_plan(data | fields)


def two_wave_plan(**fields: Any) -> ReleasePlan:
    """The shape of examples/demo.yaml: finance (two targets) gated by finance-cab, then
    operations gated by ops-leads; every target in us-east-1 (moto's default region)."""
    return make_plan(
        [
            ssm("finance-api-version", "/payments/finance/api/version", "2.4.0"),
            ssm("finance-settlement-engine", "/payments/finance/settlement/engine", "ledger-v2"),
            ssm("ops-api-version", "/payments/operations/api/version", "2.4.0"),
        ],
        [
            wave(
                "finance",
                ["finance-api-version", "finance-settlement-engine"],
                groups={"finance-cab": 1},
                timeout="48h",
            ),
            wave(
                "operations",
                ["ops-api-version"],
                department="operations",
                after=["finance"],
                groups={"ops-leads": 1},
                timeout="2d",
            ),
        ],
        **fields,
    )


# What the two-wave plan's parameters hold before the release.
TWO_WAVE_BEFORE = {
    "/payments/finance/api/version": "2.3.1",
    "/payments/finance/settlement/engine": "ledger-v1",
    "/payments/operations/api/version": "2.3.1",
}


def seed(aws: AwsClients, values: dict[str, str], type_: str = "String") -> None:
    """Create SSM parameters in moto."""
    client = aws.client("ssm")
    for name, value in values.items():
        client.put_parameter(Name=name, Value=value, Type=type_, Overwrite=True)


def ssm_values(aws: AwsClients, names: list[str]) -> dict[str, str | None]:
    """The current (decrypted) value of each parameter; None where it does not exist."""
    client = aws.client("ssm")
    found = client.get_parameters(Names=names, WithDecryption=True)["Parameters"]
    values: dict[str, str | None] = dict.fromkeys(names)
    values.update({p["Name"]: p["Value"] for p in found})
    return values


def history_length(aws: AwsClients, name: str) -> int:
    """How many versions the parameter has had."""
    return len(aws.client("ssm").get_parameter_history(Name=name)["Parameters"])


async def start_release(
    client: Client, plan: ReleasePlan, task_queue: str, **kwargs: Any
) -> WorkflowHandle[ReleaseWorkflow, Any]:
    """Start ``plan`` as a release; the workflow id is the (unique) release id."""
    return await client.start_workflow(
        ReleaseWorkflow.run,
        await trust.release_input(client, plan),
        id=plan.id,
        task_queue=task_queue,
        **kwargs,
    )


async def status_of(handle: WorkflowHandle[Any, Any]) -> ReleaseStatus:
    """The release's status query."""
    return await handle.query(ReleaseWorkflow.status)


async def wait_for(
    handle: WorkflowHandle[Any, Any],
    predicate: Callable[[ReleaseStatus], bool],
    limit: float = WAIT_LIMIT,
) -> ReleaseStatus:
    """Poll the status query until ``predicate`` holds (no workflow time passes meanwhile).

    ``limit`` is real seconds: raise it for waits that span real activity time (bakes).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        status = await status_of(handle)
        if predicate(status):
            return status
        if loop.time() > deadline:
            raise AssertionError(f"release never reached the expected state: {status}")
        await asyncio.sleep(0.02)


async def wait_for_gate(handle: WorkflowHandle[Any, Any], *waves: str) -> ReleaseStatus:
    """Wait until exactly ``waves`` are the gates awaiting approval."""
    return await wait_for(
        handle, lambda s: sorted(p.wave for p in s.pending_approvals) == sorted(waves)
    )


async def approve(
    handle: WorkflowHandle[Any, Any], wave_name: str, approver: str, comment: str = "", **kw: Any
) -> Any:
    """Run the approve update, signed by ``approver``, and return its DecisionResult."""
    return await trust.signed_update(
        handle,
        ReleaseWorkflow.approve,
        DecisionInput(wave=wave_name, approver=approver, comment=comment),
        **kw,
    )


async def reject(
    handle: WorkflowHandle[Any, Any], wave_name: str, approver: str, comment: str = ""
) -> Any:
    """Run the reject update, signed by ``approver``, and return its DecisionResult."""
    return await trust.signed_update(
        handle,
        ReleaseWorkflow.reject,
        DecisionInput(wave=wave_name, approver=approver, comment=comment),
    )


async def assert_replays(handle: WorkflowHandle[Any, Any]) -> None:
    """Replay the release's recorded history against today's workflow code: it must not
    raise a non-determinism error (commands recorded in a different order or shape)."""
    history = await handle.fetch_history()
    replayer = Replayer(
        workflows=[ReleaseWorkflow],
        data_converter=handle._client.data_converter,  # noqa: SLF001
    )
    await replayer.replay_workflow(history)


async def activities_run(client: Client, workflow_id: str) -> list[str]:
    """The activities a workflow ran, from its history, in order: those of its task queue
    (scheduled) and its local activities (recorded as markers), by activity name."""
    names = []
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            names.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        elif (local := local_activity(event)) is not None:
            names.append(local[0])
    return names


# --- workflow time (time-skipping server) and timelines -----------------------------------


def local(day: date, wall: str, tz: str) -> datetime:
    """The UTC instant of local wall-clock ``wall`` (HH:MM) on ``day`` in ``tz``."""
    hour, minute = (int(part) for part in wall.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def next_weekday(after: datetime, weekday: str, tz: str) -> date:
    """The first local date strictly after ``after``'s local date that falls on ``weekday``
    (``mon`` .. ``sun``)."""
    today = after.astimezone(ZoneInfo(tz)).date()
    ahead = (WEEKDAYS.index(weekday) - today.weekday() - 1) % 7 + 1  # type: ignore[arg-type]
    return today + timedelta(days=ahead)


async def skip_to(env: WorkflowEnvironment, when: datetime) -> None:
    """Move the time-skipping server's clock to ``when``; timers due meanwhile fire.

    Every workflow with a timer due in between needs a running worker: the server does not
    skip past a workflow task nobody polls.
    """
    now = await env.get_current_time()
    if when > now:
        await env.sleep(when - now)


def events(status: ReleaseStatus, kind: str, wave: str | None = None) -> list[TimelineEvent]:
    """The release's timeline events of ``kind`` (of ``wave`` if given), in workflow time."""
    found = [e for e in status.timeline if e.kind == kind and (wave is None or e.wave == wave)]
    return sorted(found, key=lambda e: e.at)


def near(at: datetime | None, expected: datetime, slack: timedelta = timedelta(seconds=5)) -> bool:
    """Whether ``at`` is ``expected`` or at most ``slack`` later: the real time a workflow
    task takes (the time-skipping server's clock moves with the wall clock between skips)."""
    return at is not None and expected <= at <= expected + slack


async def update_refusal(update: Awaitable[Any]) -> str:
    """The message with which a workflow update's validator refused ``update``."""
    try:
        await update
    except WorkflowUpdateFailedError as err:
        return str(getattr(err.cause, "message", err.cause))
    raise AssertionError("the update was accepted")


# Operation-name prefixes of AWS calls that only read.
READS = ("Get", "List", "Describe", "Head")


def writes_of(client: Any) -> list[str]:
    """The writing API operations ``client`` sends from now on, by name.

    Idempotency tests re-run a step and assert this stays empty: no second write.
    """
    writes: list[str] = []

    def record(model: Any, **_: Any) -> None:
        if not model.name.startswith(READS):
            writes.append(model.name)

    client.meta.events.register("before-call", record)
    return writes


def base64_fields(node: object) -> list[bytes]:
    """Every string of a JSON document that decodes as base64, decoded."""
    if isinstance(node, dict):
        return [b for value in node.values() for b in base64_fields(value)]
    if isinstance(node, list):
        return [b for value in node for b in base64_fields(value)]
    if isinstance(node, str):
        try:
            return [base64.b64decode(node, validate=True)]
        except ValueError:
            return []
    return []
