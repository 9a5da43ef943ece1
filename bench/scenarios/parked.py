"""Parked releases: many releases waiting at an approval gate on one worker, then approved.

The worker is ``python -m worker`` in a process of its own, so ``/proc/<pid>/status`` VmRSS
is its memory alone. Once every release waits at its gate (counted through visibility), the
bench reads the worker's RSS, then approves them all through the approval Update: an equal
share at each level of ``approval_concurrency`` (Updates in flight at once), one level after
the other. The latency of one approval runs from its Update returning to the first activity
of its wave (the snapshot) starting, as the wave's history records it (server time, same
clock as this machine).

Every release carries its requester's signed submission and every approval its approver's
signature (``bench.trust``). They are signed before the clock of what they belong to starts
(parking, a level's approvals), as the CLI signs before it sends: the figures time the
worker and the server, verification in the workflow included; signing is timed on its own
(``sign_seconds``, and the ``checks`` benchmark).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from bench.fixtures import APPROVER_OF, NEW_VALUE, OLD_VALUE, SEED_THREADS, one_wave_plan
from bench.releases import WaveStages, approve, start
from bench.report import load_average, percentile, row
from bench.settings import Settings
from bench.stack import Stack, WorkerProcess, free_port, new_queue
from bench.trust import Organisation, sign_all
from common.search_attributes import SA_PHASE
from common.stack_state import LOOPBACK
from models.messages import DecisionInput, ReleaseInput, wave_workflow_id
from models.plan import ReleasePlan
from models.status import ReleasePhase
from worker.main import DEFAULT_MAX_CACHED_WORKFLOWS, MAX_CACHED_WORKFLOWS_ENV
from worker.telemetry import METRICS_ADDRESS_ENV

WAVE = "finance"
APPROVER = APPROVER_OF["finance-cab"]
START_CONCURRENCY = 50
# Releases being started at once while parking (see _park).
PARK_BATCH = 250
HISTORY_CONCURRENCY = 50
PARK_LIMIT_SECONDS = 3600.0
# Let the worker's allocator settle after the burst of starts before reading RSS.
SETTLE_SECONDS = 2.0


def _plans(stack: Stack, count: int, prefix: str) -> list[ReleasePlan]:
    """One release per SSM parameter, each with one gated wave."""
    ssm = stack.aws().client("ssm")
    names = [f"/bench/parked/{prefix}/p{i}" for i in range(count)]
    with concurrent.futures.ThreadPoolExecutor(SEED_THREADS) as pool:
        list(
            pool.map(
                lambda n: ssm.put_parameter(Name=n, Value=OLD_VALUE, Type="String", Overwrite=True),
                names,
            )
        )
    return [
        one_wave_plan(
            [{"name": "api", "kind": "ssm_parameter", "parameter": name, "value": NEW_VALUE}],
            approval={"groups": {"finance-cab": 1}},
        )
        for name in names
    ]


async def _bounded(limit: int, calls: list[Any]) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(call: Any) -> Any:
        async with semaphore:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


async def _count(client: Client, queue: str, phase: ReleasePhase) -> int:
    query = f"TaskQueue = '{queue}' AND {SA_PHASE.name} = '{phase.value}'"
    return (await client.count_workflows(query)).count


async def _signed(org: Organisation, plans: list[ReleasePlan]) -> list[ReleaseInput]:
    """Each plan with its requester's signed submission."""
    return await asyncio.to_thread(sign_all, org.release_input, plans)


async def _approvals(org: Organisation, plans: list[ReleasePlan]) -> list[DecisionInput]:
    """The approver's signed approval of each plan's gate."""
    return await asyncio.to_thread(
        sign_all, lambda p: org.approval(p, WAVE, APPROVER, comment="bench"), plans
    )


async def _park(
    client: Client, org: Organisation, plans: list[ReleasePlan], queue: str
) -> tuple[list[WorkflowHandle[Any, Any]], float]:
    """Start every release, at most PARK_BATCH at a time being started (a batch's releases
    all at their gate before the next is started), as a release train's submissions arrive
    over minutes rather than in one instant: 10,000 started at once queue each one's lock
    Updates behind thousands of workflow tasks until they time out and are retried. Each
    batch is signed just before it starts (a signature is good for 10 minutes of workflow
    time): the handles, and the seconds spent signing."""
    handles: list[WorkflowHandle[Any, Any]] = []
    signing = 0.0
    deadline = time.monotonic() + PARK_LIMIT_SECONDS
    for first in range(0, len(plans), PARK_BATCH):
        began = time.perf_counter()
        batch = await _signed(org, plans[first : first + PARK_BATCH])
        signing += time.perf_counter() - began
        handles += await _bounded(
            START_CONCURRENCY, [lambda i=i: start(client, i, queue) for i in batch]
        )
        while await _count(client, queue, ReleasePhase.AWAITING_APPROVAL) < len(handles):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every release reached its gate in {PARK_LIMIT_SECONDS}s")
            await asyncio.sleep(0.2)
    return handles, signing


async def _wave_stages(client: Client, release_id: str) -> WaveStages:
    return await WaveStages.of(client, wave_workflow_id(release_id, WAVE, 1))


# Where an approval's latency goes: (figure, stage it runs from, stage it runs to).
STAGES = [
    ("approval returned -> wave started", "returned", "started"),
    ("wave started -> its first workflow task picked up", "started", "first_task"),
    ("first workflow task picked up -> completed", "first_task", "first_task_done"),
    ("first workflow task completed -> first activity started", "first_task_done", "activity"),
]


def _py_spy() -> str:
    """py-spy, also where it is installed in the bench's own virtual environment (which
    need not be on PATH)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("py-spy", path=path)
    if found is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


def _profile(settings: Settings, worker: WorkerProcess, index: int) -> subprocess.Popen | None:
    """py-spy recording the worker (collapsed stacks, with idle threads left out)."""
    if not settings.profile_dir:
        return None
    out = Path(settings.profile_dir)
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            _py_spy(),
            "record",
            "--pid",
            str(worker.process.pid),
            "--format",
            "raw",
            "--rate",
            "100",
            # Sampled without stopping the worker: a paused worker misses its task timeouts.
            "--nonblocking",
            "--output",
            str(out / f"parked-worker-{index}.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _groups(count: int, cache: int) -> dict[str, list[int]]:
    """Which parked releases (by park order) are still in the workers' caches, which were
    evicted, and which may be either.

    The cache is least-recently-used and each parked release left two workflows in it (the
    release and its resource lock), so about the newest ``cache / 2`` are cached when the
    last one parks. ``cached``: the newest ``cache / 4`` (newest first, approved first, so
    the waves that approvals start evict nothing of theirs); ``evicted``: every release
    with at least ``cache`` newer ones; ``rest``: those in between (approved last,
    untimed)."""
    cached = list(range(count - 1, max(count - 1 - cache // 4, -1), -1))
    evicted = list(range(0, max(0, count - cache)))
    taken = set(cached) | set(evicted)
    return {
        "cached": cached,
        "evicted": evicted,
        "rest": [i for i in range(count) if i not in taken],
    }


async def _approve_all(
    org: Organisation,
    handles: list[WorkflowHandle[Any, Any]],
    plans: list[ReleasePlan],
    level: int,
) -> tuple[list[float], float, float, list[Any]]:
    """Approve ``handles`` with ``level`` Updates in flight and wait for their releases to
    end: when each Update returned, when the first was sent, seconds spent signing (before
    the clock), and the results."""
    signing = time.perf_counter()
    # Signed just before (each signature is good for 10 minutes of workflow time), outside
    # the clock.
    approvals = await _approvals(org, plans)
    signed_in = time.perf_counter() - signing
    first_sent = time.time()
    returned = await _bounded(
        level, [lambda h=h, a=a: approve(h, a) for h, a in zip(handles, approvals, strict=True)]
    )
    results = await asyncio.gather(*(h.result() for h in handles))
    return returned, first_sent, signed_in, results


async def _latencies(
    client: Client, handles: list[WorkflowHandle[Any, Any]], returned: list[float]
) -> dict[str, Any]:
    stages = await _bounded(
        HISTORY_CONCURRENCY, [lambda h=h: _wave_stages(client, h.id) for h in handles]
    )
    latencies = [s.activity - r for s, r in zip(stages, returned, strict=True)]
    times = [{"returned": r, **vars(s)} for s, r in zip(stages, returned, strict=True)]
    return {
        "releases": len(handles),
        "stages_p99": {
            label: percentile([t[b] - t[a] for t in times], 99) for label, a, b in STAGES
        },
        "latency_p50": percentile(latencies, 50),
        "latency_p99": percentile(latencies, 99),
        "latency_max": max(latencies),
    }


async def _one_run(stack: Stack, settings: Settings, index: int) -> dict[str, Any]:
    client, org = stack.client, stack.org
    count = settings.parked
    stack.moto.reset()
    warm, *plans = _plans(stack, count + 1, f"r{index}")
    queue = new_queue("parked")
    cache = settings.cache or DEFAULT_MAX_CACHED_WORKFLOWS
    workers = [
        WorkerProcess(
            stack,
            queue,
            {
                MAX_CACHED_WORKFLOWS_ENV: str(cache),
                METRICS_ADDRESS_ENV: f"{LOOPBACK}:{free_port()}",
            },
        )
        for _ in range(settings.workers)
    ]
    try:
        for worker in workers:
            await worker.ready(client)
        # One release through gate and deploy first, so the worker has imported and built
        # everything it needs: the baseline is a worker in service, not a fresh process.
        (handle,), _ = await _park(client, org, [warm], queue)
        (approval,) = await _approvals(org, [warm])
        await approve(handle, approval)
        await handle.result()
        await asyncio.sleep(SETTLE_SECONDS)
        idle = [w.memory() for w in workers]

        load = load_average()
        began = time.perf_counter()
        handles, sign_submissions = await _park(client, org, plans, queue)
        park_seconds = time.perf_counter() - began - sign_submissions
        await asyncio.sleep(SETTLE_SECONDS)
        parked = [w.memory() for w in workers]
        cached_at_park = sum(w.metric("temporal_sticky_cache_size") for w in workers)

        profiler = _profile(settings, workers[0], index)
        levels = settings.approval_concurrency
        groups = _groups(count, cache * len(workers))
        if settings.approval_sample:
            # Approve a sample of each group (the newest cached, the oldest evicted); the
            # rest stay parked until the stack goes.
            take = settings.approval_sample * len(levels)
            groups = {"cached": groups["cached"][:take], "evicted": groups["evicted"][:take],
                      "rest": []}  # fmt: skip
        sign_approvals = 0.0
        began = time.perf_counter()
        levels_out: dict[int, dict[str, Any]] = {level: {} for level in levels}
        results: list[Any] = []
        # Every cached share first: approving evicted releases brings them and their waves
        # into the cache, which would evict the cached ones still to be approved.
        for group in ("cached", "evicted"):
            for i, level in enumerate(levels):
                out = levels_out[level]
                chosen = groups[group][i :: len(levels)]
                if not chosen:
                    continue
                misses = sum(w.metric("temporal_sticky_cache_miss") for w in workers)
                returned, first_sent, signed_in, done = await _approve_all(
                    org, [handles[j] for j in chosen], [plans[j] for j in chosen], level
                )
                misses = sum(w.metric("temporal_sticky_cache_miss") for w in workers) - misses
                sign_approvals += signed_in
                results += done
                out[group] = {
                    "approvals_per_second": len(chosen) / (max(returned) - first_sent),
                    "cache_misses_per_release": misses / len(chosen),
                    **await _latencies(client, [handles[j] for j in chosen], returned),
                }
        if groups["rest"]:
            rest = groups["rest"]
            _, _, signed_in, done = await _approve_all(
                org, [handles[j] for j in rest], [plans[j] for j in rest], max(levels)
            )
            sign_approvals += signed_in
            results += done
        all_done_seconds = time.perf_counter() - began - sign_approvals
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(60)
        failed = [r for r in results if r.phase != ReleasePhase.COMPLETED]
        if failed:
            raise RuntimeError(f"{len(failed)} releases did not complete: {failed[0]}")
        after = [w.memory() for w in workers]
    finally:
        for worker in workers:
            worker.stop()
    return {
        "releases": count,
        "workers": len(workers),
        "cache": cache,
        "cached_at_park": cached_at_park,
        "load_avg": load,
        # Per worker: the largest of the workers.
        "idle_rss_mb": max(m["rss_kb"] for m in idle) / 1024,
        "parked_rss_mb": max(m["rss_kb"] for m in parked) / 1024,
        "per_release_kb": (sum(m["rss_kb"] for m in parked) - sum(m["rss_kb"] for m in idle))
        / count,
        "peak_rss_mb": max(m["peak_rss_kb"] for m in after) / 1024,
        "park_seconds": round(park_seconds, 3),
        "approved": len(results),
        "all_deployed_seconds": round(all_done_seconds, 3),
        # ssh-keygen signatures, SIGN_THREADS at a time, untimed above: seconds per signature.
        "sign_seconds": round((sign_submissions + sign_approvals) / (2 * count), 4),
        "levels": levels_out,
    }


async def run(stack: Stack, settings: Settings) -> tuple[list[dict[str, Any]], list[dict]]:
    if settings.profile_dir:
        _py_spy()  # before parking a thousand releases, not after
    runs = [await _one_run(stack, settings, i) for i in range(settings.parked_runs)]
    n = settings.parked

    def values(key: str) -> list[float]:
        return [r[key] for r in runs]

    workers = settings.workers
    cache = settings.cache or DEFAULT_MAX_CACHED_WORKFLOWS
    on = f"{workers} workers" if workers > 1 else "one worker"
    rows = [
        row(f"worker RSS with {n} releases parked ({on}, cache {cache} workflows each)",
            values("parked_rss_mb"), "MB", "< 400 MB" if n >= 10000 else ""),
        row("worker RSS per parked release", values("per_release_kb"), "kB"),
        row("worker RSS before parking (after one release)", values("idle_rss_mb"), "MB"),
        row(f"time to start and park {n} releases", values("park_seconds"), "s"),
        row("workflows cached when the last release parked", values("cached_at_park"), ""),
    ]  # fmt: skip
    levels = settings.approval_concurrency
    for level in levels:
        for group in ("cached", "evicted"):
            if group not in runs[0]["levels"][level]:
                continue
            size = runs[0]["levels"][level][group]["releases"]
            share = f"{level} in flight, {size} {group} releases"

            def at(key: str, level: int = level, group: str = group) -> list[float]:
                return [r["levels"][level][group][key] for r in runs]

            rows += [
                row(f"approval returned -> first deploy activity started, p50 ({share})",
                    at("latency_p50"), "s"),
                row(f"approval returned -> first deploy activity started, p99 ({share})",
                    at("latency_p99"), "s", "< 1 s" if level <= 10 else ""),
                row(f"approvals per second ({share})", at("approvals_per_second"), "/s"),
                row(f"workflow cache misses per approved release ({share})",
                    at("cache_misses_per_release"), ""),
            ]  # fmt: skip
            rows += [
                row(f"stage p99: {label} ({share})",
                    [r["levels"][level][group]["stages_p99"][label] for r in runs], "s")
                for label, _, _ in STAGES
            ]  # fmt: skip
    rows += [
        row(
            f"first approval sent -> all {runs[0]['approved']} approved releases completed",
            values("all_deployed_seconds"),
            "s",
        ),
        row("worker peak RSS (VmHWM) after the approvals", values("peak_rss_mb"), "MB"),
    ]
    return runs, rows
