"""A fleet rolled out in place: N instances in batches of 10 % through relman vs a plain
boto3 script making the same calls in the same batch order.

Both sides, per batch: read the batch's target health, deregister it, read it again
(drained), look up whether the batch's command was sent (ListCommands; relman's idempotency
lookup), send the command to the batch, read every instance's invocation, register the
batch again and read its health (healthy). Before the first batch, both choose the
instances by tag and read the target group's registrations (relman's snapshot). moto
drains, runs and heals at once, so what is left is relman's own cost: the release and
wave workflows, three activities per batch, and the status reports. The wave has no
checks, alarms or bake: the cost of checks per bake interval is the ``checks`` benchmark's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import boto3
from botocore.config import Config

from bench.fixtures import one_wave_plan
from bench.releases import start
from bench.report import load_average, median, row
from bench.settings import Settings
from bench.stack import (
    AWS_MAX_ATTEMPTS,
    CallCounter,
    CountingAwsClients,
    Stack,
    inprocess_worker,
    new_queue,
)
from models.status import ReleasePhase

AMI = "ami-12c6146b"  # one of moto's built-in images
BATCH = "10%"
PORT = 8080
# See bench.scenarios.overhead: a quiet pause before each timed run.
SETTLE_SECONDS = 1.5


def seed_fleet(aws: Any, count: int, app: str) -> tuple[list[str], str]:
    """``count`` running instances tagged ``app``, registered in one target group."""
    ec2, elbv2 = aws.client("ec2"), aws.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    group = elbv2.create_target_group(
        Name=app[:32], Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    reservation = ec2.run_instances(
        ImageId=AMI,
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "app", "Value": app}]}],
    )
    ids = sorted(i["InstanceId"] for i in reservation["Instances"])
    for start_at in range(0, count, 100):
        elbv2.register_targets(
            TargetGroupArn=group,
            Targets=[{"Id": i, "Port": PORT} for i in ids[start_at : start_at + 100]],
        )
    return ids, group


def fleet_target(app: str, group: str) -> dict[str, Any]:
    return {
        "name": "fleet",
        "kind": "ec2_fleet",
        "instances": {"tags": {"app": app}},
        "batch_size": BATCH,
        "min_healthy_percent": 90,
        "target_groups": [group],
        "command": {"commands": ["/opt/app/deploy.sh 2.4.0"]},
        "rollback": "none",
    }


class PlainFleetScript:
    """The baseline: boto3 clients made once, one batch after the other."""

    def __init__(self, endpoint: str):
        session = boto3.Session()
        config = Config(retries={"max_attempts": AWS_MAX_ATTEMPTS, "mode": "standard"})
        self.counter = CallCounter()
        self.ec2, self.elbv2, self.ssm = (
            self.counter.attach(session.client(s, endpoint_url=endpoint, config=config))
            for s in ("ec2", "elbv2", "ssm")
        )

    def _health(self, group: str, ids: list[str]) -> dict[str, str]:
        found = self.elbv2.describe_target_health(
            TargetGroupArn=group, Targets=[{"Id": i, "Port": PORT} for i in ids]
        )["TargetHealthDescriptions"]
        return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in found}

    def deploy(self, app: str, group: str, key: str) -> None:
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": "tag:app", "Values": [app]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        )
        ids = sorted(
            i["InstanceId"] for p in pages for r in p["Reservations"] for i in r["Instances"]
        )
        self.elbv2.describe_target_health(TargetGroupArn=group)
        size = max(1, -(-len(ids) * int(BATCH.rstrip("%")) // 100))
        for number, first in enumerate(range(0, len(ids), size), start=1):
            batch = ids[first : first + size]
            targets = [{"Id": i, "Port": PORT} for i in batch]
            self._health(group, batch)
            self.elbv2.deregister_targets(TargetGroupArn=group, Targets=targets)
            self._health(group, batch)
            comment = f"relman:{key}:b{number}"
            self.ssm.list_commands(InstanceId=batch[0])
            command = self.ssm.send_command(
                DocumentName="AWS-RunShellScript",
                InstanceIds=batch,
                Comment=comment,
                Parameters={"commands": ["/opt/app/deploy.sh 2.4.0"]},
            )["Command"]["CommandId"]
            for instance in batch:
                answer = self.ssm.get_command_invocation(CommandId=command, InstanceId=instance)
                if answer["Status"] != "Success":
                    raise RuntimeError(f"{instance}: {answer['Status']}")
            self.elbv2.register_targets(TargetGroupArn=group, Targets=targets)
            self._health(group, batch)


async def _relman(stack: Stack, aws: CountingAwsClients, queue: str, n: int) -> dict[str, Any]:
    stack.moto.reset()
    app = f"bench-fleet-{uuid.uuid4().hex[:6]}"
    _, group = await asyncio.to_thread(seed_fleet, aws, n, app)
    # The bake interval bounds how often a stage polls AWS; moto answers at once anyway.
    plan = one_wave_plan([fleet_target(app, group)], bake_interval="1s")
    signed = await asyncio.to_thread(stack.org.release_input, plan)
    await asyncio.sleep(SETTLE_SECONDS)
    aws.counter.take()
    began = time.perf_counter()
    handle = await start(stack.client, signed, queue)
    result = await handle.result()
    seconds = time.perf_counter() - began
    if result.phase != ReleasePhase.COMPLETED:
        raise RuntimeError(f"release {plan.id} ended {result.phase}: {result.error}")
    return {"seconds": seconds, "calls": sum(aws.counter.take().values())}


async def _plain(stack: Stack, aws: Any, plain: PlainFleetScript, n: int) -> dict[str, Any]:
    stack.moto.reset()
    app = f"bench-fleet-{uuid.uuid4().hex[:6]}"
    _, group = await asyncio.to_thread(seed_fleet, aws, n, app)
    await asyncio.sleep(SETTLE_SECONDS)
    plain.counter.take()
    began = time.perf_counter()
    await asyncio.to_thread(plain.deploy, app, group, uuid.uuid4().hex)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "calls": sum(plain.counter.take().values())}


async def run(stack: Stack, settings: Settings) -> tuple[list[dict[str, Any]], list[dict]]:
    aws = stack.aws()
    plain = PlainFleetScript(stack.moto.endpoint)
    queue = new_queue("fleet")
    n = settings.fleet_instances
    runs: list[dict[str, Any]] = []
    async with inprocess_worker(stack.client, aws, queue, stack.org):
        # Untimed: build boto3 clients, import the sandboxed workflow modules.
        await _relman(stack, aws, queue, 10)
        await _plain(stack, aws, plain, 10)
        for i in range(settings.runs):
            load = load_average()
            # Alternate which side goes first, so drift in load favours neither.
            if i % 2 == 0:
                relman = await _relman(stack, aws, queue, n)
                baseline = await _plain(stack, aws, plain, n)
            else:
                baseline = await _plain(stack, aws, plain, n)
                relman = await _relman(stack, aws, queue, n)
            runs.append(
                {
                    "n": n,
                    "load_avg": load,
                    "relman_seconds": round(relman["seconds"], 4),
                    "plain_seconds": round(baseline["seconds"], 4),
                    "ratio": round(relman["seconds"] / baseline["seconds"], 3),
                    "relman_aws_calls": relman["calls"],
                    "plain_aws_calls": baseline["calls"],
                }
            )
    calls = int(median([r["relman_aws_calls"] for r in runs]))
    plain_calls = int(median([r["plain_aws_calls"] for r in runs]))
    rows = [
        row(
            f"{n} instances in batches of {BATCH}: relman, start to completed ({calls} AWS calls)",
            [r["relman_seconds"] for r in runs],
            "s",
        ),
        row(
            f"{n} instances in batches of {BATCH}: plain boto3 ({plain_calls} AWS calls)",
            [r["plain_seconds"] for r in runs],
            "s",
        ),
        row("fleet: ratio relman / plain", [r["ratio"] for r in runs], "x", "<= 1.3"),
    ]
    return runs, rows
