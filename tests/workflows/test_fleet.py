"""ec2_fleet targets end to end: time-skipping Temporal, the real worker, moto over HTTP.

A fleet rolls out batch by batch, each batch out of its target group while its command
runs; a failed invocation (moto always answers Success: the fault-injecting proxy rewrites
one instance's answer) stops the fleet, and the rollback runs the rollback command on the
batches that changed, newest first, and puts them back in service.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from rich.console import Console
from temporalio import activity
from temporalio.api.history.v1 import HistoryEvent
from temporalio.testing import WorkflowEnvironment

from activities.aws import AwsClients
from activities.fleet import FleetActivities
from activities.ssm_commands import send_command_once
from client.progress import with_running_progress
from client.views import StatusView
from models.fleet import (
    FLEET_COMMAND,
    FleetCommandInput,
    FleetCommandProgress,
    FleetCommandResult,
    InstancePhase,
)
from models.messages import WaveActionInput, wave_workflow_id
from models.plan import ReleasePlan
from models.status import ReleasePhase, ReleaseStatus, TargetPhase, WavePhase
from tests.activities.test_ssm_commands import launch
from tests.helpers import assert_replays, make_plan, start_release, status_of, wait_for, wave
from tests.reliability.aws_proxy import Answer, AwsProxy, Call
from tests.trust import build_test_worker, signed_update
from workflows.release import ReleaseWorkflow

TAGS = {"app": "payments", "role": "web"}
PORT = 8080


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[AwsProxy]:
    proxy = AwsProxy(urlsplit(moto_endpoint).port or 0)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def proxied(aws: AwsClients, proxy: AwsProxy) -> AwsClients:
    """The worker's AWS: moto (reset by ``aws``) through the proxy."""
    return AwsClients(endpoint_url=proxy.endpoint, default_region="us-east-1", max_attempts=2)


def fleet_setup(aws: AwsClients, count: int = 6) -> tuple[list[str], str]:
    """``count`` running instances tagged ``TAGS``, registered in one target group."""
    ec2, elbv2 = aws.client("ec2"), aws.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    group = elbv2.create_target_group(
        Name="payments-web", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    ids = launch(aws, count, TAGS)
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": i, "Port": PORT} for i in ids])
    launch(aws, 2, {"app": "payments", "role": "worker"})  # not part of the fleet
    return ids, group


def fleet(group: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "kind": "ec2_fleet",
        "instances": {"tags": TAGS},
        "batch_size": 2,
        "min_healthy_percent": 60,
        "target_groups": [group],
        "command": {"commands": ["deploy payments 2.4.0"]},
        "rollback": {"commands": ["deploy payments 2.3.1"]},
    } | fields


def registered(aws: AwsClients, group: str) -> dict[str, tuple[int, str]]:
    """Each registered instance's port and health."""
    found = aws.client("elbv2").describe_target_health(TargetGroupArn=group)
    return {
        d["Target"]["Id"]: (d["Target"]["Port"], d["TargetHealth"]["State"])
        for d in found["TargetHealthDescriptions"]
    }


class SentCommands:
    """Every SendCommand the worker made, as it sent it (moto's ListCommands names every
    instance of the account for a command sent by instance ids, so it cannot tell)."""

    def __init__(self, proxy: AwsProxy):
        self.sent: list[tuple[str, list[str], str]] = []
        proxy.rewrite(operation("SendCommand"), self._record)

    def _record(self, call: Call, answer: Answer) -> Answer:
        request = call.json()
        # The idempotency key ends with the fleet and the batch (a rollback: "undo" and
        # the batch, then the restore's activity id).
        where = re.search(r":(web:(b|undo)\d+)(:\d+)?$", request["Comment"])
        assert where is not None, request["Comment"]
        self.sent.append(
            (request["Parameters"]["commands"][0], sorted(request["InstanceIds"]), where[1])
        )
        return answer


def instances(status: ReleaseStatus) -> list[tuple[str, int, InstancePhase, str | None]]:
    return [(i.id, i.batch, i.phase, i.result) for i in status.target("web").instances]


def render(status: ReleaseStatus) -> str:
    console = Console(record=True, width=300)
    StatusView(status).render(console)
    return console.export_text()


def operation(name: str, where: Callable[[Call], bool] = lambda call: True) -> Any:
    return lambda call: call.operation == name and where(call)


def failed_invocation(call: Call, answer: Answer) -> Answer:
    status, headers, body = answer
    data = json.loads(body)
    data |= {"Status": "Failed", "StatusDetails": "Failed", "ResponseCode": 3}
    data["StandardErrorContent"] = "deploy: disk full"
    return status, headers, json.dumps(data).encode()


async def test_a_fleet_rolls_out_batch_by_batch_and_status_shows_every_instance(
    time_skipping_env, aws, proxied, proxy, make_worker, task_queue
):
    ids, group = fleet_setup(aws)
    sent = SentCommands(proxy)
    plan = make_plan([fleet(group)], [wave("web", ["web"])])
    async with make_worker(time_skipping_env, proxied):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        result = await handle.result()
        status = await status_of(handle)
        await assert_replays(handle)

    assert result.phase == ReleasePhase.COMPLETED, status.error
    target = status.target("web")
    assert target.phase == TargetPhase.APPLIED
    assert target.after == "6 instance(s) done in 3 batch(es)"
    assert instances(status) == [
        (i, n // 2 + 1, InstancePhase.DONE, "Success") for n, i in enumerate(ids)
    ]
    # Every instance is back in its target group, on its port, healthy.
    assert registered(aws, group) == {i: (PORT, "healthy") for i in ids}
    # One command per batch, each to its two instances, in batch order.
    assert sent.sent == [
        ("deploy payments 2.4.0", ids[0:2], "web:b1"),
        ("deploy payments 2.4.0", ids[2:4], "web:b2"),
        ("deploy payments 2.4.0", ids[4:6], "web:b3"),
    ]
    assert [e.kind for e in status.timeline if e.kind.startswith("fleet_")] == [
        "fleet_batch_started",
        "fleet_batch_done",
    ] * 3
    text = render(status)
    assert "fleet web: 6 done" in text
    assert f"{ids[0]} batch 1 done (Success, exit 0)" in text


async def test_a_failed_invocation_stops_the_fleet_and_rolls_back_the_batches_that_changed(
    time_skipping_env, aws, proxied, proxy, make_worker, task_queue
):
    ids, group = fleet_setup(aws)
    sent = SentCommands(proxy)
    broken = ids[3]  # in batch 2
    proxy.rewrite(
        operation(
            "GetCommandInvocation",
            lambda call: (
                call.json()["InstanceId"] == broken
                and "deploy payments 2.4.0" in commands_of(aws, call.json()["CommandId"])
            ),
        ),
        failed_invocation,
    )
    plan = make_plan([fleet(group)], [wave("web", ["web"])])
    async with make_worker(time_skipping_env, proxied):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        result = await handle.result()
        status = await status_of(handle)
        await assert_replays(handle)

    assert result.phase == ReleasePhase.ROLLED_BACK, status.error
    assert status.error == (
        f"wave web: fleet web batch 2/3: AWS-RunShellScript failed on {broken} "
        "Failed (exit 3): deploy: disk full"
    )
    target = status.target("web")
    assert target.phase == TargetPhase.ROLLED_BACK
    assert target.after == "4 instance(s) rolled back with AWS-RunShellScript and back in service"
    phases = {i.id: (i.phase, i.error) for i in target.instances}
    assert phases == {
        **{i: (InstancePhase.ROLLED_BACK, None) for i in ids[0:2]},
        ids[2]: (InstancePhase.ROLLED_BACK, "its batch failed"),
        broken: (InstancePhase.ROLLED_BACK, "Failed (exit 3): deploy: disk full"),
        **{i: (InstancePhase.PENDING, None) for i in ids[4:6]},
    }
    # The third batch never ran; the rollback undid batch 2, then batch 1.
    assert sent.sent == [
        ("deploy payments 2.4.0", ids[0:2], "web:b1"),
        ("deploy payments 2.4.0", ids[2:4], "web:b2"),
        ("deploy payments 2.3.1", ids[2:4], "web:undo2"),
        ("deploy payments 2.3.1", ids[0:2], "web:undo1"),
    ]
    # Every instance serves again, the batch that failed included.
    assert registered(aws, group) == {i: (PORT, "healthy") for i in ids}


async def test_retrying_a_paused_fleet_runs_only_the_batches_no_attempt_finished(
    time_skipping_env, aws, proxied, proxy, make_worker, task_queue
):
    ids, group = fleet_setup(aws)
    sent = SentCommands(proxy)
    broken = ids[3]  # in batch 2
    failing = threading.Event()
    failing.set()

    def fails_once(call: Call, answer: Answer) -> Answer:
        if failing.is_set() and call.json()["InstanceId"] == broken:
            return failed_invocation(call, answer)
        return answer

    proxy.rewrite(operation("GetCommandInvocation"), fails_once)
    plan = make_plan([fleet(group)], [wave("web", ["web"], on_failure="pause")])
    async with make_worker(time_skipping_env, proxied):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        paused = await wait_for(handle, lambda s: s.wave("web").phase == WavePhase.PAUSED)
        failing.clear()  # the disk was cleaned up
        await signed_update(
            handle,
            ReleaseWorkflow.retry,
            WaveActionInput(actor="dave", wave="web", reason="disk cleaned"),
        )
        result = await handle.result()
        status = await status_of(handle)
        await assert_replays(handle)

    assert [i.phase for i in paused.target("web").instances] == [
        InstancePhase.DONE, InstancePhase.DONE, InstancePhase.FAILED, InstancePhase.FAILED,
        InstancePhase.PENDING, InstancePhase.PENDING,
    ]  # fmt: skip
    assert result.phase == ReleasePhase.COMPLETED, status.error
    # Batch 1 ran once; the retry ran batch 2 again and then batch 3.
    assert [(instances, where) for _, instances, where in sent.sent] == [
        (ids[0:2], "web:b1"),
        (ids[2:4], "web:b2"),
        (ids[2:4], "web:b2"),
        (ids[4:6], "web:b3"),
    ]
    assert instances(status) == [
        (i, n // 2 + 1, InstancePhase.DONE, "Success") for n, i in enumerate(ids)
    ]
    assert [e.message for e in status.timeline if e.kind == "fleet_batch_done"] == [
        f"{status.target('web').resource}: batch 1/3 done, back in service",
        f"{status.target('web').resource}: batch 1/3 done by an earlier attempt, not run again",
        f"{status.target('web').resource}: batch 2/3 done, back in service",
        f"{status.target('web').resource}: batch 3/3 done, back in service",
    ]
    assert registered(aws, group) == {i: (PORT, "healthy") for i in ids}


def commands_of(aws: AwsClients, command_id: str) -> str:
    found = aws.client("ssm").list_commands(CommandId=command_id)["Commands"]
    return " ".join(c["Parameters"]["commands"][0] for c in found)


async def test_a_batch_that_would_leave_too_few_instances_in_service_changes_nothing(
    time_skipping_env, aws, make_worker, task_queue
):
    ids, group = fleet_setup(aws, count=4)
    plan = make_plan(
        [fleet(group, batch_size="50%", min_healthy_percent=75)], [wave("web", ["web"])]
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        result = await handle.result()
        status = await status_of(handle)

    assert result.phase == ReleasePhase.ROLLED_BACK
    assert status.error == (
        "wave web: ec2 fleet tagged app=payments, role=web: a batch of 2 of 4 instance(s) "
        "leaves 2 in service, fewer than min_healthy_percent 75% (3); make batch_size at "
        "most 1 or lower min_healthy_percent"
    )
    assert aws.client("ssm").list_commands()["Commands"] == []
    assert registered(aws, group) == {i: (PORT, "healthy") for i in ids}


class HealthyTwice(http.server.BaseHTTPRequestHandler):
    """Healthy for the first two requests (before the wave, after batch 1), then failing."""

    served = 0

    def do_GET(self) -> None:  # noqa: N802
        HealthyTwice.served += 1
        self.send_response(200 if HealthyTwice.served <= 2 else 503)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_url() -> Iterator[str]:
    HealthyTwice.served = 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HealthyTwice)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/health"
    httpd.shutdown()


async def test_the_waves_checks_run_after_each_batch_and_a_failing_one_rolls_the_fleet_back(
    time_skipping_env, aws, proxied, proxy, make_worker, task_queue, health_url
):
    ids, group = fleet_setup(aws)
    sent = SentCommands(proxy)
    check = {"name": "health", "kind": "http", "url": health_url, "interval": "1s"}
    plan = make_plan([fleet(group)], [wave("web", ["web"], checks=[check])])
    async with make_worker(time_skipping_env, proxied):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        result = await handle.result()
        status = await status_of(handle)
        await assert_replays(handle)

    failure = f"check 'health' failed after the batch: GET {health_url}: status 503 (expected 200)"
    assert result.phase == ReleasePhase.ROLLED_BACK
    assert status.error == f"wave web: fleet web batch 2/3: {failure}"
    assert HealthyTwice.served == 3  # before the wave, after batch 1, after batch 2
    assert [(script, where) for script, _, where in sent.sent] == [
        ("deploy payments 2.4.0", "web:b1"),
        ("deploy payments 2.4.0", "web:b2"),
        ("deploy payments 2.3.1", "web:undo2"),
        ("deploy payments 2.3.1", "web:undo1"),
    ]
    shown = StatusView(status).to_json()["waves"][0]["targets"][0]["instances"]
    assert [(i["id"], i["batch"], i["phase"]) for i in shown] == [
        (i, n // 2 + 1, "rolled_back" if n < 4 else "pending") for n, i in enumerate(ids)
    ]
    assert registered(aws, group) == {i: (PORT, "healthy") for i in ids}


async def test_status_shows_each_instance_draining_then_running_while_its_batch_changes(
    time_skipping_env, aws, proxied, proxy, make_worker, task_queue
):
    ids, group = fleet_setup(aws, count=4)
    draining = proxy.hold("batch 1 leaves", operation("DeregisterTargets"))
    sending = proxy.hold("batch 1 command", operation("SendCommand"))
    plan = make_plan(
        [fleet(group, batch_size="50%", min_healthy_percent=50)], [wave("web", ["web"])]
    )

    def phases(status: ReleaseStatus) -> list[InstancePhase]:
        return [i.phase for i in status.target("web").instances]

    async with make_worker(time_skipping_env, proxied):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        await asyncio.to_thread(draining.arrived.wait, 30)
        during_drain = await wait_for(handle, lambda s: bool(s.target("web").instances))
        draining.forward()
        await asyncio.to_thread(sending.arrived.wait, 30)
        during_command = await wait_for(handle, lambda s: phases(s)[0] == InstancePhase.RUNNING)
        # While the batch runs, it is out of the target group; the other batch serves.
        out_of_service = registered(aws, group)
        sending.forward()
        result = await handle.result()
        status = await status_of(handle)

    assert result.phase == ReleasePhase.COMPLETED, status.error
    pending, drain, running, done = (
        InstancePhase.PENDING,
        InstancePhase.DRAINING,
        InstancePhase.RUNNING,
        InstancePhase.DONE,
    )
    assert phases(during_drain) == [drain, drain, pending, pending]
    assert phases(during_command) == [running, running, pending, pending]
    assert during_command.target("web").phase == TargetPhase.APPLYING
    assert out_of_service == {i: (PORT, "healthy") for i in ids[2:]}
    assert phases(status) == [done] * 4


async def test_status_shows_each_instances_result_as_its_invocation_ends_during_the_command(
    time_skipping_env, aws, proxied, proxy, make_worker, task_queue
):
    ids, group = fleet_setup(aws, count=4)
    slow = ids[1]
    still_running = threading.Event()
    still_running.set()

    def in_progress(call: Call, answer: Answer) -> Answer:
        status, headers, body = answer
        if not still_running.is_set() or call.json().get("InstanceId") != slow:
            return answer
        data = json.loads(body) | {"Status": "InProgress", "StatusDetails": "InProgress"}
        return status, headers, json.dumps(data).encode()

    proxy.rewrite(operation("GetCommandInvocation"), in_progress)
    plan = make_plan(
        [fleet(group, batch_size="50%", min_healthy_percent=50)], [wave("web", ["web"])]
    )

    def first_ended(status: ReleaseStatus) -> bool:
        return status.target("web").instances[0].result is not None

    async with make_worker(time_skipping_env, proxied):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        for _ in range(100):
            live = await with_running_progress(time_skipping_env.client, await status_of(handle))
            if live.target("web").instances and first_ended(live):
                break
            await asyncio.sleep(0.1)
        # What the release itself says: the batch's command has not returned.
        recorded = await status_of(handle)
        still_running.clear()
        result = await handle.result()

    assert result.phase == ReleasePhase.COMPLETED
    assert not first_ended(recorded)
    assert instances(live) == [
        (ids[0], 1, InstancePhase.RUNNING, "Success"),
        (slow, 1, InstancePhase.RUNNING, None),
        (ids[2], 2, InstancePhase.PENDING, None),
        (ids[3], 2, InstancePhase.PENDING, None),
    ]
    text = render(live)
    assert f"{ids[0]} batch 1 running (Success, exit 0)" in text
    assert f"{slow} batch 1 running\n" in text


async def test_a_failed_rollback_command_leaves_its_instance_out_of_service_for_an_operator(
    time_skipping_env, aws, proxied, proxy, make_worker, task_queue
):
    ids, group = fleet_setup(aws, count=4)
    broken = ids[0]
    # The instance fails the deployment and then its rollback too.
    proxy.rewrite(
        operation("GetCommandInvocation", lambda call: call.json()["InstanceId"] == broken),
        failed_invocation,
    )
    plan = make_plan([fleet(group, min_healthy_percent=50)], [wave("web", ["web"])])
    async with make_worker(time_skipping_env, proxied):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        status = await wait_for(handle, lambda s: s.phase == ReleasePhase.ROLLBACK_FAILED)

    target = status.target("web")
    assert target.phase == TargetPhase.ROLLBACK_FAILED
    assert target.error == (
        f"target 'web': rollback of ec2 fleet tagged app=payments, role=web failed: {broken} "
        "Failed (exit 3); it should be restored to 4 instance(s), registered in 1 target group(s)"
    )
    # Its batch partner is back in service; the instance that failed twice is not.
    assert registered(aws, group) == {i: (PORT, "healthy") for i in ids[1:]}


async def test_a_worker_dying_after_sending_a_batchs_command_runs_no_instance_twice(
    time_skipping_env, aws, proxied, proxy, activity_executor, task_queue
):
    ids, group = fleet_setup(aws, count=4)
    sent = SentCommands(proxy)
    real = FleetActivities(proxied)

    @activity.defn(name=FLEET_COMMAND)
    def fleet_command(input: FleetCommandInput) -> FleetCommandResult:
        """The first attempt of batch 1 sends its command, heartbeats it, and dies."""
        if input.batch == 1 and activity.info().attempt == 1:
            ssm = proxied.client("ssm")
            command = send_command_once(
                ssm,
                key=input.key,
                document=input.command.document,
                instance_ids=input.instance_ids,
                parameters=input.command.ssm_parameters,
            )
            progress = FleetCommandProgress(key=input.key, command_id=command.command_id)
            activity.heartbeat(progress.model_dump(mode="json"))
            raise RuntimeError("the worker's process ended")
        return real.fleet_command(input)

    plan = make_plan([fleet(group, min_healthy_percent=50)], [wave("web", ["web"])])
    worker = build_test_worker(
        time_skipping_env.client,
        task_queue,
        proxied,
        activity_executor,
        stand_ins=[fleet_command],
    )
    async with worker:
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        result = await handle.result()
        status = await status_of(handle)

    assert result.phase == ReleasePhase.COMPLETED, status.error
    # Batch 1's command was sent once; its retry found it in the heartbeat, without
    # even looking it up (ListCommands: batch 1's first attempt, then batch 2).
    assert [where for _, _, where in sent.sent] == ["web:b1", "web:b2"]
    assert proxy.calls["ssm:ListCommands"] == 2
    assert instances(status) == [
        (i, n // 2 + 1, InstancePhase.DONE, "Success") for n, i in enumerate(ids)
    ]


async def wave_events(env: WorkflowEnvironment, plan: ReleasePlan) -> list[HistoryEvent]:
    """The history events of the plan's wave ``web`` (its first attempt)."""
    handle = env.client.get_workflow_handle(wave_workflow_id(plan.id, "web", 1))
    return [e async for e in handle.fetch_history_events()]


async def test_a_fleet_in_no_target_group_runs_its_commands_without_touching_load_balancers(
    time_skipping_env, aws, proxied, proxy, make_worker, task_queue
):
    ids = launch(aws, 4, TAGS)
    sent = SentCommands(proxy)
    plan = make_plan([fleet("", target_groups=[], min_healthy_percent=50)], [wave("web", ["web"])])
    async with make_worker(time_skipping_env, proxied):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        result = await handle.result()
        status = await status_of(handle)
        await assert_replays(handle)
        stages = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in await wave_events(time_skipping_env, plan)
            if e.HasField("activity_task_scheduled_event_attributes")
        ]

    assert result.phase == ReleasePhase.COMPLETED, status.error
    # Each batch is one activity, its command: no drain, no return to service to wait for.
    assert [s for s in stages if s.startswith("fleet_")] == [FLEET_COMMAND] * 2
    assert [(i, where) for _, i, where in sent.sent] == [(ids[0:2], "web:b1"), (ids[2:4], "web:b2")]
    assert instances(status) == [
        (i, n // 2 + 1, InstancePhase.DONE, "Success") for n, i in enumerate(ids)
    ]
    # Nothing to drain or bring back: no load balancer was read or written while it ran.
    assert not [c for c in proxy.calls if c.startswith("elasticloadbalancing:")]
    assert [e.kind for e in status.timeline if e.kind.startswith("fleet_")] == [
        "fleet_batch_started",
        "fleet_batch_done",
    ] * 2


async def test_a_fast_fleets_stage_reports_merge_into_fewer_signals_and_lose_no_event(
    time_skipping_env, aws, proxied, make_worker, task_queue
):
    ids, group = fleet_setup(aws, count=6)
    plan = make_plan([fleet(group, batch_size=1, min_healthy_percent=0)], [wave("web", ["web"])])
    async with make_worker(time_skipping_env, proxied):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        result = await handle.result()
        status = await status_of(handle)
        await assert_replays(handle)
        signals = [
            e
            for e in await wave_events(time_skipping_env, plan)
            if e.HasField("signal_external_workflow_execution_initiated_event_attributes")
        ]

    assert result.phase == ReleasePhase.COMPLETED, status.error
    # Four stage reports per batch (leaving, running, verified, done), 24 in all, went to
    # the release in far fewer signals (one a second at most, moto answers at once)...
    assert len(signals) < 12, len(signals)
    # ...and the release's status lost none of what they said.
    assert instances(status) == [
        (i, n + 1, InstancePhase.DONE, "Success") for n, i in enumerate(ids)
    ]
    assert [e.kind for e in status.timeline if e.kind.startswith("fleet_")] == [
        "fleet_batch_started",
        "fleet_batch_done",
    ] * 6
