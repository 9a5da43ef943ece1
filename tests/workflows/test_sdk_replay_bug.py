"""A replay bug of the Temporal SDK (temporalio 1.35.0) that can reach relman's releases.

The history in ``sdk_histories/la-heartbeat-then-updates.json`` was recorded by the small
workflow below, which has no relman code and no nondeterministic call, on the dev server
with its worker killed (SIGKILL) at random moments. It cannot be replayed by the same code:

1. ``run`` starts a local activity that outlasts 80 % of the workflow task timeout, so
   the worker completes that task with no command (a workflow-task heartbeat, events 3-4);
2. the worker dies; two tasks time out (events 6-7, 9-10);
3. a fresh worker takes task 12 with seven Updates sent meanwhile. It has nothing cached,
   so it replays events 1-4 and runs, in *one* activation, the workflow's start and the
   seven Updates: the Python SDK runs Update handlers before ``run``, so the handlers' local
   activities get sequence numbers 1-7 and ``run``'s gets 8 (see the markers' ``seq``);
4. replaying the history later, sdk-core ends the first workflow-task sequence at the
   heartbeat (the Updates' ``accepted_request_sequencing_event_id`` is 11, and the last
   workflow task started before it that did not time out is 3), so ``run`` starts alone
   and takes sequence number 1: the recorded results reach other coroutines, and the
   commands come out in another order:
   ``Timer machine does not handle this event: HistoryEvent(id: 35, ...UpdateCompleted)``.

The conditions, and which of relman's releases meet them, are in CONTRIBUTING.md ("A
replay bug in the SDK"). This test pins the SDK's behaviour: when it fails, the SDK no
longer has the bug; note the SDK version in CONTRIBUTING.md and delete the test.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import WorkflowHistory
from temporalio.common import SearchAttributeKey
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

HISTORY = Path(__file__).parent / "sdk_histories" / "la-heartbeat-then-updates.json"
PHASE = SearchAttributeKey.for_keyword("ProbePhase")


@activity.defn(name="slow_read")
async def slow_read(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "ok"


@workflow.defn(name="Probe")
class Probe:
    """A main loop of local reads and upserts; Updates that each read, then upsert."""

    def __init__(self) -> None:
        self.n = 0
        self.done = False
        self.phase = "new"

    async def read(self, seconds: float) -> None:
        await workflow.execute_local_activity(
            slow_read, seconds, start_to_close_timeout=timedelta(seconds=30)
        )

    def up(self, phase: str) -> None:
        self.phase = phase
        workflow.upsert_search_attributes([PHASE.value_set(phase)])

    @workflow.run
    async def run(self, delays: list[float]) -> list[str]:
        for i, seconds in enumerate(delays):
            await self.read(seconds)
            self.up(f"main-{i}")
            await workflow.sleep(timedelta(seconds=seconds / 2))
        await workflow.wait_condition(lambda: self.done)
        self.up("done")
        return [self.phase]

    @workflow.update
    async def decide(self, seconds: float) -> int:
        await self.read(seconds)
        self.n += 1
        self.up(f"upd-{self.n}")
        return self.n

    @workflow.signal
    def finish(self) -> None:
        self.done = True


def test_the_recorded_run_gave_updates_the_first_local_activity_sequence_numbers() -> None:
    events = json.loads(HISTORY.read_text())["events"]
    types = [e["eventType"].removeprefix("EVENT_TYPE_") for e in events]
    assert types[2:5] == [
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "WORKFLOW_TASK_SCHEDULED",
    ]
    accepted = [e for e in events if e["eventType"].endswith("UPDATE_ACCEPTED")]
    assert {
        e["workflowExecutionUpdateAcceptedEventAttributes"]["acceptedRequestSequencingEventId"]
        for e in accepted
    } == {"11"}
    # The marker right before run's first upsert and timer (events 40-41) is seq 8.
    marker = next(e for e in events if e["eventId"] == "39")
    data = marker["markerRecordedEventAttributes"]["details"]["data"]["payloads"][0]["data"]
    assert json.loads(base64.b64decode(data))["seq"] == 8


async def test_the_sdk_cannot_replay_a_history_it_recorded() -> None:
    history = WorkflowHistory.from_json("la-heartbeat-then-updates", HISTORY.read_text())
    result = await Replayer(
        workflows=[Probe], workflow_runner=UnsandboxedWorkflowRunner()
    ).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None, (
        "the SDK replays this history now: its bug is fixed; note the version in "
        "CONTRIBUTING.md and delete this test"
    )
    assert (
        "Nondeterminism error: Timer machine does not handle this event: "
        "HistoryEvent(id: 35, WorkflowExecutionUpdateCompleted)"
    ) in str(result.replay_failure)
