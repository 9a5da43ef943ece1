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
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.release import TargetActivities, TargetsFailed
from activities.targets.base import TargetHandler
from models.messages import ApplyInput, ApplyStepInput, CompensateInput, TargetsInput
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

    def apply(self, target: Any, snapshot: Any, percent: int, written: Any = None) -> Any:
        if target.parameter == self.parameter:
            raise EndpointConnectionError(endpoint_url="https://ssm.example")
        return self.real.apply(target, snapshot, percent, written)

    def compensate(
        self, target: Any, snapshot: Any, written: Any = None, force: bool = False
    ) -> Any:
        return self.real.compensate(target, snapshot, written, force)


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


def test_a_target_changed_by_someone_else_between_steps_is_reported_as_drifted(aws):
    seed(aws, {name: "old" for name in NAMES[:2]})
    activities = TargetActivities(aws)
    step = snapshots_and_step(activities, [target(0), target(1)])
    first = env_at(1).run(activities.apply_targets, step)
    aws.client("ssm").put_parameter(Name=NAMES[1], Value="hotfix", Type="String", Overwrite=True)

    # The next step carries what the previous one wrote.
    written = [
        i.model_copy(update={"written": first.results[i.target.name].written}) for i in step.items
    ]
    result = env_at(1).run(activities.apply_targets, step.model_copy(update={"items": written}))

    assert list(result.results) == ["p0"] and not result.results["p0"].changed
    message = (
        f"target 'p1' (ssm parameter {NAMES[1]}): changed by someone else since relman's "
        "previous step: relman wrote version 2 (new), it now holds version 3 (hotfix); "
        "not applying new"
    )
    assert result.errors == {"p1": message}
    assert result.drifted == {
        "p1": {
            "target": "p1",
            "resource": f"ssm parameter {NAMES[1]}",
            "written": "version 2 (new)",
            "current": "version 3 (hotfix)",
            "snapshot": "old",
            "wanted": "new",
        }
    }
    assert ssm_values(aws, [NAMES[1]]) == {NAMES[1]: "hotfix"}


def test_compensating_a_drifted_target_fails_the_activity_for_good(aws):
    seed(aws, {NAMES[0]: "old"})
    activities = TargetActivities(aws)
    step = snapshots_and_step(activities, [target(0)])
    applied = env_at(1).run(activities.apply_targets, step).results["p0"]
    aws.client("ssm").put_parameter(Name=NAMES[0], Value="hotfix", Type="String", Overwrite=True)
    compensate = CompensateInput(
        release_id="r1", target=target(0), snapshot=step.items[0].snapshot, written=applied.written
    )

    with pytest.raises(ApplicationError) as raised:
        env_at(1).run(activities.compensate_target, compensate)
    assert (raised.value.type, raised.value.non_retryable) == ("ResourceDrifted", True)
    assert raised.value.details[0]["current"] == "version 3 (hotfix)"
    assert ssm_values(aws, [NAMES[0]]) == {NAMES[0]: "hotfix"}

    forced = compensate.model_copy(update={"force": True})
    assert env_at(1).run(activities.compensate_target, forced).changed
    assert ssm_values(aws, [NAMES[0]]) == {NAMES[0]: "old"}
