"""Failover in seconds: what a release shows while a batch works, and what it asks of Temporal.

A wave applies a step to all its targets in one activity, which heartbeats every target it
has finished (``BatchProgress``): a retry on another worker goes on from there, and
``relman status`` reads it to show targets as they finish. The real worker runs on the
time-skipping server, AWS in moto; ``tests/reliability`` kills real worker processes.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

from activities.release import TargetActivities
from activities.targets.base import TargetHandler
from client.progress import with_running_progress
from models.messages import APPLY_TARGETS, COMPENSATE_TARGET, SNAPSHOT_TARGETS
from models.status import ReleasePhase, ReleaseStatus, TargetPhase, WavePhase
from tests.helpers import (
    make_plan,
    seed,
    ssm,
    ssm_values,
    start_release,
    status_of,
    wait_for,
    wave,
)
from tests.trust import build_test_worker

PARAMETERS = {"a": "/failover/a", "b": "/failover/b", "c": "/failover/c"}
RESERVED = "/aws/failover/flag"  # AWS refuses to write under /aws: the step fails


class HeldTarget(TargetHandler):
    """The real SSM handler, except that applying ``parameter`` waits for the test."""

    def __init__(self, real: TargetHandler, parameter: str):
        self.real, self.parameter = real, parameter
        self.go = threading.Event()

    def snapshot(self, target: Any) -> Any:
        return self.real.snapshot(target)

    def apply(self, target: Any, snapshot: Any, percent: int, written: Any = None) -> Any:
        if target.parameter == self.parameter:
            self.go.wait(20)
        return self.real.apply(target, snapshot, percent, written)

    def compensate(
        self, target: Any, snapshot: Any, written: Any = None, force: bool = False
    ) -> Any:
        return self.real.compensate(target, snapshot, written, force)


async def test_status_shows_each_target_of_a_running_batch_as_it_finishes(
    time_skipping_env, aws, activity_executor, task_queue
):
    seed(aws, {parameter: "old" for parameter in PARAMETERS.values()})
    plan = make_plan(
        [ssm(name, parameter, "new") for name, parameter in PARAMETERS.items()],
        [wave("only", list(PARAMETERS))],
    )
    batches = TargetActivities(aws)
    held = HeldTarget(batches.handlers["ssm_parameter"], PARAMETERS["b"])
    batches.handlers["ssm_parameter"] = held
    worker = build_test_worker(
        time_skipping_env.client,
        task_queue,
        aws,
        activity_executor,
        stand_ins=[batches.apply_targets],
    )
    async with worker:
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        # What the release knows: the step's targets are being applied.
        deploying = await wait_for(
            handle, lambda s: s.wave("only").targets[0].phase == TargetPhase.APPLYING
        )
        assert [t.phase for t in deploying.wave("only").targets] == [TargetPhase.APPLYING] * 3

        # What status shows: a and c are done (the batch's heartbeat), b still applying.
        async def shown() -> ReleaseStatus:
            while True:
                current = await with_running_progress(
                    time_skipping_env.client, await status_of(handle)
                )
                if current.target("a").phase == TargetPhase.APPLIED:
                    return current
                await asyncio.sleep(0.1)

        live = await asyncio.wait_for(shown(), 10)
        assert [(t.name, t.phase, t.after) for t in live.wave("only").targets] == [
            ("a", TargetPhase.APPLIED, "new"),
            ("b", TargetPhase.APPLYING, None),
            ("c", TargetPhase.APPLIED, "new"),
        ]
        assert ssm_values(aws, list(PARAMETERS.values()))[PARAMETERS["b"]] == "old"
        held.go.set()
        outcome = await handle.result()
        final = await status_of(handle)

    assert outcome.phase == ReleasePhase.COMPLETED
    assert final.wave("only").phase == WavePhase.COMPLETED
    # Once the release ended, status is what the release says.
    assert await with_running_progress(time_skipping_env.client, final) == final


async def test_a_new_release_runs_batches_and_restores_under_a_heartbeat_timeout_of_seconds(
    time_skipping_env, aws, make_worker, task_queue
):
    seed(aws, {PARAMETERS["a"]: "old"})
    plan = make_plan(
        [ssm("a", PARAMETERS["a"], "new"), ssm("bad", RESERVED, "on")],
        [wave("first", ["a"]), wave("second", ["bad"], after=["first"])],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        outcome = await handle.result()

    assert outcome.phase == ReleasePhase.ROLLED_BACK
    timeouts: dict[str, set[timedelta]] = {}
    for workflow_id in (plan.id, f"{plan.id}/first/1", f"{plan.id}/second/1"):
        history = await time_skipping_env.client.get_workflow_handle(workflow_id).fetch_history()
        for event in history.events:
            if event.HasField("activity_task_scheduled_event_attributes"):
                scheduled = event.activity_task_scheduled_event_attributes
                timeout = scheduled.heartbeat_timeout.ToTimedelta()
                timeouts.setdefault(scheduled.activity_type.name, set()).add(timeout)
    six = {timedelta(seconds=6)}
    assert timeouts[SNAPSHOT_TARGETS] == timeouts[APPLY_TARGETS] == six
    assert timeouts[COMPENSATE_TARGET] == six
    assert ssm_values(aws, [PARAMETERS["a"]]) == {PARAMETERS["a"]: "old"}
