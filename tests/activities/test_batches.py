"""The batch activities: one activity snapshots a wave's targets, one applies a step to all.

Targets are worked on side by side; a target that fails for good is that target's error
while the others apply; a transient failure retries the batch (each target's apply is a
no-op once done, so nothing is written twice) until the final attempt reports it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from temporalio.testing import ActivityEnvironment

from activities.release import TargetActivities, TargetsFailed
from activities.targets.base import TargetHandler
from models.messages import ApplyInput, ApplyStepInput, TargetsInput
from models.plan import SsmParameterTarget
from tests.helpers import seed, ssm_values, writes_of

NAMES = [f"/batch/p{i}" for i in range(6)]
RESERVED = "/aws/batch/flag"  # AWS refuses to write under /aws: a permanent failure


def target(i: int, parameter: str | None = None) -> SsmParameterTarget:
    return SsmParameterTarget(
        name=f"p{i}", kind="ssm_parameter", parameter=parameter or NAMES[i], value="new"
    )


def env_at(attempt: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    return env


class Unreachable(TargetHandler):
    """The real handler, except that writes of ``parameter`` cannot reach AWS."""

    def __init__(self, real: TargetHandler, parameter: str):
        self.real, self.parameter = real, parameter

    def snapshot(self, target: Any) -> Any:
        return self.real.snapshot(target)

    def apply(self, target: Any, snapshot: Any, percent: int) -> Any:
        if target.parameter == self.parameter:
            raise EndpointConnectionError(endpoint_url="https://ssm.example")
        return self.real.apply(target, snapshot, percent)

    def compensate(self, target: Any, snapshot: Any) -> Any:
        return self.real.compensate(target, snapshot)


def snapshots_and_step(activities: TargetActivities, targets: list[SsmParameterTarget]):
    snaps = env_at(1).run(
        activities.snapshot_targets, TargetsInput(release_id="r1", targets=targets)
    )
    assert not snaps.errors
    return ApplyStepInput(
        items=[
            ApplyInput(release_id="r1", target=t, snapshot=snaps.snapshots[t.name]) for t in targets
        ],
        final_attempt=3,
    )


def test_a_step_applies_every_target_and_a_retry_writes_nothing(aws):
    seed(aws, {name: "old" for name in NAMES})
    activities = TargetActivities(aws)
    targets = [target(i) for i in range(len(NAMES))]
    step = snapshots_and_step(activities, targets)
    assert list(step.items[0].snapshot.state.items()) == [
        ("version", 1), ("type", "String"), ("value", "old")
    ]  # fmt: skip

    result = env_at(1).run(activities.apply_targets, step)
    assert list(result.results) == [t.name for t in targets]  # in the plan's order
    assert not result.errors
    assert ssm_values(aws, NAMES) == {name: "new" for name in NAMES}

    writes = writes_of(aws.client("ssm"))
    again = env_at(2).run(activities.apply_targets, step)
    assert writes == []
    assert {r.changed for r in again.results.values()} == {False}


def test_a_target_that_fails_for_good_is_its_own_error_and_the_others_apply(aws):
    seed(aws, {name: "old" for name in NAMES[:2]})
    activities = TargetActivities(aws)
    targets = [target(0), target(5, RESERVED), target(1)]
    step = snapshots_and_step(activities, targets)

    result = env_at(1).run(activities.apply_targets, step)
    assert list(result.results) == ["p0", "p1"]
    assert list(result.errors) == ["p5"]
    assert result.errors["p5"] == (
        f"ssm:PutParameter on ssm parameter {RESERVED} failed: AccessDeniedException: "
        f"No access to reserved parameter name: {RESERVED}."
    )
    assert ssm_values(aws, NAMES[:2]) == {NAMES[0]: "new", NAMES[1]: "new"}


def test_a_transient_failure_retries_the_batch_until_the_final_attempt_reports_it(aws):
    seed(aws, {name: "old" for name in NAMES[:3]})
    activities = TargetActivities(aws)
    activities.handlers["ssm_parameter"] = Unreachable(
        activities.handlers["ssm_parameter"], NAMES[1]
    )
    targets = [target(0), target(1), target(2)]
    step = snapshots_and_step(activities, targets)

    with pytest.raises(TargetsFailed) as raised:
        env_at(1).run(activities.apply_targets, step)
    assert str(raised.value) == (
        "apply failed for 1 of 3 target(s), retrying: p1: Could not connect to the endpoint "
        'URL: "https://ssm.example"'
    )
    # The others were applied meanwhile, and are not written again on the next attempt.
    assert ssm_values(aws, [NAMES[0], NAMES[2]]) == {NAMES[0]: "new", NAMES[2]: "new"}
    writes = writes_of(aws.client("ssm"))
    result = env_at(3).run(activities.apply_targets, step)
    assert writes == []
    assert list(result.results) == ["p0", "p2"]
    assert result.errors == {"p1": 'Could not connect to the endpoint URL: "https://ssm.example"'}
    assert ssm_values(aws, [NAMES[1]]) == {NAMES[1]: "old"}


def test_a_snapshot_that_cannot_be_read_is_that_targets_error(aws):
    activities = TargetActivities(aws)
    odd = SsmParameterTarget(name="bad", kind="ssm_parameter", parameter="/x", value="v")
    activities.handlers.pop("ssm_parameter")
    result = env_at(1).run(
        activities.snapshot_targets, TargetsInput(release_id="r1", targets=[odd])
    )
    assert result.snapshots == {}
    assert result.errors == {
        "bad": "target 'bad': kind 'ssm_parameter' is not supported by this worker"
    }
