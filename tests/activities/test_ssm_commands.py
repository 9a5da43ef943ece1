"""activities.ssm_commands against a moto server over HTTP: instances chosen by tags, a
command sent once per idempotency key, every instance's invocation read back."""

from __future__ import annotations

from typing import Any

from activities.ssm_commands import (
    command_comment,
    resolve_instances,
    send_command_once,
    wait_for_invocations,
)

AMI = "ami-12c6146b"  # one of moto's built-in images


def launch(aws: Any, count: int, tags: dict[str, str]) -> list[str]:
    ec2 = aws.client("ec2")
    reservation = ec2.run_instances(
        ImageId=AMI,
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            }
        ],
    )
    return sorted(i["InstanceId"] for i in reservation["Instances"])


def test_instances_are_chosen_by_every_tag_and_sorted(aws: Any) -> None:
    web = launch(aws, 3, {"app": "payments", "role": "web"})
    launch(aws, 2, {"app": "payments", "role": "worker"})
    launch(aws, 1, {"app": "billing", "role": "web"})

    assert resolve_instances(aws.client("ec2"), {"app": "payments", "role": "web"}) == web
    assert resolve_instances(aws.client("ec2"), {"app": "nobody"}) == []


def test_a_command_is_sent_once_per_key_and_read_back_per_instance(aws: Any) -> None:
    ids = launch(aws, 2, {"app": "payments"})
    ssm = aws.client("ssm")
    key = "rel-1:wave-a:migrate:1"

    first = send_command_once(
        ssm,
        key=key,
        document="AWS-RunShellScript",
        instance_ids=ids,
        parameters={"commands": ["echo hi"]},
    )
    again = send_command_once(
        ssm,
        key=key,
        document="AWS-RunShellScript",
        instance_ids=ids,
        parameters={"commands": ["echo hi"]},
    )
    other = send_command_once(
        ssm, key="rel-1:wave-a:migrate:2", document="AWS-RunShellScript", instance_ids=ids
    )

    assert not first.already_sent and again.already_sent
    assert again.command_id == first.command_id
    assert other.command_id != first.command_id
    sent = ssm.list_commands()["Commands"]
    assert [c["Comment"] for c in sent].count(command_comment(key)) == 1

    beats: list[int] = []
    outcome = wait_for_invocations(
        ssm, first.command_id, ids, heartbeat=lambda: beats.append(1), poll_seconds=0
    )
    assert outcome.succeeded
    assert [(i.instance_id, i.status, i.exit_code) for i in outcome.invocations] == [
        (i, "Success", 0) for i in ids
    ]
    assert beats


def test_a_long_key_keeps_its_end_within_the_comment_limit() -> None:
    comment = command_comment("r" * 200 + ":attempt-7")
    assert len(comment) == 100 and comment.endswith(":attempt-7")
