"""Orchestration overhead: one wave of N targets through relman vs a plain boto3 script.

The wave shifts traffic 50 -> 100 % with no bake, no gate and no window: what is left is
relman's own cost (workflow tasks, child workflow, activity dispatch, status signals) on top
of the AWS calls, which both sides make identically and with the same parallelism (the
worker's activity threads; the script's thread pool of the same size).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from temporalio.api.enums.v1 import EventType as E
from temporalio.client import Client

from bench.fixtures import one_wave_plan, seed_targets
from bench.plain import PlainScript
from bench.releases import start
from bench.report import load_average, median, row
from bench.settings import Settings
from bench.stack import CountingAwsClients, Stack, inprocess_worker, new_queue
from models.messages import wave_workflow_id
from models.status import ReleasePhase
from worker.main import ACTIVITY_THREADS

TRAFFIC = [50, 100]
WARM_UP_TARGETS = 4
# For about a second after a workflow closes, the dev server hands out workflow tasks and
# signals on a ~50 ms beat instead of at once (measured: N=4 takes 0.85 s back to back and
# 0.22 s after a pause). Each timed run starts after a quiet pause, as a release would.
SETTLE_SECONDS = 1.5


async def _relman(stack: Stack, aws: CountingAwsClients, queue: str, n: int) -> dict[str, Any]:
    stack.moto.reset()
    targets = seed_targets(aws, n, uuid.uuid4().hex[:6])
    plan = one_wave_plan(targets, traffic=TRAFFIC)
    # Signed before the clock starts, as `relman submit` signs before it connects.
    signed = await asyncio.to_thread(stack.org.release_input, plan)
    await asyncio.sleep(SETTLE_SECONDS)
    aws.counter.take()
    began = time.perf_counter()
    handle = await start(stack.client, signed, queue)
    result = await handle.result()
    seconds = time.perf_counter() - began
    if result.phase != ReleasePhase.COMPLETED:
        raise RuntimeError(f"release {plan.id} ended {result.phase}: {result.error}")
    wave_id = wave_workflow_id(plan.id, plan.waves[0].name, 1)
    return {
        "seconds": seconds,
        "calls": sum(aws.counter.take().values()),
        "split": await split(stack.client, plan.id, wave_id),
    }


# Where a release's time goes, from the histories of the release and its wave (event times
# are the server's). The first four are spans of the release's path; the rest are sums over
# the workflow tasks or activities of both workflows, which overlap those spans.
SPLIT = (
    ("client start -> release's first workflow task started", "first_task"),
    ("start checks (policy, resource names, locks, preflight)", "start_checks"),
    ("child start -> wave's first workflow task started", "child_start"),
    ("wave completed -> release completed", "release_end"),
    ("sum: workflow tasks waiting in the task queue", "task_queued"),
    ("sum: workflow tasks running on the worker", "task_running"),
    ("sum: activities waiting in the task queue", "activity_queued"),
    ("sum: activities running (AWS calls)", "activity_running"),
)


# Summed spans: the event that ends one -> (figure, its attributes, the start event's field).
SPANS = {
    E.EVENT_TYPE_WORKFLOW_TASK_STARTED: (
        "task_queued",
        "workflow_task_started_event_attributes",
        "scheduled_event_id",
    ),
    E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: (
        "task_running",
        "workflow_task_completed_event_attributes",
        "started_event_id",
    ),
    E.EVENT_TYPE_ACTIVITY_TASK_STARTED: (
        "activity_queued",
        "activity_task_started_event_attributes",
        "scheduled_event_id",
    ),
    E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: (
        "activity_running",
        "activity_task_completed_event_attributes",
        "started_event_id",
    ),
}


async def split(client: Client, release_id: str, wave_id: str) -> dict[str, float]:
    """The release's time split as SPLIT names it (seconds)."""
    release = (await client.get_workflow_handle(release_id).fetch_history()).events
    wave = (await client.get_workflow_handle(wave_id).fetch_history()).events

    def at(event: Any) -> float:
        return float(event.event_time.ToMicroseconds()) / 1e6

    def first(events: Any, kind: int) -> Any:
        return next(e for e in events if e.event_type == kind)

    out = dict.fromkeys((key for _, key in SPLIT), 0.0)
    task_started = first(release, E.EVENT_TYPE_WORKFLOW_TASK_STARTED)
    child = first(release, E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED)
    out["first_task"] = at(task_started) - at(release[0])
    out["start_checks"] = at(child) - at(task_started)
    out["child_start"] = at(first(wave, E.EVENT_TYPE_WORKFLOW_TASK_STARTED)) - at(child)
    ended = first(release, E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED)
    out["release_end"] = at(release[-1]) - at(ended)
    for events in (release, wave):
        by_id = {e.event_id: e for e in events}
        for e in events:
            spans = SPANS.get(e.event_type)
            if spans is not None:
                key, attributes, earlier = spans
                out[key] += at(e) - at(by_id[getattr(getattr(e, attributes), earlier)])
    return {key: round(value, 4) for key, value in out.items()}


async def _plain(
    stack: Stack, aws: CountingAwsClients, plain: PlainScript, n: int
) -> dict[str, Any]:
    stack.moto.reset()
    targets = seed_targets(aws, n, uuid.uuid4().hex[:6])
    await asyncio.sleep(SETTLE_SECONDS)
    plain.counter.take()
    began = time.perf_counter()
    plain.deploy(targets, TRAFFIC)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "calls": sum(plain.counter.take().values())}


async def run(stack: Stack, settings: Settings) -> tuple[list[dict[str, Any]], list[dict]]:
    aws = stack.aws()
    plain = PlainScript(stack.moto.endpoint, ACTIVITY_THREADS)
    queue = new_queue("overhead")
    runs: list[dict[str, Any]] = []
    try:
        async with inprocess_worker(stack.client, aws, queue, stack.org):
            # Untimed: build boto3 clients, import the sandboxed workflow modules.
            await _relman(stack, aws, queue, WARM_UP_TARGETS)
            await _plain(stack, aws, plain, WARM_UP_TARGETS)
            for n in settings.sizes:
                for i in range(settings.runs):
                    load = load_average()
                    # Alternate which side goes first, so drift in load favours neither.
                    if i % 2 == 0:
                        relman = await _relman(stack, aws, queue, n)
                        baseline = await _plain(stack, aws, plain, n)
                    else:
                        baseline = await _plain(stack, aws, plain, n)
                        relman = await _relman(stack, aws, queue, n)
                    runs.append(
                        {
                            "n": n,
                            "load_avg": load,
                            "relman_seconds": round(relman["seconds"], 4),
                            "plain_seconds": round(baseline["seconds"], 4),
                            "ratio": round(relman["seconds"] / baseline["seconds"], 3),
                            "relman_aws_calls": relman["calls"],
                            "plain_aws_calls": baseline["calls"],
                            "split": relman["split"],
                        }
                    )
    finally:
        plain.close()
    rows = []
    for n in settings.sizes:
        of_n = [r for r in runs if r["n"] == n]
        calls = int(median([r["relman_aws_calls"] for r in of_n]))
        plain_calls = int(median([r["plain_aws_calls"] for r in of_n]))
        rows += [
            row(
                f"N={n}: relman, start to completed ({calls} AWS calls)",
                [r["relman_seconds"] for r in of_n],
                "s",
            ),
            row(
                f"N={n}: plain boto3, {ACTIVITY_THREADS} threads ({plain_calls} AWS calls)",
                [r["plain_seconds"] for r in of_n],
                "s",
            ),
            row(
                f"N={n}: ratio relman / plain",
                [r["ratio"] for r in of_n],
                "x",
                "<= 1.5 at N=50" if n == 50 else "",
            ),
        ]
        rows += [
            row(f"N={n} split: {label}", [r["split"][key] for r in of_n], "s")
            for label, key in SPLIT
        ]
    return runs, rows
