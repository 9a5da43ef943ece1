"""A release's history stays bounded however large its plan: 40 waves x 25 targets x 4
traffic steps complete on the time-skipping server far below Temporal's limits.

Temporal terminates a workflow whose history reaches 51,200 events (or 50 MB). The release
runs each wave as a child workflow, so the parent records a handful of events per wave and
each child a few per target and step. Activities are mocked by registering plain functions
under the real activity names: this test is about history, not AWS. It takes about ten
seconds of wall time.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.worker import Worker

from activities.locks import LockActivities
from models.locks import RESOURCE_LOCKS, ResourceLocks, ResourceLocksInput, lock_keys
from models.messages import (
    APPLY_TARGET,
    APPLY_TARGETS,
    CHECK_ALARMS,
    COMPENSATE_TARGET,
    NOTIFY,
    NOTIFY_DESTINATIONS,
    SNAPSHOT_TARGET,
    SNAPSHOT_TARGETS,
    WATCH_ALARMS,
    AlarmCheckInput,
    AlarmCheckResult,
    ApplyInput,
    ApplyResult,
    ApplyStepInput,
    ApplyStepResult,
    BakeInput,
    BakeResult,
    CompensateInput,
    CompensateResult,
    NotifyDestinationsInput,
    NotifyDestinationsResult,
    NotifyInput,
    NotifyResult,
    Snapshot,
    SnapshotsResult,
    TargetInput,
    TargetsInput,
)
from models.preflight import PREFLIGHT, PreflightInput, PreflightResult
from models.status import ReleasePhase, TargetPhase, WavePhase
from tests import trust
from tests.helpers import make_plan, start_release, status_of
from worker.main import SANDBOX
from workflows.lock import ResourceLockWorkflow
from workflows.release import ReleaseWorkflow
from workflows.wave import WaveWorkflow

WAVES, TARGETS_PER_WAVE, STEPS = 40, 25, [5, 25, 50, 100]
# Independent chains of waves: every wave but the first of a chain waits for the one before.
CHAINS = 4
# Temporal's hard limit is 51,200 events; relman stays an order of magnitude below it.
PARENT_EVENT_BUDGET = 5_000
CHILD_EVENT_BUDGET = 2_000
# The size limit is 50 MB; most of the parent's bytes are the waves' progress signals.
PARENT_BYTES_BUDGET = 10_000_000


@activity.defn(name=SNAPSHOT_TARGET)
async def snapshot_target(input: TargetInput) -> Snapshot:
    return Snapshot(resource=input.target.resource, exists=True, state={"v": "1"}, display="1")


@activity.defn(name=APPLY_TARGET)
async def apply_target(input: ApplyInput) -> ApplyResult:
    return ApplyResult(
        resource=input.target.resource, changed=True, display=f"2 at {input.percent}%"
    )


@activity.defn(name=SNAPSHOT_TARGETS)
async def snapshot_targets(input: TargetsInput) -> SnapshotsResult:
    return SnapshotsResult(
        snapshots={
            t.name: await snapshot_target(TargetInput(release_id=input.release_id, target=t))
            for t in input.targets
        }
    )


@activity.defn(name=APPLY_TARGETS)
async def apply_targets(input: ApplyStepInput) -> ApplyStepResult:
    return ApplyStepResult(results={i.target.name: await apply_target(i) for i in input.items})


@activity.defn(name=COMPENSATE_TARGET)
async def compensate_target(input: CompensateInput) -> CompensateResult:
    return CompensateResult(resource=input.target.resource, changed=True, display="1")


@activity.defn(name=CHECK_ALARMS)
async def check_alarms(input: AlarmCheckInput) -> AlarmCheckResult:
    return AlarmCheckResult()


@activity.defn(name=WATCH_ALARMS)
async def watch_alarms(input: BakeInput) -> BakeResult:
    return BakeResult(polls=1, elapsed_seconds=input.duration.total_seconds())


@activity.defn(name=NOTIFY)
async def notify(input: NotifyInput) -> NotifyResult:
    return NotifyResult()


@activity.defn(name=NOTIFY_DESTINATIONS)
async def notification_destinations(input: NotifyDestinationsInput) -> NotifyDestinationsResult:
    return NotifyDestinationsResult(configured=False)


@activity.defn(name=RESOURCE_LOCKS)
async def resource_locks(input: ResourceLocksInput) -> ResourceLocks:
    """The real keys, in moto's account and default region (no STS here)."""
    return lock_keys(input.plan, account="123456789012", region="us-east-1")


@activity.defn(name=PREFLIGHT)
async def preflight(input: PreflightInput) -> PreflightResult:
    return PreflightResult(checked=len(input.targets) + len(input.alarms))


def large_plan() -> Any:
    """40 waves of 25 Lambda aliases each (traffic kind: every step applies every target)."""
    targets, waves = [], []
    for w in range(WAVES):
        names = [f"fn-{w:02d}-{t:02d}" for t in range(TARGETS_PER_WAVE)]
        targets += [
            {"name": n, "kind": "lambda_alias", "function": n, "alias": "live", "version": "7"}
            for n in names
        ]
        waves.append(
            {
                "name": f"wave-{w:02d}",
                "department": f"dept-{w % CHAINS}",
                "targets": names,
                "after": [f"wave-{w - CHAINS:02d}"] if w >= CHAINS else [],
                "traffic": STEPS,
                "bake": "30m",
                "alarms": [f"errors-{w:02d}"],
            }
        )
    return make_plan(targets, waves, id=f"rel-large-{uuid.uuid4().hex[:8]}")


async def test_forty_waves_of_twenty_five_targets_stay_far_below_history_limits(
    time_skipping_env, activity_executor
):
    env = time_skipping_env
    queue = f"relman-large-{uuid.uuid4().hex[:8]}"
    plan = large_plan()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[ReleaseWorkflow, WaveWorkflow, ResourceLockWorkflow],
        activities=[
            snapshot_target,
            apply_target,
            snapshot_targets,
            apply_targets,
            compensate_target,
            check_alarms,
            watch_alarms,
            notify,
            notification_destinations,
            trust.policy_activity(),
            resource_locks,
            preflight,
            *(a for a in LockActivities(env.client, None).all() if a.__name__ != "resource_locks"),  # type: ignore[arg-type]
        ],
        workflow_runner=SANDBOX,
        activity_executor=activity_executor,
        max_concurrent_activities=200,
    ):
        handle = await start_release(env.client, plan, queue)
        outcome = await handle.result()
        status = await status_of(handle)
        parent = await handle.fetch_history()
        children = [
            await env.client.get_workflow_handle(
                e.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id
            ).fetch_history()
            for e in parent.events
            if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED
        ]
    elapsed = loop.time() - started

    assert outcome.phase == ReleasePhase.COMPLETED
    assert [w.phase for w in status.waves] == [WavePhase.COMPLETED] * WAVES
    applied = [t for w in status.waves for t in w.targets]
    assert len(applied) == WAVES * TARGETS_PER_WAVE
    assert {(t.phase, t.percent, t.after) for t in applied} == {
        (TargetPhase.APPLIED, 100, "2 at 100%")
    }
    assert len(children) == WAVES
    largest = max(children, key=lambda c: len(c.events))
    sizes = {
        "parent events": len(parent.events),
        "largest child events": len(largest.events),
        "parent bytes": sum(e.ByteSize() for e in parent.events),
        "largest child bytes": max(sum(e.ByteSize() for e in c.events) for c in children),
    }
    assert sizes["parent events"] < PARENT_EVENT_BUDGET, sizes
    assert sizes["largest child events"] < CHILD_EVENT_BUDGET, sizes
    assert sizes["parent bytes"] < PARENT_BYTES_BUDGET, sizes
    print(f"\n{WAVES}x{TARGETS_PER_WAVE}x{len(STEPS)} in {elapsed:.1f} s: {sizes}")
