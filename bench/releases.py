"""Starting releases, waiting for them, and reading times from their histories."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import TypedSearchAttributes

from client.service import PLAN_DIGEST_MEMO, start_search_attributes
from common.search_attributes import SA_TARGETS
from models.messages import DecisionInput, ReleaseInput
from models.status import ReleaseStatus
from workflows.release import ReleaseWorkflow

POLL_SECONDS = 0.02
WAIT_LIMIT_SECONDS = 120.0
UPDATE_ATTEMPTS = 5


async def start(
    client: Client, input: ReleaseInput, queue: str, visibility: bool = True
) -> WorkflowHandle[Any, Any]:
    """Start ``input`` (a plan and its signed submission, ``bench.trust``) as ``relman
    submit`` does, minus the overlap check and RelmanTargets.

    The caller signs first, as the CLI signs before it connects: the time to sign is not
    part of what a benchmark times from the start.

    ``visibility`` gives it relman's search attributes (the time-skipping server has none).
    RelmanTargets is left out: at 20 characters a key, a plan of more than about 88 targets
    exceeds the server's 2,048-byte limit for one search attribute value, and it is only
    written at the start, so leaving it out changes nothing the workflow does.
    """
    plan = input.plan
    assert input.submission is not None
    extra: dict[str, Any] = {"memo": {PLAN_DIGEST_MEMO: input.submission.payload.plan_digest}}
    if visibility:
        pairs = start_search_attributes(plan).search_attributes
        extra["search_attributes"] = TypedSearchAttributes(
            [p for p in pairs if p.key != SA_TARGETS]
        )
    return await client.start_workflow(
        ReleaseWorkflow.run, input, id=plan.id, task_queue=queue, **extra
    )


async def approve(handle: WorkflowHandle[Any, Any], approval: DecisionInput) -> float:
    """Send the signed ``approval`` and check that it satisfied its gate; the wall time
    (epoch seconds) at which the Update returned.

    On a loaded machine the Update's RPC may time out before the workflow task runs; the
    same update id asks again and gets the first result (the server deduplicates).
    """
    for attempt in range(1, UPDATE_ATTEMPTS + 1):
        try:
            result = await handle.execute_update(
                ReleaseWorkflow.approve,
                approval,
                id=f"approve:{approval.wave}:{approval.approver}",
            )
            break
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            if attempt == UPDATE_ATTEMPTS:
                raise
    if not result.satisfied:
        raise RuntimeError(f"release {handle.id}: gate not satisfied: {result.message}")
    return time.time()


async def wait_status(
    handle: WorkflowHandle[Any, Any], predicate: Any, limit: float = WAIT_LIMIT_SECONDS
) -> ReleaseStatus:
    """Poll the status query until ``predicate(status)`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        status: ReleaseStatus = await handle.query(ReleaseWorkflow.status)
        if predicate(status):
            return status
        if loop.time() > deadline:
            raise TimeoutError(f"release {handle.id} never reached the expected state: {status}")
        await asyncio.sleep(POLL_SECONDS)


class WaveStages:
    """When a wave got going, from its history (epoch seconds, server clock): the wave
    started, a worker picked up its first workflow task and completed it, and its first
    activity started."""

    def __init__(self, started: float, first_task: float, first_task_done: float, activity: float):
        self.started = started
        self.first_task = first_task
        self.first_task_done = first_task_done
        self.activity = activity

    @classmethod
    async def of(cls, client: Client, workflow_id: str) -> WaveStages:
        found: dict[int, float] = {}
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        for event in history.events:
            if event.event_type not in found:
                found[event.event_type] = event.event_time.ToMicroseconds() / 1e6
        return cls(
            found[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED],
            found[EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED],
            found[EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED],
            found[EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED],
        )


class ActivityTimes:
    """When each activity of one workflow was scheduled, started and completed, by activity
    type: epoch seconds of the server's clock (this machine's), from the workflow's history."""

    def __init__(self) -> None:
        self.scheduled: dict[int, tuple[str, float]] = {}
        self.started: dict[int, float] = {}
        self.completed: dict[int, float] = {}

    @classmethod
    async def of(cls, client: Client, workflow_id: str) -> ActivityTimes:
        times = cls()
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        for event in history.events:
            when = event.event_time.ToMicroseconds() / 1e6
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attributes = event.activity_task_scheduled_event_attributes
                times.scheduled[event.event_id] = (attributes.activity_type.name, when)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                scheduled = event.activity_task_started_event_attributes.scheduled_event_id
                times.started[scheduled] = when
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
                times.completed[scheduled] = when
        return times

    def completed_of(self, kind: str) -> list[float]:
        """Completion times of the activities of type ``kind``, earliest first."""
        return sorted(at for sid, at in self.completed.items() if self.scheduled[sid][0] == kind)
