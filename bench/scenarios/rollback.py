"""Rollback time: a watched alarm goes into ALARM during bake; every target is restored.

The wave deploys all targets at 100 % and bakes watching one CloudWatch alarm, polled every
``bake_interval``. Once the wave is baking, the bench waits a random part of one interval
(an alarm does not fire in step with the poll), sets the alarm to ALARM at t0 and reads the
rest from the histories: the bake activity's completion (the alarm detected) and the last
compensation's completion (every target restored). The plain script restores the same
snapshots after the same deployment, once newest-first one by one (the order of relman's
saga) and once all in parallel on the same number of threads as the worker.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

from bench.fixtures import create_alarm, one_wave_plan, seed_targets
from bench.plain import PlainScript
from bench.releases import ActivityTimes, start, wait_status
from bench.report import load_average, row
from bench.settings import Settings
from bench.stack import Stack, inprocess_worker, new_queue
from models.messages import COMPENSATE_TARGET, WATCH_ALARMS, wave_workflow_id
from models.status import ReleasePhase, WavePhase
from worker.main import ACTIVITY_THREADS

ALARM = "bench-checkout-errors"
BAKE = "30m"
WAVE = "finance"
SEED = 7
# A quiet pause before each release (see bench.scenarios.overhead.SETTLE_SECONDS).
SETTLE_SECONDS = 1.5


async def _relman(
    stack: Stack, queue: str, n: int, interval: int, offset: float
) -> dict[str, float]:
    aws = stack.aws()
    stack.moto.reset()
    targets = seed_targets(aws, n, uuid.uuid4().hex[:6])
    create_alarm(aws, ALARM)
    plan = one_wave_plan(
        targets, traffic=[100], bake=BAKE, alarms=[ALARM], bake_interval=f"{interval}s"
    )
    signed = await asyncio.to_thread(stack.org.release_input, plan)
    await asyncio.sleep(SETTLE_SECONDS)
    handle = await start(stack.client, signed, queue)
    await wait_status(handle, lambda s: s.wave(WAVE).phase == WavePhase.BAKING)
    await asyncio.sleep(offset)
    aws.client("cloudwatch").set_alarm_state(
        AlarmName=ALARM, StateValue="ALARM", StateReason="bench: error rate"
    )
    t0 = time.time()
    result = await handle.result()
    if result.phase != ReleasePhase.ROLLED_BACK:
        raise RuntimeError(f"release {plan.id} ended {result.phase}, not rolled_back")
    wave = await ActivityTimes.of(stack.client, wave_workflow_id(plan.id, WAVE, 1))
    release = await ActivityTimes.of(stack.client, plan.id)
    detected = wave.completed_of(WATCH_ALARMS)[-1]
    restores = release.completed_of(COMPENSATE_TARGET)
    if len(restores) != n:
        raise RuntimeError(f"release {plan.id} restored {len(restores)} of {n} targets")
    return {
        "detection_seconds": detected - t0,
        "restore_seconds": restores[-1] - detected,
        "total_seconds": restores[-1] - t0,
    }


def _plain(stack: Stack, plain: PlainScript, n: int, parallel: bool) -> float:
    aws = stack.aws()
    stack.moto.reset()
    targets = seed_targets(aws, n, uuid.uuid4().hex[:6])
    snapshots = plain.deploy(targets, [100])
    time.sleep(SETTLE_SECONDS)
    began = time.perf_counter()
    plain.restore_all(targets, snapshots, parallel=parallel)
    return time.perf_counter() - began


async def run(stack: Stack, settings: Settings) -> tuple[list[dict[str, Any]], list[dict]]:
    n, interval = settings.rollback_targets, settings.bake_interval_seconds
    chance = random.Random(SEED)
    plain = PlainScript(stack.moto.endpoint, ACTIVITY_THREADS)
    queue = new_queue("rollback")
    runs = []
    try:
        async with inprocess_worker(stack.client, stack.aws(), queue, stack.org):
            for _ in range(settings.runs):
                load = load_average()
                offset = chance.uniform(0, interval)
                relman = await _relman(stack, queue, n, interval, offset)
                sequential = _plain(stack, plain, n, parallel=False)
                parallel = _plain(stack, plain, n, parallel=True)
                runs.append(
                    {
                        "load_avg": load,
                        "alarm_offset_seconds": round(offset, 3),
                        **{k: round(v, 4) for k, v in relman.items()},
                        "plain_sequential_seconds": round(sequential, 4),
                        "plain_parallel_seconds": round(parallel, 4),
                        "restore_ratio_sequential": round(
                            relman["restore_seconds"] / sequential, 3
                        ),
                        "restore_ratio_parallel": round(relman["restore_seconds"] / parallel, 3),
                    }
                )
    finally:
        plain.close()

    def values(key: str) -> list[float]:
        return [r[key] for r in runs]

    budget = f"<= {interval} s + 2x plain restore"
    rows = [
        row(
            f"ALARM at t0 -> detected (poll interval {interval} s)",
            values("detection_seconds"),
            "s",
        ),
        row(f"detected -> all {n} targets restored", values("restore_seconds"), "s"),
        row(f"ALARM at t0 -> all {n} targets restored", values("total_seconds"), "s", budget),
        row(
            "plain boto3 restore, newest first one by one", values("plain_sequential_seconds"), "s"
        ),
        row(
            f"plain boto3 restore, parallel on {ACTIVITY_THREADS} threads",
            values("plain_parallel_seconds"),
            "s",
        ),
        row("restore ratio relman / plain one by one", values("restore_ratio_sequential"), "x"),
        row("restore ratio relman / plain parallel", values("restore_ratio_parallel"), "x", "<= 2"),
    ]
    return runs, rows
