"""ec2_fleet against a moto server over HTTP: the snapshot of a fleet chosen by tags or by
Auto Scaling group, a batch's command that survives a worker dying in the middle of it
without being sent twice, and the preflight's problems."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.fleet import FleetActivities
from activities.preflight import PreflightActivities
from activities.ssm_commands import command_comment
from activities.targets.ec2_fleet import Ec2FleetHandler
from models.fleet import FleetCommandInput, FleetCommandProgress
from models.plan import Ec2FleetTarget
from models.preflight import preflight_input
from tests.activities.test_ssm_commands import launch
from tests.helpers import make_plan, wave

TAGS = {"app": "payments", "role": "web"}
KEY = "rel-1/wave/web/1:web:b1"


class WorkerDied(Exception):
    """The worker's process ended in the middle of the activity."""


def target_group(aws: Any, name: str = "payments-web") -> str:
    ec2, elbv2 = aws.client("ec2"), aws.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return str(
        elbv2.create_target_group(
            Name=name, Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance"
        )["TargetGroups"][0]["TargetGroupArn"]
    )


def fleet(**fields: Any) -> Ec2FleetTarget:
    return Ec2FleetTarget.model_validate(
        {
            "name": "web",
            "kind": "ec2_fleet",
            "instances": {"tags": TAGS},
            "command": {"commands": ["deploy 2.4.0"]},
            "rollback": "none",
        }
        | fields
    )


def test_a_snapshot_records_the_instances_and_where_each_is_registered(aws: Any) -> None:
    group = target_group(aws)
    ids = launch(aws, 3, TAGS)
    launch(aws, 1, {"app": "payments", "role": "worker"})
    aws.client("elbv2").register_targets(
        TargetGroupArn=group, Targets=[{"Id": ids[0], "Port": 8080}, {"Id": ids[1]}]
    )

    snapshot = Ec2FleetHandler(aws).snapshot(fleet(target_groups=[group]))

    assert snapshot.state["instances"] == ids
    assert snapshot.state["registrations"] == [
        {"target_group": group, "instance_id": ids[0], "port": 8080},
        {"target_group": group, "instance_id": ids[1], "port": 80},
    ]
    assert snapshot.display == "3 instance(s), registered in 1 target group(s)"


def test_a_fleet_chosen_by_auto_scaling_group_is_its_running_members(aws: Any) -> None:
    ec2 = aws.client("ec2")
    template = ec2.create_launch_template(
        LaunchTemplateName="web", LaunchTemplateData={"ImageId": "ami-12c6146b"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    aws.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="web-asg",
        LaunchTemplate={"LaunchTemplateId": template},
        MinSize=2,
        MaxSize=2,
        AvailabilityZones=["us-east-1a"],
    )
    launch(aws, 2, TAGS)  # tagged alike, but not in the group

    snapshot = Ec2FleetHandler(aws).snapshot(fleet(instances={"auto_scaling_group": "web-asg"}))

    members = sorted(
        i["InstanceId"]
        for g in aws.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
        for i in g["Instances"]
    )
    assert len(members) == 2
    assert snapshot.state["instances"] == members


def command_input(ids: list[str]) -> FleetCommandInput:
    return FleetCommandInput(
        release_id="rel-1",
        target=fleet(),
        batch=1,
        instance_ids=ids,
        registrations=[],
        command=fleet().command,
        key=KEY,
        poll_seconds=0.01,
    )


def sent_for(aws: Any, key: str) -> list[str]:
    commands = aws.client("ssm").list_commands()["Commands"]
    return [c["CommandId"] for c in commands if c["Comment"] == command_comment(key)]


@pytest.mark.parametrize("heartbeat_reached_temporal", [True, False])
def test_a_retry_after_the_worker_died_mid_command_sends_it_no_second_time(
    aws: Any, heartbeat_reached_temporal: bool
) -> None:
    ids = launch(aws, 2, TAGS)
    beats: list[Any] = []

    def die_after_sending(*details: Any) -> None:
        beats.append(details[0])
        raise WorkerDied

    first = ActivityEnvironment()
    first.on_heartbeat = die_after_sending
    with pytest.raises(WorkerDied):
        first.run(FleetActivities(aws).fleet_command, command_input(ids))
    [command_id] = sent_for(aws, KEY)
    progress = FleetCommandProgress.model_validate(beats[0])
    assert (progress.key, progress.command_id) == (KEY, command_id)

    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(
        retry.info, attempt=2, heartbeat_details=beats[:1] if heartbeat_reached_temporal else []
    )
    result = retry.run(FleetActivities(aws).fleet_command, command_input(ids))

    assert sent_for(aws, KEY) == [command_id]  # the instances ran it once
    assert result.command_id == command_id
    assert result.already_sent
    assert [(r.instance_id, r.status, r.exit_code) for r in result.results] == [
        (i, "Success", 0) for i in ids
    ]


def test_the_preflight_names_a_missing_group_target_group_document_and_empty_fleet(
    aws: Any,
) -> None:
    group = target_group(aws)
    missing_group = group.replace("payments-web", "gone")
    plan = make_plan(
        [
            fleet(
                name="by-tags",
                instances={"tags": {"app": "nobody"}},
                target_groups=[group, missing_group],
                rollback={"document": "Payments-Rollback"},
            ).model_dump(mode="json"),
            fleet(name="by-group", instances={"auto_scaling_group": "gone-asg"}).model_dump(
                mode="json"
            ),
        ],
        [wave("web", ["by-tags", "by-group"])],
    )

    result = ActivityEnvironment().run(PreflightActivities(aws).preflight, preflight_input(plan))

    assert [(p.path, p.message) for p in result.problems] == [
        ("targets[0]", "ec2 fleet tagged app=nobody: no running instance"),
        ("targets[0]", f"target group {missing_group} does not exist"),
        ("targets[0]", "ssm document Payments-Rollback does not exist"),
        ("targets[1]", "auto scaling group gone-asg does not exist"),
    ]
