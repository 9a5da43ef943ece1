"""Multi-day simulation: a 14-day, 3-department release under Temporal's time skipping.

finance (Berlin) -> operations (New York) -> apac (Tokyo), each behind an approval gate and
an office-hours window, shifting traffic in steps with day-long bakes; a plan freeze delays
one of finance's steps. The bench starts it on a Friday evening (Berlin), approves each
gate as it opens (no timer runs then, so workflow time stands still until the approval),
and awaits the result, which lets the server skip every window, bake and freeze. The real
activities run against moto. Reported: wall time, and the workflow time it covered.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.testing import WorkflowEnvironment

from bench.fixtures import APPROVER_OF, NEW_VALUE, OLD_VALUE, make_plan
from bench.releases import start
from bench.report import load_average, row
from bench.settings import Settings
from bench.stack import Stack, inprocess_worker, new_queue
from models.plan import ReleasePlan, SsmParameterTarget
from models.status import ReleasePhase, ReleaseStatus
from workflows.release import ReleaseWorkflow

BERLIN, NEW_YORK, TOKYO = "Europe/Berlin", "America/New_York", "Asia/Tokyo"
# How far the driver moves workflow time between looks at the release: like an approver
# who checks every hour, it approves a gate at the first tick the gate is open.
TICK = timedelta(hours=1)
LIMIT_SECONDS = 300.0


def _local(day: date, wall: str, tz: str) -> datetime:
    hour, minute = (int(part) for part in wall.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def _next_friday(after: datetime) -> date:
    today = after.astimezone(ZoneInfo(BERLIN)).date()
    return today + timedelta(days=(4 - today.weekday() - 1) % 7 + 1)


def _plan(prefix: str, friday: date) -> ReleasePlan:
    def office(tz: str, end: str = "17:00") -> dict[str, Any]:
        return {"timezone": tz, "days": "mon-fri", "start": "09:00", "end": end}

    def target(name: str) -> dict[str, Any]:
        parameter = f"/bench/multiday/{prefix}/{name}"
        return {"name": name, "kind": "ssm_parameter", "parameter": parameter, "value": NEW_VALUE}

    tuesday = friday + timedelta(days=4)
    return make_plan(
        [target("fin"), target("ops"), target("apac")],
        [
            {
                "name": "finance",
                "department": "finance",
                "targets": ["fin"],
                "approval": {"groups": {"finance-cab": 1}},
                "window": office(BERLIN),
                "traffic": [10, 50, 100],
                "bake": "1d",
            },
            {
                "name": "operations",
                "department": "operations",
                "targets": ["ops"],
                "after": ["finance"],
                "approval": {"groups": {"ops-leads": 1}},
                "window": office(NEW_YORK),
                "traffic": [25, 100],
                "bake": "2d",
            },
            {
                "name": "apac",
                "department": "apac",
                "targets": ["apac"],
                "after": ["operations"],
                "approval": {"groups": {"apac-leads": 1}},
                "window": office(TOKYO, "18:00"),
                "traffic": [100],
                "bake": "2d",
            },
        ],
        freezes=[
            {
                "start": _local(tuesday, "00:00", BERLIN).isoformat(),
                "end": _local(tuesday, "12:00", BERLIN).isoformat(),
                "reason": "payments batch run",
            }
        ],
    )


def _gate_groups(plan: ReleasePlan, wave: str) -> list[str]:
    approval = plan.wave(wave).approval
    return list(approval.groups) if approval else []


async def _one_run(env: WorkflowEnvironment, stack: Stack) -> dict[str, Any]:
    aws = stack.aws()
    stack.moto.reset()
    prefix = uuid.uuid4().hex[:6]
    friday = _next_friday(await env.get_current_time())
    plan = _plan(prefix, friday)
    ssm = aws.client("ssm")
    for target in plan.targets:
        assert isinstance(target, SsmParameterTarget)
        ssm.put_parameter(Name=target.parameter, Value=OLD_VALUE, Type="String", Overwrite=True)
    submitted = _local(friday, "18:00", BERLIN)
    now = await env.get_current_time()
    if submitted > now:
        await env.sleep(submitted - now)
    queue = new_queue("multiday")
    org = stack.org
    # Signed at workflow time: the time-skipping server's clock runs ahead of this one.
    signed = org.release_input(plan, issued_at=await env.get_current_time())
    async with inprocess_worker(env.client, aws, queue, org):
        began = time.perf_counter()
        handle = await start(env.client, signed, queue, visibility=False)
        approved: set[str] = set()
        ticks = 0
        while True:
            status: ReleaseStatus = await handle.query(ReleaseWorkflow.status)
            if status.finished:
                break
            for pending in status.pending_approvals:
                if pending.wave not in approved:
                    approver = APPROVER_OF[_gate_groups(plan, pending.wave)[0]]
                    # Signed as the approver's CLI signs (off the worker's event loop);
                    # three signatures of a few ms each fall inside the wall time.
                    now = await env.get_current_time()
                    approval = await asyncio.to_thread(
                        org.approval, plan, pending.wave, approver, issued_at=now
                    )
                    await handle.execute_update(ReleaseWorkflow.approve, approval)
                    approved.add(pending.wave)
            # Workflow time moves only here: the server fires the timers due within the
            # tick, running their workflow tasks and activities before it goes on.
            await env.sleep(TICK)
            ticks += 1
            if time.perf_counter() - began > LIMIT_SECONDS:
                raise TimeoutError(f"simulated release {plan.id} did not end")
        outcome = await handle.result()
        wall = time.perf_counter() - began
        status = await handle.query(ReleaseWorkflow.status)
    if outcome.phase != ReleasePhase.COMPLETED:
        raise RuntimeError(f"simulated release {plan.id} ended {outcome.phase}: {outcome.error}")
    assert status.started_at and status.finished_at
    simulated = (status.finished_at - status.started_at) / timedelta(days=1)
    return {
        "wall_seconds": wall,
        "simulated_days": simulated,
        "timeline_events": len(status.timeline),
        "waits": len([e for e in status.timeline if e.kind == "waiting_for_window"]),
        "ticks": ticks,
    }


async def run(stack: Stack, settings: Settings) -> tuple[list[dict[str, Any]], list[dict]]:
    env = await stack.time_skipping()
    runs = []
    for _ in range(settings.multiday_runs):
        load = load_average()
        runs.append({"load_avg": load, **await _one_run(env, stack)})

    def values(key: str) -> list[float]:
        return [r[key] for r in runs]

    rows = [
        row("wall time of the simulated release", values("wall_seconds"), "s"),
        row(
            "workflow time it covered (3 departments, 3 gates, 1 freeze)",
            values("simulated_days"),
            "days",
        ),
        row("window/freeze waits in its timeline", values("waits"), ""),
    ]
    return runs, rows
