"""Crash scenario for job steps: the worker dies while the migration task is being started.

The worker is SIGKILLed with its ``RunTask`` call held at the AWS proxy; the call is then
forwarded (the task starts in AWS, its answer is lost). The next worker's attempt of the job
must find that task by its ``startedBy`` and wait for it: a second migration must never
start.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from activities.jobs import started_by
from tests.reliability.aws_proxy import AwsProxy
from tests.reliability.harness import WorkerOptions, eventually, plan_data, ssm
from tests.reliability.scenarios import Outcome, Stack, _is, _release, _settle, _wave

CLUSTER = "rel-jobs"


def _seed_ecs(aws: Any) -> str:
    """A Fargate task definition on a cluster; the subnet its task runs in."""
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.register_task_definition(
        family="rel-migrate",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        # moto sums container-level sizes even on Fargate.
        containerDefinitions=[{"name": "app", "image": "m:1", "cpu": 256, "memory": 512}],
    )
    return str(aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"])


def _tasks(aws: Any) -> list[dict[str, Any]]:
    ecs = aws.client("ecs")
    arns = [
        arn
        for status in ("RUNNING", "STOPPED")
        for arn in ecs.list_tasks(cluster=CLUSTER, desiredStatus=status)["taskArns"]
    ]
    return ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else []


async def job_crash(stack: Stack) -> Outcome:
    """A worker killed while its migration task starts; the task runs once."""
    started, outcome = time.monotonic(), Outcome("job_crash")
    aws = stack.moto.aws()
    subnet = await asyncio.to_thread(_seed_ecs, aws)
    migrate = {
        "name": "migrate", "kind": "ecs_task", "cluster": CLUSTER,
        "task_definition": "rel-migrate:1", "network": {"subnets": [subnet]},
    }  # fmt: skip
    data = plan_data(
        "rel-crash-job",
        [ssm("j-cfg", "/rel/j/cfg", "7.0.0")],
        [_wave("db", ["j-cfg"], jobs=[{"at": "before", "run": migrate, "compensation": "none"}])],
    )
    proxy = AwsProxy(stack.moto.port)
    proxy.start()
    run_task = proxy.hold("run task", _is("RunTask"))
    r = await _release(stack, "job_crash", data, options=WorkerOptions(), proxy=proxy)

    await r.held(run_task, "run_job", "db")
    await r.kill_worker("starting the migration task: RunTask landed, answer lost", run_task,
                        forward=True)  # fmt: skip

    async def one_task() -> list[dict[str, Any]] | None:
        return await asyncio.to_thread(_tasks, aws) or None

    (task,) = await eventually(one_task, "the migration task to run")
    # The migration ends (exit code 0); the next worker's attempt waits for this task.
    await asyncio.to_thread(
        aws.client("ecs").stop_task, cluster=CLUSTER, task=task["taskArn"], reason="done"
    )
    await _settle(outcome, r, stack, rolled_back=False)
    outcome.releases.append(r)
    outcome.ssm_expected_versions = {"/rel/j/cfg": 1}
    outcome.figures["tasks"] = await asyncio.to_thread(_tasks, aws)
    outcome.figures["started_by"] = started_by(f"{r.wave_id('db')}:migrate")
    r.worker.stop()
    proxy.stop()
    outcome.seconds = time.monotonic() - started
    return outcome
