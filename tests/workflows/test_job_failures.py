"""Jobs that fail or whose outcome is unknown, seen by the real worker over HTTP.

The worker reaches moto through the fault-injecting proxy (``tests.reliability.aws_proxy``),
which rewrites moto's answers into what moto cannot produce: a task whose container exited
3, an SSM invocation that ``Failed``, a Lambda function error, an ``AccessDenied`` while the
worker watches a task it started. A failed job fails its wave (``on_failure`` applies) and
the saga runs the compensating jobs of the jobs that succeeded; a job whose outcome is
unknown is treated as applied: its compensating job runs, or the rollback stops for an
operator naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from activities.aws import AwsClients
from client.views import StatusView
from models.jobs import JobPhase
from models.messages import TargetActionInput, WaveActionInput, wave_workflow_id
from models.status import ReleasePhase, WavePhase
from tests.activities.test_jobs import CLUSTER, ecs_job, lambda_job
from tests.activities.test_ssm_commands import launch
from tests.helpers import (
    make_plan,
    seed,
    signed_update,
    ssm,
    ssm_values,
    start_release,
    status_of,
    wait_for,
    wave,
)
from tests.reliability.aws_proxy import Answer, AwsProxy, Call, aws_error
from tests.workflows.test_jobs import command, kinds, render, sent_scripts
from tests.workflows.test_rollback import refusal
from workflows.release import ReleaseWorkflow

PARAM = "/payments/api/version"
DB_HOSTS = {"app": "payments", "role": "db-host"}
CACHE_HOSTS = {"app": "payments", "role": "cache"}
MIGRATE = {
    "at": "before",
    "run": command("migrate", "migrate up"),
    "compensation": command("migrate-down", "migrate down"),
}


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


def operation(name: str, where: Callable[[Call], bool] = lambda call: True) -> Any:
    return lambda call: call.operation == name and where(call)


def json_answer(change: Callable[[dict[str, Any]], None]) -> Callable[[Call, Answer], Answer]:
    def rewrite(call: Call, answer: Answer) -> Answer:
        status, headers, body = answer
        data = json.loads(body)
        change(data)
        return status, headers, json.dumps(data).encode()

    return rewrite


def exits(code: int) -> Callable[[dict[str, Any]], None]:
    """DescribeTasks: every stopped task's containers exited ``code``."""

    def change(data: dict[str, Any]) -> None:
        for task in data.get("tasks", []):
            if task.get("lastStatus") == "STOPPED":
                for container in task["containers"]:
                    container["exitCode"] = code

    return change


class TaskStopper:
    """Stops each task of the cluster once it runs, as ECS does when its container exits."""

    def __init__(self, aws: AwsClients):
        self.ecs = aws.client("ecs")
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(0.05):
            for arn in self.ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]:
                self.ecs.stop_task(cluster=CLUSTER, task=arn, reason="Essential container exited")

    def __enter__(self) -> TaskStopper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def task_states(aws: AwsClients) -> list[str]:
    ecs = aws.client("ecs")
    arns = [
        arn
        for status in ("RUNNING", "STOPPED")
        for arn in ecs.list_tasks(cluster=CLUSTER, desiredStatus=status)["taskArns"]
    ]
    return [t["lastStatus"] for t in ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]]


def ecs_run(aws: AwsClients, name: str) -> dict[str, Any]:
    """A Fargate job running the ``migrate:1`` task definition (seeded here)."""
    spec = ecs_job(aws)
    assert spec.network is not None
    return {
        "name": name,
        "kind": "ecs_task",
        "cluster": CLUSTER,
        "task_definition": "migrate:1",
        "network": {"subnets": spec.network.subnets},
        "container": "app",
        "command": ["reindex"],
    }


# --- jobs that fail -----------------------------------------------------------------------------


def failing_ecs(aws: AwsClients, proxy: AwsProxy) -> dict[str, Any]:
    proxy.rewrite(operation("DescribeTasks"), json_answer(exits(3)))
    return ecs_run(aws, "reindex")


def failing_ssm(aws: AwsClients, proxy: AwsProxy) -> dict[str, Any]:
    (cache,) = launch(aws, 1, CACHE_HOSTS)

    def failed(data: dict[str, Any]) -> None:
        data |= {"Status": "Failed", "StatusDetails": "Failed", "ResponseCode": 2}
        data["StandardErrorContent"] = "reindex: relation users_v2 does not exist"

    proxy.rewrite(
        operation("GetCommandInvocation", lambda call: call.json()["InstanceId"] == cache),
        json_answer(failed),
    )
    return {
        "name": "reindex",
        "kind": "ssm_command",
        "document": "AWS-RunShellScript",
        "parameters": {"commands": ["reindex"]},
        "instance_tags": CACHE_HOSTS,
    }


def failing_lambda(aws: AwsClients, proxy: AwsProxy) -> dict[str, Any]:
    def function_error(call: Call, answer: Answer) -> Answer:
        status, headers, _ = answer
        error = {"errorMessage": "reindex crashed at row 7", "errorType": "RuntimeError"}
        return status, headers | {"X-Amz-Function-Error": "Unhandled"}, json.dumps(error).encode()

    proxy.rewrite(
        lambda call: call.path.startswith("/2015-03-31/functions/backfill/invocations"),
        function_error,
    )
    return {"name": "reindex", "kind": "lambda_job", "function": "backfill"}


def expected_failure(kind: str, aws: AwsClients) -> str:
    if kind == "ecs_task":
        (arn,) = aws.client("ecs").list_tasks(cluster=CLUSTER, desiredStatus="STOPPED")["taskArns"]
        return f"task {arn} stopped (Essential container exited); exit codes app=3"
    if kind == "ssm_command":
        (cache,) = sorted(
            i["InstanceId"]
            for r in aws.client("ec2").describe_instances(
                Filters=[{"Name": "tag:role", "Values": ["cache"]}]
            )["Reservations"]
            for i in r["Instances"]
        )
        (sent,) = [
            c
            for c in aws.client("ssm").list_commands()["Commands"]
            if c["Comment"].endswith(":reindex")
        ]
        return f"command {sent['CommandId']} on 1 instance(s): {cache}=Failed"
    return (
        "lambda function backfill failed (Unhandled): "
        '{"errorMessage": "reindex crashed at row 7", "errorType": "RuntimeError"}'
    )


@pytest.mark.parametrize(
    "kind, failing",
    [("ecs_task", failing_ecs), ("ssm_command", failing_ssm), ("lambda_job", failing_lambda)],
)
async def test_a_job_failing_in_aws_fails_its_wave_and_the_saga_undoes_the_jobs_before_it(
    time_skipping_env, aws, proxied, proxy, moto_endpoint, make_worker, task_queue, kind, failing
):
    launch(aws, 1, DB_HOSTS)
    seed(aws, {PARAM: "2.3.1"})
    lambda_job(aws, moto_endpoint)
    reindex = failing(aws, proxy)
    plan = make_plan(
        [ssm("api-version", PARAM, "2.4.0")],
        [
            wave(
                "db",
                ["api-version"],
                traffic=[50, 100],
                bake_interval="1s",  # how often the worker polls the task
                jobs=[MIGRATE, {"at": 50, "run": reindex, "compensation": "none"}],
            )
        ],
    )
    with TaskStopper(aws) if kind == "ecs_task" else contextlib.nullcontext():
        async with make_worker(time_skipping_env, proxied):
            handle = await start_release(time_skipping_env.client, plan, task_queue)
            result = await handle.result()
            status = await status_of(handle)

    failure = expected_failure(kind, aws)
    assert result.phase == ReleasePhase.ROLLED_BACK
    assert status.error == f"wave db: job reindex failed: {failure}"
    assert proxy.rewritten  # the worker met the failure through the proxy
    # The parameter shifted to 50 % is restored, then the migration is undone (newest
    # first); the failed job is no applied change: nothing undoes it.
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.3.1"}
    assert [s for _, s in sent_scripts(aws) if s.startswith("migrate")] == [
        "migrate up",
        "migrate down",
    ]
    assert [(j.name, j.phase) for j in status.wave("db").jobs] == [
        ("migrate", JobPhase.COMPENSATED),
        ("reindex", JobPhase.FAILED),
    ]
    assert [k for k, _ in kinds(status, "job_failed", "target_restored", "job_compensated")] == [
        "job_failed",
        "target_restored",
        "job_compensated",
    ]
    if kind == "ecs_task":
        assert task_states(aws) == ["STOPPED"]


# --- jobs whose outcome is unknown --------------------------------------------------------------

DENIED = "User is not authorized to perform: ecs:DescribeTasks"


def unknown_plan(aws: AwsClients, proxy: AwsProxy, compensation: Any) -> Any:
    """A migration task whose worker loses sight of it: DescribeTasks denied once it runs."""
    launch(aws, 1, DB_HOSTS)
    seed(aws, {PARAM: "2.3.1"})
    migrate = ecs_run(aws, "migrate")
    proxy.rewrite(
        operation("DescribeTasks"),
        lambda call, answer: aws_error(call, "AccessDeniedException", DENIED),
    )
    job: dict[str, Any] = {"at": "before", "run": migrate}
    if compensation is not None:
        job["compensation"] = compensation
    return make_plan(
        [ssm("api-version", PARAM, "2.4.0")], [wave("db", ["api-version"], jobs=[job])]
    )


UNKNOWN_CAUSE = (
    "DescribeTasks on ecs task migrate:1 on cluster jobs failed: AccessDeniedException: " + DENIED
)


async def test_a_job_whose_outcome_is_unknown_is_undone_by_its_compensating_job(
    time_skipping_env, aws, proxied, proxy, make_worker, task_queue
):
    plan = unknown_plan(aws, proxy, command("migrate-down", "migrate down"))
    async with make_worker(time_skipping_env, proxied):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        result = await handle.result()
        status = await status_of(handle)

    assert result.phase == ReleasePhase.ROLLED_BACK
    assert status.error == f"wave db: job migrate outcome unknown: {UNKNOWN_CAUSE}"
    # The migration task was started (and never stopped by relman: moto moves it towards
    # STOPPED by itself as it is described) and may have run: the down-migration ran.
    assert len(task_states(aws)) == 1
    assert [s for _, s in sent_scripts(aws)] == ["migrate down"]
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.3.1"}
    (job,) = status.wave("db").jobs
    assert (job.phase, job.outcome_unknown) == (JobPhase.COMPENSATED, True)
    assert job.summary == f"outcome unknown: {UNKNOWN_CAUSE}"
    assert (
        "job db/migrate (ecs_task, before the first traffic step): compensated - "
        f"outcome unknown: {UNKNOWN_CAUSE}"
    ) in render(StatusView(status))
    assert kinds(status, "job_outcome_unknown", "job_started", "job_compensated") == [
        ("job_started", "job migrate: ecs task migrate:1 on cluster jobs"),
        (
            "job_outcome_unknown",
            f"job migrate: outcome unknown ({UNKNOWN_CAUSE}); it may have run, so a rollback "
            "treats it as applied",
        ),
        (
            "job_started",
            "compensating job migrate-down of migrate (its outcome was unknown: it may have run)",
        ),
        ("job_compensated", kinds(status, "job_compensated")[0][1]),
    ]
    assert kinds(status, "job_compensated")[0][1].startswith(
        "job migrate undone by migrate-down: command "
    )


async def test_a_job_whose_outcome_is_unknown_without_compensation_stops_the_rollback(
    time_skipping_env, aws, proxied, proxy, make_worker, task_queue
):
    plan = unknown_plan(aws, proxy, None)
    async with make_worker(time_skipping_env, proxied):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        status = await wait_for(handle, lambda s: s.phase == ReleasePhase.ROLLBACK_FAILED)
        (job,) = status.wave("db").jobs
        assert (job.phase, job.outcome_unknown) == (JobPhase.ROLLBACK_FAILED, True)
        assert status.error == "rollback of 1 resource(s) failed; see targets and jobs"
        assert kinds(status, "rollback_failed") == [
            (
                "rollback_failed",
                "job migrate: its outcome is unknown (it may have run) and it has no "
                "compensating job: check it, undo it by hand if it ran, then relman "
                f"skip-target {plan.id} --target migrate",
            )
        ]
        assert len(task_states(aws)) == 1
        assert (
            "job db/migrate (ecs_task, before the first traffic step): rollback_failed - "
            f"outcome unknown: {UNKNOWN_CAUSE} - its outcome is unknown (it may have run) and "
            "it has no compensating job: check it, undo it by hand if it ran, then relman "
            f"skip-target {plan.id} --target migrate"
        ) in render(StatusView(status))
        reply = await signed_update(
            handle,
            ReleaseWorkflow.skip_target,
            TargetActionInput(actor="alice", target="migrate", reason="task stopped by hand"),
        )
        assert reply.message == "rollback of job migrate skipped"
        result = await handle.result()

    assert result.phase == ReleasePhase.ROLLED_BACK_WITH_SKIPS
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.3.1"}


async def test_a_job_running_when_its_wave_workflow_is_terminated_is_undone(
    dev_env, aws, proxied, proxy, make_worker, task_queue
):
    # The dev server: the time-skipping server does not tell a parent its child was terminated.
    launch(aws, 1, DB_HOSTS)
    seed(aws, {PARAM: "2.3.1"})
    migrate = {
        "at": "before",
        "run": ecs_run(aws, "migrate"),
        "compensation": command("migrate-down", "migrate down"),
    }
    plan = make_plan(
        [ssm("api-version", PARAM, "2.4.0")],
        [wave("db", ["api-version"], bake_interval="1s", jobs=[migrate])],
    )
    watching = proxy.hold("describe the migration task", operation("DescribeTasks"))
    async with make_worker(dev_env, proxied):
        handle = await start_release(dev_env.client, plan, task_queue)
        assert await asyncio.to_thread(watching.arrived.wait, 30)
        await wait_for(handle, lambda s: s.wave("db").jobs[0].phase == JobPhase.RUNNING)
        child = wave_workflow_id(plan.id, "db", 1)
        await dev_env.client.get_workflow_handle(child).terminate("node lost")
        watching.drop()
        result = await handle.result()
        status = await status_of(handle)

    # Nobody learnt how the migration ended: it may have run, so it is undone.
    assert result.phase == ReleasePhase.ROLLED_BACK
    assert status.error == f"wave db: wave workflow {child} was terminated"
    reason = "wave db's workflow ended while it ran"
    assert kinds(status, "job_outcome_unknown") == [
        (
            "job_outcome_unknown",
            f"job migrate: outcome unknown ({reason}); it may have run, so a rollback treats it "
            "as applied",
        )
    ]
    (job,) = status.wave("db").jobs
    assert (job.phase, job.outcome_unknown) == (JobPhase.COMPENSATED, True)
    assert [s for _, s in sent_scripts(aws)] == ["migrate down"]
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.3.1"}


async def test_retrying_a_wave_whose_job_outcome_is_unknown_asks_for_force(
    time_skipping_env, aws, proxied, proxy, make_worker, task_queue
):
    plan = unknown_plan(aws, proxy, command("migrate-down", "migrate down"))
    paused = plan.model_copy(
        update={"waves": [plan.waves[0].model_copy(update={"on_failure": "pause"})]}
    )
    async with make_worker(time_skipping_env, proxied):
        handle = await start_release(time_skipping_env.client, paused, task_queue)
        await wait_for(handle, lambda s: s.wave("db").phase == WavePhase.PAUSED)

        # A retry would start the migration again: refused until someone checked it.
        assert await refusal(
            signed_update(
                handle,
                ReleaseWorkflow.retry,
                WaveActionInput(actor="dave", wave="db", reason="try again"),
            )
        ) == (
            "wave 'db': the outcome of job migrate is unknown (it may have run) and a retry "
            "runs it again: check it, then retry with --force, or roll back"
        )
        assert len(task_states(aws)) == 1

        # Forced (after checking): the job runs again, and is unknown again here.
        await signed_update(
            handle,
            ReleaseWorkflow.retry,
            WaveActionInput(actor="dave", wave="db", reason="checked: it never ran", force=True),
        )
        await wait_for(
            handle, lambda s: s.wave("db").phase == WavePhase.PAUSED and len(task_states(aws)) == 2
        )
        await signed_update(
            handle,
            ReleaseWorkflow.rollback,
            WaveActionInput(actor="dave", wave="db", reason="give up"),
        )
        result = await handle.result()

    assert result.phase == ReleasePhase.ROLLED_BACK
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.3.1"}
    assert [s for _, s in sent_scripts(aws)] == ["migrate down"]
