"""Crash scenario for fleets: the worker dies while a batch's SSM command is being sent.

A fleet of six instances, registered in a target group, rolls out in three batches of two.
The proxy holds batch 2's ``SendCommand``; the worker is SIGKILLed, then the call is
forwarded: the command reaches AWS and its answer is lost. The next worker's attempt of
the batch's command must find that command by its idempotency comment and wait for it,
never sending a second one; every instance runs the command exactly once and the whole
fleet ends registered and healthy.

moto's demo seeding does not know fleets, so this scenario seeds its instances and target
group itself and checks the end state without ``scenarios._settle``'s resource describe.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import yaml

from activities.ssm_commands import command_comment
from models.loader import parse_plan
from models.messages import wave_workflow_id
from models.status import ReleaseStatus
from tests.reliability.aws_proxy import Answer, AwsProxy, Call
from tests.reliability.harness import (
    Release,
    Seeded,
    WorkerOptions,
    WorkerProcess,
    approval_problems,
    plan_data,
    timeline_duplicates,
)
from tests.reliability.scenarios import REAL_TIMEOUTS, Outcome, Stack, _wave
from workflows.fleet import command_key

AMI = "ami-12c6146b"  # one of moto's built-in images
APP = "rel-fleet"
PORT = 8080
INSTANCES = 6
BATCH = 2  # three batches; the kill is in the second


def _seed_fleet(aws: Any) -> tuple[list[str], str]:
    """``INSTANCES`` running instances tagged ``app=rel-fleet``, registered on ``PORT`` in
    one target group; their ids and the group's ARN."""
    ec2, elbv2 = aws.client("ec2"), aws.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    group = elbv2.create_target_group(
        Name=APP, Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    reservation = ec2.run_instances(
        ImageId=AMI,
        MinCount=INSTANCES,
        MaxCount=INSTANCES,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "app", "Value": APP}]}],
    )
    ids = sorted(i["InstanceId"] for i in reservation["Instances"])
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": i, "Port": PORT} for i in ids])
    return ids, str(group)


def _health(aws: Any, group: str) -> dict[str, str]:
    """``instance:port`` -> health state of every target registered in ``group``."""
    found = aws.client("elbv2").describe_target_health(TargetGroupArn=group)
    return {
        f"{d['Target']['Id']}:{d['Target'].get('Port')}": d["TargetHealth"]["State"]
        for d in found["TargetHealthDescriptions"]
    }


class SentCommands:
    """Every ``SendCommand`` that reached AWS through the proxy, as relman sent it: its
    comment, the instances it named and the command id AWS gave it. (moto's ListCommands
    is no witness: it lists every instance on a command sent by instance ids.)"""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, call: Call, answer: Answer) -> Answer:
        status, _, body = answer
        if status < 300:
            request = call.json()
            command = yaml.safe_load(body)["Command"]  # JSON is YAML
            with self._lock:
                self.sent.append(
                    {
                        "comment": request.get("Comment"),
                        "instances": request.get("InstanceIds", []),
                        "command_id": command["CommandId"],
                    }
                )
        return answer


async def fleet_crash(stack: Stack) -> Outcome:
    """A worker killed while batch 2's command is sent; each instance runs it once."""
    started, outcome = time.monotonic(), Outcome("fleet_crash")
    aws = stack.moto.aws()
    ids, group = await asyncio.to_thread(_seed_fleet, aws)
    fleet = {
        "name": "web", "kind": "ec2_fleet", "instances": {"tags": {"app": APP}},
        "batch_size": BATCH, "min_healthy_percent": 50, "target_groups": [group],
        "command": {"commands": ["/opt/app/deploy.sh 7.0.0"]}, "rollback": "none",
    }  # fmt: skip
    data = plan_data("rel-crash-fleet", [fleet], [_wave("web", ["web"], bake_interval="1s")])
    directory = stack.home / "fleet_crash"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{data['id']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    seeded = Seeded(parse_plan(data), path, before={}, ssm_versions={})

    proxy = AwsProxy(stack.moto.port)
    proxy.start()
    commands = SentCommands()
    proxy.rewrite(lambda call: call.operation == "SendCommand", commands.record)
    wave_id = wave_workflow_id(data["id"], "web", 1)
    second = command_comment(command_key(wave_id, "web", 2))
    send_batch_2 = proxy.hold(
        "batch 2's SendCommand",
        lambda call: call.operation == "SendCommand" and call.json().get("Comment") == second,
    )
    worker = WorkerProcess(
        "fleet_crash",
        directory,
        stack.temporal,
        proxy.endpoint,
        WorkerOptions(real=True) if REAL_TIMEOUTS else WorkerOptions(),
    )
    await worker.start()
    r = Release("fleet_crash", seeded, stack.temporal, worker, proxy, directory,
                await stack.temporal.client())  # fmt: skip
    r.submitted = await r.submit()

    await r.held(send_batch_2, "fleet_command", "web")
    killed = time.monotonic()
    kill = await r.kill_worker(
        "batch 2 of 3 sending its SSM command: SendCommand landed, answer lost",
        send_batch_2,
        forward=True,
    )

    # Moving again: the next worker's attempt has read batch 2's invocations (it can only
    # start once Temporal has timed the dead worker's attempt out: FLEET_HEARTBEAT_TIMEOUT),
    # as the release's status shows it (fleet reports go at most once a second).
    def batch_2_ended(status: ReleaseStatus) -> bool:
        batch = [i for i in status.target("web").instances if i.batch == 2]
        return bool(batch) and all(i.result for i in batch)

    await r.until("batch 2's command to end", batch_2_ended)
    kill.recovered_seconds = time.monotonic() - killed

    final = await r.result_status()
    outcome.statuses[r.id] = final
    outcome.kills += r.kills
    outcome.problems += [f"{r.id}: {p}" for p in timeline_duplicates(final)]
    outcome.problems += [f"{r.id}: {p}" for p in approval_problems(final, r.approvals_sent)]
    outcome.releases.append(r)
    outcome.figures["instances"] = ids
    outcome.figures["port"] = PORT
    outcome.figures["batch_2_comment"] = second
    outcome.figures["sent"] = list(commands.sent)
    outcome.figures["health"] = await asyncio.to_thread(_health, aws, group)
    outcome.figures["aws_calls"] = dict(proxy.calls)
    r.worker.stop()
    proxy.stop()
    outcome.seconds = time.monotonic() - started
    return outcome
