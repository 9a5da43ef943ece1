"""Server work per release: what one release costs the Temporal server, counted from the
histories of every workflow it ran (the release, its waves, the resource locks it took).

Two releases, each alone on a task queue of its own, approved as soon as their gates open:

- ``one target``: one wave of one SSM parameter behind one gate (the parked benchmark's
  release);
- ``demo``: examples/demo.yaml (two departments, three targets, two gates, the second wave
  after the first), as ``relman demo`` runs it.

Counted per release: history events; workflow tasks (each is a round trip worker <-> server
and the unit the server's matcher hands out); activity tasks (another round trip each);
local activities and patch markers (a history event, no round trip); signals and Updates
received; and visibility writes: every workflow's start and close, and every search-attribute
upsert (relman's and the ``TemporalChangeVersion`` one the SDK adds for a patch). The counts
depend on the code, not on the machine: one run is enough.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.fixtures import APPROVER_OF, NEW_VALUE, OLD_VALUE, one_wave_plan
from bench.releases import approve, start, wait_status
from bench.report import load_average, row
from bench.settings import Settings
from bench.stack import Stack, inprocess_worker, new_queue
from bench.trust import APPLICATION
from models.loader import load_plan
from models.plan import ReleasePlan, SsmParameterTarget
from models.status import ReleasePhase, WavePhase

DEMO_PLAN = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
# Visibility is eventually consistent: list the queue's workflows until the count holds.
LIST_SETTLE_SECONDS = 1.0
LIST_LIMIT_SECONDS = 30.0

E = EventType
COUNTED = {
    "workflow tasks": E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    "activity tasks": E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    "signals received": E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    "updates accepted": E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    "timers": E.EVENT_TYPE_TIMER_STARTED,
    "child workflows": E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
    "search-attribute upserts": E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
}
# What the per-release rows report, in order.
FIGURES = [
    "history events",
    "workflow tasks",
    "activity tasks",
    "local activities",
    "patch markers",
    "signals received",
    "updates accepted",
    "search-attribute upserts",
    "visibility writes",
    "workflows",
]


def _demo_plan(stack: Stack) -> ReleasePlan:
    """examples/demo.yaml as the bench's application, its parameters seeded in moto."""
    plan = load_plan(DEMO_PLAN)
    plan = plan.model_copy(
        update={"id": f"bench-demo-{uuid.uuid4().hex[:8]}", "application": APPLICATION}
    )
    for target in plan.targets:
        assert isinstance(target, SsmParameterTarget)
        region = plan.departments[_department_of(plan, target.name)].region
        stack.aws().client("ssm", region).put_parameter(
            Name=target.parameter, Value=OLD_VALUE, Type="String", Overwrite=True
        )
    return plan


def _department_of(plan: ReleasePlan, target: str) -> str:
    return next(w.department for w in plan.waves if target in w.targets)


def _one_target_plan(stack: Stack) -> ReleasePlan:
    name = f"/bench/serverwork/{uuid.uuid4().hex[:8]}"
    stack.aws().client("ssm").put_parameter(
        Name=name, Value=OLD_VALUE, Type="String", Overwrite=True
    )
    return one_wave_plan(
        [{"name": "api", "kind": "ssm_parameter", "parameter": name, "value": NEW_VALUE}],
        approval={"groups": {"finance-cab": 1}},
    )


async def _released(stack: Stack, plan: ReleasePlan, queue: str) -> None:
    """Run ``plan`` to its end, approving each gate as it opens."""
    signed = await asyncio.to_thread(stack.org.release_input, plan)
    handle = await start(stack.client, signed, queue)
    for wave in plan.waves:
        assert wave.approval is not None
        group = next(iter(wave.approval.groups))
        # Queries add nothing to the history: waiting for the gate costs no server work.
        await wait_status(
            handle, lambda st, w=wave.name: st.wave(w).phase == WavePhase.AWAITING_APPROVAL
        )
        approval = await asyncio.to_thread(
            stack.org.approval, plan, wave.name, APPROVER_OF[group], "bench"
        )
        await approve(handle, approval)
    result = await handle.result()
    if result.phase != ReleasePhase.COMPLETED:
        raise RuntimeError(f"release {plan.id} ended {result.phase}: {result.error}")


async def _workflows(client: Client, queue: str) -> list[tuple[str, str]]:
    """(workflow id, run id) of every workflow that ran on ``queue``, once visibility has
    them all."""
    deadline = time.monotonic() + LIST_LIMIT_SECONDS
    seen: list[tuple[str, str]] = []
    while True:
        found = [
            (w.id, w.run_id)
            async for w in client.list_workflows(
                f"TaskQueue = '{queue}' AND ExecutionStatus != 'Running'"
            )
        ]
        if found and len(found) == len(seen):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"visibility did not settle for task queue {queue}")
        seen = found
        await asyncio.sleep(LIST_SETTLE_SECONDS)


async def count_work(client: Client, queue: str) -> dict[str, Any]:
    """The counts over every workflow of ``queue``, in all and by workflow type."""
    total: Counter[str] = Counter()
    by_type: dict[str, Counter[str]] = {}
    for workflow_id, run_id in await _workflows(client, queue):
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        history = await handle.fetch_history()
        counts = count_events(history.events)
        kind = history.events[0].workflow_execution_started_event_attributes.workflow_type.name
        by_type.setdefault(kind, Counter()).update(counts)
        total.update(counts)
    return {"total": dict(total), "by_type": {k: dict(v) for k, v in by_type.items()}}


def count_events(events: Any) -> Counter[str]:
    """What one workflow's history cost the server (see the module's docstring)."""
    counts: Counter[str] = Counter({"workflows": 1, "history events": len(events)})
    for event in events:
        for figure, kind in COUNTED.items():
            if event.event_type == kind:
                counts[figure] += 1
        if event.event_type == E.EVENT_TYPE_MARKER_RECORDED:
            name = event.marker_recorded_event_attributes.marker_name
            counts["patch markers" if name == "core_patch" else "local activities"] += 1
    # The start and the close, and every upsert, each write the visibility record.
    counts["visibility writes"] = 2 + counts["search-attribute upserts"]
    return counts


async def _one(stack: Stack, make: Any) -> dict[str, Any]:
    queue = new_queue("serverwork")
    load = load_average()
    aws = stack.aws()
    stack.moto.reset()
    async with inprocess_worker(stack.client, aws, queue, stack.org):
        plan = await asyncio.to_thread(make, stack)
        await _released(stack, plan, queue)
    return {"load_avg": load, **await count_work(stack.client, queue)}


async def run(stack: Stack, settings: Settings) -> tuple[list[dict[str, Any]], list[dict]]:
    runs = {
        "one target": await _one(stack, _one_target_plan),
        "demo": await _one(stack, _demo_plan),
    }
    rows = []
    for release, counts in runs.items():
        rows += [
            row(f"{release}: {figure} per release", [counts["total"].get(figure, 0)], "")
            for figure in FIGURES
        ]
    return [{"release": r, **c} for r, c in runs.items()], rows
