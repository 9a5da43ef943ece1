"""ELBv2 blue/green forward weights against a moto server.

moto accepts any weight and any target group ARN in ModifyListener, so the refusals tested
here are the handler's own checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients
from activities.targets.elbv2_weights import Elbv2WeightsHandler
from models.plan import Elbv2WeightsTarget
from tests.helpers import writes_of


@dataclass
class Stack:
    load_balancer: str
    blue: str
    green: str
    other: str


@pytest.fixture
def stack(aws: AwsClients) -> Stack:
    """A load balancer and three target groups: blue, green and an unrelated one."""
    ec2, elbv2 = aws.client("ec2"), aws.client("elbv2")
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

    return Stack(lb["LoadBalancerArn"], group("blue"), group("green"), group("other"))


def listener(aws: AwsClients, stack: Stack, actions: list[dict[str, Any]]) -> str:
    created = aws.client("elbv2").create_listener(
        LoadBalancerArn=stack.load_balancer, Protocol="HTTP", Port=80, DefaultActions=actions
    )
    return str(created["Listeners"][0]["ListenerArn"])


def describe(aws: AwsClients, listener_arn: str) -> dict[str, Any]:
    answer = aws.client("elbv2").describe_listeners(ListenerArns=[listener_arn])
    return dict(answer["Listeners"][0])


def weights(aws: AwsClients, listener_arn: str) -> dict[str, int]:
    (action,) = describe(aws, listener_arn)["DefaultActions"]
    return {g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}


def target(stack: Stack, listener_arn: str, green: str | None = None) -> Elbv2WeightsTarget:
    return Elbv2WeightsTarget(
        name="web-listener",
        kind="elbv2_weights",
        listener_arn=listener_arn,
        blue_target_group_arn=stack.blue,
        green_target_group_arn=green or stack.green,
    )


def test_snapshot_records_the_default_actions(aws: AwsClients, stack: Stack) -> None:
    arn = listener(aws, stack, [{"Type": "forward", "TargetGroupArn": stack.blue}])

    snapshot = Elbv2WeightsHandler(aws).snapshot(target(stack, arn))

    assert snapshot.state == {
        "default_actions": [{"Type": "forward", "TargetGroupArn": stack.blue}]
    }
    # A plain forward (no weights) is what it is, not "blue 1" (its implied weight).
    assert snapshot.display == "plain forward to blue"


def test_apply_shifts_weights_in_steps_and_reruns_write_nothing(
    aws: AwsClients, stack: Stack
) -> None:
    arn = listener(aws, stack, [{"Type": "forward", "TargetGroupArn": stack.blue}])
    handler, new = Elbv2WeightsHandler(aws), target(stack, arn)
    before = describe(aws, arn)
    snapshot = handler.snapshot(new)

    for percent in (10, 50, 100):
        result = handler.apply(new, snapshot, percent)
        assert result.changed
        assert result.display == f"blue {100 - percent} / green {percent}"
        assert weights(aws, arn) == {stack.blue: 100 - percent, stack.green: percent}

        writes = writes_of(aws.client("elbv2"))
        rerun = handler.apply(new, snapshot, percent)
        assert not rerun.changed
        assert rerun.display == result.display
        assert writes == []

    # Back to the single-group spelling the listener started with.
    assert handler.compensate(new, snapshot).changed
    assert describe(aws, arn) == before


def test_compensate_restores_actions_and_stickiness_exactly(aws: AwsClients, stack: Stack) -> None:
    sticky = {
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": [{"TargetGroupArn": stack.blue, "Weight": 7}],
            "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 600},
        },
    }
    arn = listener(aws, stack, [sticky])
    handler, new = Elbv2WeightsHandler(aws), target(stack, arn)
    before = describe(aws, arn)
    snapshot = handler.snapshot(new)

    handler.apply(new, snapshot, 50)
    (action,) = describe(aws, arn)["DefaultActions"]
    assert action["ForwardConfig"]["TargetGroupStickinessConfig"] == {
        "Enabled": True,
        "DurationSeconds": 600,
    }
    handler.apply(new, snapshot, 100)

    restored = handler.compensate(new, snapshot)
    assert restored.changed
    assert restored.display == "blue 7"
    assert describe(aws, arn) == before

    writes = writes_of(aws.client("elbv2"))
    again = handler.compensate(new, snapshot)
    assert not again.changed
    assert writes == []
    assert describe(aws, arn) == before


def test_missing_target_group_is_refused_before_any_change(aws: AwsClients, stack: Stack) -> None:
    arn = listener(aws, stack, [{"Type": "forward", "TargetGroupArn": stack.blue}])
    missing = stack.green.replace("/green/", "/gone/")
    before = describe(aws, arn)

    with pytest.raises(ApplicationError) as raised:
        Elbv2WeightsHandler(aws).snapshot(target(stack, arn, green=missing))

    assert raised.value.message == (
        f"elbv2 listener {arn}: green target group {missing} does not exist"
    )
    assert raised.value.type == "TargetGroupNotFound"
    assert raised.value.non_retryable
    assert describe(aws, arn) == before


def test_listener_forwarding_elsewhere_is_refused(aws: AwsClients, stack: Stack) -> None:
    arn = listener(aws, stack, [{"Type": "forward", "TargetGroupArn": stack.other}])

    with pytest.raises(ApplicationError) as raised:
        Elbv2WeightsHandler(aws).snapshot(target(stack, arn))

    assert raised.value.message == (
        f"elbv2 listener {arn}: default action forwards to {stack.other}, "
        "not to the blue/green target groups"
    )
    assert raised.value.type == "ListenerNotForwarding"


def test_weight_out_of_range_is_refused(aws: AwsClients, stack: Stack) -> None:
    arn = listener(aws, stack, [{"Type": "forward", "TargetGroupArn": stack.blue}])
    handler, new = Elbv2WeightsHandler(aws), target(stack, arn)

    with pytest.raises(ApplicationError) as raised:
        handler.apply(new, handler.snapshot(new), 150)

    assert raised.value.message == (
        f"elbv2 listener {arn}: weight -50 for {stack.blue} is outside 0..999"
    )
    assert raised.value.type == "InvalidWeight"


# --- drift: someone else changed the weights after relman wrote them ----------------------


def set_weights(aws: AwsClients, stack: Stack, arn: str, blue: int, green: int) -> None:
    groups = [
        {"TargetGroupArn": stack.blue, "Weight": blue},
        {"TargetGroupArn": stack.green, "Weight": green},
    ]
    aws.client("elbv2").modify_listener(
        ListenerArn=arn,
        DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}],
    )


def test_apply_reports_the_forward_weights_it_wrote(aws: AwsClients, stack: Stack) -> None:
    arn = listener(aws, stack, [{"Type": "forward", "TargetGroupArn": stack.blue}])
    handler, new = Elbv2WeightsHandler(aws), target(stack, arn)
    applied = handler.apply(new, handler.snapshot(new), 10)
    assert applied.written == {"forward_weights": {stack.blue: 90, stack.green: 10}}
    assert applied.written_display == "blue 90 / green 10"


def test_compensate_leaves_weights_someone_else_set_alone(aws: AwsClients, stack: Stack) -> None:
    arn = listener(aws, stack, [{"Type": "forward", "TargetGroupArn": stack.blue}])
    handler, new = Elbv2WeightsHandler(aws), target(stack, arn)
    snapshot = handler.snapshot(new)
    applied = handler.apply(new, snapshot, 50)
    set_weights(aws, stack, arn, 80, 20)
    after_them = describe(aws, arn)

    with pytest.raises(ApplicationError) as raised:
        handler.compensate(new, snapshot, applied.written)

    assert (raised.value.type, raised.value.non_retryable) == ("ResourceDrifted", True)
    assert raised.value.message == (
        f"target 'web-listener' (elbv2 listener {arn}): relman wrote blue 50 / green 50, "
        "it now holds blue 80 / green 20; not restoring it to plain forward to blue without --force"
    )
    assert raised.value.details[0] == {
        "target": "web-listener",
        "resource": f"elbv2 listener {arn}",
        "written": "blue 50 / green 50",
        "current": "blue 80 / green 20",
        "snapshot": "plain forward to blue",
    }
    assert describe(aws, arn) == after_them

    assert handler.compensate(new, snapshot, applied.written, force=True).changed
    assert handler.snapshot(new).state == snapshot.state


def test_compensate_restores_untouched_weights_and_a_retry_is_a_no_op(
    aws: AwsClients, stack: Stack
) -> None:
    arn = listener(aws, stack, [{"Type": "forward", "TargetGroupArn": stack.blue}])
    handler, new = Elbv2WeightsHandler(aws), target(stack, arn)
    before = describe(aws, arn)
    snapshot = handler.snapshot(new)
    applied = handler.apply(new, snapshot, 50)

    assert handler.compensate(new, snapshot, applied.written).changed
    assert describe(aws, arn) == before
    writes = writes_of(aws.client("elbv2"))
    assert not handler.compensate(new, snapshot, applied.written).changed
    assert writes == []


def test_a_further_step_refuses_weights_changed_since_the_previous_one(
    aws: AwsClients, stack: Stack
) -> None:
    arn = listener(aws, stack, [{"Type": "forward", "TargetGroupArn": stack.blue}])
    handler, new = Elbv2WeightsHandler(aws), target(stack, arn)
    snapshot = handler.snapshot(new)
    first = handler.apply(new, snapshot, 10)
    assert not handler.apply(new, snapshot, 10, first.written).changed  # a re-run
    set_weights(aws, stack, arn, 100, 0)

    with pytest.raises(ApplicationError) as raised:
        handler.apply(new, snapshot, 50, first.written)

    assert raised.value.type == "ResourceDrifted"
    assert raised.value.message == (
        f"target 'web-listener' (elbv2 listener {arn}): changed by someone else since "
        "relman's previous step: relman wrote blue 90 / green 10, it now holds "
        "blue 100 / green 0; not applying blue 50 / green 50"
    )
    assert weights(aws, arn) == {stack.blue: 100, stack.green: 0}
