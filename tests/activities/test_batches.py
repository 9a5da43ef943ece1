"""The batch activities: one activity snapshots a wave's targets, one applies a step to all.

Targets are worked on side by side; a target that fails for good is that target's error
while the others apply; a transient failure retries the batch (each target's apply is a
no-op once done, so nothing is written twice) until the final attempt reports it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import release as release_activities
from activities.release import TargetActivities, TargetsFailed
from activities.targets.base import TargetHandler
from models.messages import (
    ApplyInput,
    ApplyStepInput,
    BatchProgress,
    CompensateInput,
    TargetsInput,
)
from models.plan import SsmParameterTarget
from tests.helpers import history_length, seed, ssm_values, writes_of

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


# --- progress in heartbeats: a retry goes on where the last attempt got --------------------


class Counting(TargetHandler):
    """The real handler; counts the targets each call works on."""

    def __init__(self, real: TargetHandler):
        self.real, self.applied, self.snapshotted = real, [], []

    def snapshot(self, target: Any) -> Any:
        self.snapshotted.append(target.name)
        return self.real.snapshot(target)

    def apply(self, target: Any, snapshot: Any, percent: int, written: Any = None) -> Any:
        self.applied.append(target.name)
        return self.real.apply(target, snapshot, percent, written)

    def compensate(
        self, target: Any, snapshot: Any, written: Any = None, force: bool = False
    ) -> Any:
        return self.real.compensate(target, snapshot, written, force)


def heartbeats(env: ActivityEnvironment) -> list[BatchProgress]:
    beats: list[BatchProgress] = []
    env.on_heartbeat = lambda details: beats.append(BatchProgress.model_validate(details))
    return beats


def test_a_batch_heartbeats_each_target_as_it_finishes(aws):
    seed(aws, {name: "old" for name in NAMES})
    activities = TargetActivities(aws)
    targets = [target(i) for i in range(len(NAMES))]
    step = snapshots_and_step(activities, targets)
    slow, seen = threading.Event(), threading.Event()
    real = activities.handlers["ssm_parameter"]

    class SlowLast(Counting):
        def apply(self, target: Any, snapshot: Any, percent: int, written: Any = None) -> Any:
            if target.name == "p5":
                slow.wait(10)  # until the test saw the others heartbeated as done
            return super().apply(target, snapshot, percent, written)

    activities.handlers["ssm_parameter"] = SlowLast(real)
    env = env_at(1)
    beats: list[BatchProgress] = []

    def beat(details: Any) -> None:
        beats.append(BatchProgress.model_validate(details))
        if len(beats[-1].results) == 5:
            seen.set()
            slow.set()

    env.on_heartbeat = beat
    result = env.run(activities.apply_targets, step)

    assert seen.is_set()
    partial = next(b for b in beats if len(b.results) == 5)
    assert (partial.what, partial.total, partial.percent) == ("apply", 6, 100)
    assert sorted(partial.results) == ["p0", "p1", "p2", "p3", "p4"]
    assert partial.results["p0"] == result.results["p0"].model_dump(mode="json")
    assert len(beats[-1].results) == 6


def test_a_retried_batch_reports_the_targets_done_before_without_calling_aws(aws):
    seed(aws, {name: "old" for name in NAMES})
    activities = TargetActivities(aws)
    real = activities.handlers["ssm_parameter"]
    activities.handlers["ssm_parameter"] = Unreachable(real, NAMES[3])
    targets = [target(i) for i in range(len(NAMES))]
    step = snapshots_and_step(activities, targets)
    first = env_at(1)
    beats = heartbeats(first)
    with pytest.raises(TargetsFailed):
        first.run(activities.apply_targets, step)
    assert sorted(beats[-1].results) == ["p0", "p1", "p2", "p4", "p5"]

    # The next attempt (on another worker, say) starts from the last heartbeat: only p3 is
    # worked on; the others' results are the first attempt's.
    counting = activities.handlers["ssm_parameter"] = Counting(real)
    retry = env_at(2)
    retry.info = dataclasses.replace(
        retry.info, heartbeat_details=[beats[-1].model_dump(mode="json")]
    )
    result = retry.run(activities.apply_targets, step)

    assert counting.applied == ["p3"]
    assert list(result.results) == [t.name for t in targets]  # in the plan's order
    assert not result.errors
    assert result.results["p0"].model_dump(mode="json") == beats[-1].results["p0"]
    assert result.results["p3"].changed
    assert ssm_values(aws, NAMES) == {name: "new" for name in NAMES}
    assert [history_length(aws, name) for name in NAMES] == [2] * len(NAMES)


def test_a_retried_snapshot_batch_keeps_the_snapshots_taken_before(aws):
    seed(aws, {name: "old" for name in NAMES[:2]})
    activities = TargetActivities(aws)
    first = env_at(1)
    beats = heartbeats(first)
    batch = TargetsInput(release_id="r1", targets=[target(0), target(1)])
    taken = first.run(activities.snapshot_targets, batch)
    # Whatever happened since, the retry reports what the resources were before.
    aws.client("ssm").put_parameter(Name=NAMES[0], Value="new", Overwrite=True)
    counting = activities.handlers["ssm_parameter"] = Counting(activities.handlers["ssm_parameter"])
    retry = env_at(2)
    retry.info = dataclasses.replace(
        retry.info, heartbeat_details=[beats[-1].model_dump(mode="json")]
    )

    again = retry.run(activities.snapshot_targets, batch)

    assert counting.snapshotted == []
    assert again == taken
    assert again.snapshots["p0"].display == "old"


def test_a_heartbeat_from_an_older_relman_retries_every_target(aws):
    seed(aws, {name: "old" for name in NAMES[:2]})
    activities = TargetActivities(aws)
    step = snapshots_and_step(activities, [target(0), target(1)])
    counting = activities.handlers["ssm_parameter"] = Counting(activities.handlers["ssm_parameter"])
    retry = env_at(2)
    retry.info = dataclasses.replace(retry.info, heartbeat_details=["1 of 2 done"])

    result = retry.run(activities.apply_targets, step)

    assert sorted(counting.applied) == ["p0", "p1"]
    assert not result.errors


def test_a_restore_heartbeats_while_it_runs(aws, monkeypatch):
    seed(aws, {NAMES[0]: "old"})
    activities = TargetActivities(aws)
    step = snapshots_and_step(activities, [target(0)])
    applied = env_at(1).run(activities.apply_targets, step).results["p0"]
    monkeypatch.setattr(release_activities, "HEARTBEAT_EVERY", 0.02)
    real = activities.handlers["ssm_parameter"]

    class Slow(Counting):
        def compensate(self, *args: Any, **kwargs: Any) -> Any:
            time.sleep(0.3)
            return super().compensate(*args, **kwargs)

    activities.handlers["ssm_parameter"] = Slow(real)
    env = env_at(1)
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    compensate = CompensateInput(
        release_id="r1", target=target(0), snapshot=step.items[0].snapshot, written=applied.written
    )

    assert env.run(activities.compensate_target, compensate).changed
    assert len(beats) >= 3
    assert ssm_values(aws, [NAMES[0]]) == {NAMES[0]: "old"}
