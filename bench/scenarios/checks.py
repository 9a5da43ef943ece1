"""What relman checks per decision and per target, timed on their own.

- Signature verification (issue 13): ``models.signing.verify_decision`` — pure, in this
  process, as an approval's Update validator runs it — called ``verify_calls`` times on one
  approval signed by ``ssh-keygen``, against the bench's policy; and
  ``models.messages.check_decision``, the validator's whole check (rebuild the payload from
  the input, compare, verify). Signing one decision with ``ssh-keygen -Y sign`` (what the
  CLI does before it sends) is timed too.
- AWS preflight (issue 12): ``bench.preflight.measure`` against the bench's moto, one target
  at a time (half SSM parameters, half Lambda aliases).
- Checks per bake interval (issue 16): ``bench.probes.measure``, one probe of each check
  kind (``http`` against a local endpoint, ``lambda_invoke`` and ``metric`` against the
  bench's moto) as a baking wave makes it, ``probe_rounds`` times: wall and CPU time.
- Resource locks (issue 12): ``lock_releases`` releases of one SSM parameter each, signed
  first and then started at once on the dev server with the real worker in this process;
  from each release's history, how long its ``request_locks`` activity took (a free lock
  is one workflow start; a held one an update-with-start) and how long it waited to be
  picked up. They then deploy and end, letting their locks go. Beside them, the floor: as
  many bare workflow starts sent at once, on a queue no worker polls.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle

from bench.fixtures import APPROVER_OF, one_wave_plan, seed_targets
from bench.preflight import measure
from bench.probes import measure as measure_probes
from bench.releases import ActivityTimes, start
from bench.report import load_average, median, percentile, row
from bench.settings import Settings
from bench.stack import Stack, inprocess_worker, new_queue
from bench.trust import sign_all
from models.locks import REQUEST_LOCKS
from models.messages import check_decision
from models.policy import load_policy
from models.signing import plan_digest, verify_decision
from models.status import ReleasePhase

WAVE = "finance"
APPROVER = APPROVER_OF["finance-cab"]
# Signatures made per run to time ssh-keygen (each a process of its own).
SIGNATURES = 20


def _timed(call: Any, count: int) -> list[float]:
    seconds = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    return seconds


def _verification(stack: Stack, calls: int) -> dict[str, float]:
    org = stack.org
    policy = load_policy(org.policy_path)
    plan = one_wave_plan(
        [{"name": "api", "kind": "ssm_parameter", "parameter": "/bench/checks", "value": "2"}],
        approval={"groups": {"finance-cab": 1}},
    )
    digest = plan_digest(plan)
    signing = _timed(lambda: org.approval(plan, WAVE, APPROVER, comment="bench"), SIGNATURES)
    approval = org.approval(plan, WAVE, APPROVER, comment="bench")
    assert approval.signed is not None
    now = approval.signed.payload.issued_at
    verify = _timed(
        lambda: verify_decision(
            approval.signed,
            policy,
            release_id=plan.id,
            plan_digest=digest,
            action="approve",
            wave=WAVE,
            now=now,
        ),
        calls,
    )
    check = _timed(
        lambda: check_decision(
            "approve", approval, policy, release_id=plan.id, plan_digest=digest, now=now
        ),
        calls,
    )
    return {
        "verify_p50_ms": median(verify) * 1000,
        "verify_p99_ms": percentile(verify, 99) * 1000,
        "check_p50_ms": median(check) * 1000,
        "check_p99_ms": percentile(check, 99) * 1000,
        "sign_p50_ms": median(signing) * 1000,
    }


async def _bare_starts(client: Client, count: int) -> list[float]:
    """Seconds each of ``count`` workflow starts sent at once took, on a task queue no worker
    polls: the server's own cost of the one write that takes a free lock, under that load."""
    queue = new_queue("bare")

    async def one() -> tuple[float, WorkflowHandle[Any, Any]]:
        began = time.perf_counter()
        handle = await client.start_workflow(
            "Bare", id=f"{queue}-{uuid.uuid4().hex}", task_queue=queue
        )
        return time.perf_counter() - began, handle

    started = await asyncio.gather(*(one() for _ in range(count)))
    await asyncio.gather(*(handle.terminate() for _, handle in started))
    return [seconds for seconds, _ in started]


async def _locks(stack: Stack, releases: int) -> dict[str, float]:
    """Start ``releases`` one-target releases at once; their lock acquisition times (ms),
    and what as many bare workflow starts at once cost the server alone."""
    bare = await _bare_starts(stack.client, releases)
    aws = stack.aws()
    stack.moto.reset()
    targets = seed_targets(aws, releases, uuid.uuid4().hex[:6])
    plans = [one_wave_plan([t]) for t in targets]
    inputs = await asyncio.to_thread(sign_all, stack.org.release_input, plans)
    queue = new_queue("locks")
    async with inprocess_worker(stack.client, aws, queue, stack.org):
        handles = await asyncio.gather(*(start(stack.client, i, queue) for i in inputs))
        results = await asyncio.gather(*(h.result() for h in handles))
    failed = [r for r in results if r.phase != ReleasePhase.COMPLETED]
    if failed:
        raise RuntimeError(f"releases did not complete: {failed[:3]}")
    asked, waited = [], []
    for handle in handles:
        times = await ActivityTimes.of(stack.client, handle.id)
        [(sid, scheduled)] = [
            (sid, at) for sid, (kind, at) in times.scheduled.items() if kind == REQUEST_LOCKS
        ]
        asked.append(times.completed[sid] - scheduled)
        waited.append(times.started[sid] - scheduled)
    return {
        "request_p50_ms": median(asked) * 1000,
        "request_p99_ms": percentile(asked, 99) * 1000,
        "waited_p50_ms": median(waited) * 1000,
        "waited_p99_ms": percentile(waited, 99) * 1000,
        "bare_p50_ms": median(bare) * 1000,
        "bare_p99_ms": percentile(bare, 99) * 1000,
    }


async def run(stack: Stack, settings: Settings) -> tuple[list[dict[str, Any]], list[dict]]:
    runs = []
    for _ in range(settings.runs):
        load = load_average()
        verification = await asyncio.to_thread(_verification, stack, settings.verify_calls)
        preflight = await asyncio.to_thread(
            measure, stack.moto, settings.preflight_targets, settings.preflight_rounds
        )
        probes = await asyncio.to_thread(measure_probes, stack.moto, settings.probe_rounds)
        locks = await _locks(stack, settings.lock_releases)
        runs.append(
            {
                "load_avg": load,
                **{k: round(v, 4) for k, v in verification.items()},
                "preflight_p50_ms": preflight["per_target_ms"]["median"],
                "preflight_p99_ms": preflight["per_target_ms"]["p99"],
                "preflight_by_kind": preflight["by_kind"],
                **{f"locks_{k}": round(v, 2) for k, v in locks.items()},
                "probes_by_kind": probes["by_kind"],
                "probes_interval_ms": probes["interval_ms"],
                "probes_interval_cpu_ms": probes["interval_cpu_ms"],
            }
        )

    def values(key: str) -> list[float]:
        return [r[key] for r in runs]

    n, targets, lock_count = (
        settings.verify_calls,
        settings.preflight_targets,
        settings.lock_releases,
    )
    rounds = targets * settings.preflight_rounds
    kinds = sorted(runs[0]["preflight_by_kind"])

    def both(label: str, key: str) -> list[dict[str, Any]]:
        """The p50 and p99 rows of ``label`` (``{}`` where the percentile goes)."""
        return [row(label.format(p), values(f"{key}_{p}_ms"), "ms") for p in ("p50", "p99")]

    rows = [
        *both(f"verify_decision, {{}} ({n} calls)", "verify"),
        *both(f"check_decision (the validator's check), {{}} ({n} calls)", "check"),
        row(f"ssh-keygen -Y sign, one decision, p50 ({SIGNATURES} signatures)",
            values("sign_p50_ms"), "ms"),
        *both(f"preflight per target, {{}} ({rounds} preflights)", "preflight"),
        *both(f"request_locks per release, {{}} ({lock_count} started at once)", "locks_request"),
        *both(f"request_locks: scheduled -> picked up by the worker, {{}} ({lock_count} at once)",
              "locks_waited"),
        *both(f"the server alone: a bare workflow start, {{}} ({lock_count} at once)",
              "locks_bare"),
    ]  # fmt: skip
    for kind in kinds:
        calls = runs[0]["preflight_by_kind"][kind]["aws_calls"]
        rows.append(
            row(
                f"preflight per {kind} target, p50 ({calls} AWS calls)",
                [r["preflight_by_kind"][kind]["median_ms"] for r in runs],
                "ms",
            )
        )
    probes = settings.probe_rounds
    for kind in runs[0]["probes_by_kind"]:
        for figure, key in (("p50", "median_ms"), ("p99", "p99_ms"), ("CPU p50", "cpu_median_ms")):
            rows.append(
                row(
                    f"check probe, {kind}, {figure} ({probes} probes)",
                    [r["probes_by_kind"][kind][key] for r in runs],
                    "ms",
                )
            )
    rows += [
        row("checks per bake interval, one check of each kind: wall time",
            values("probes_interval_ms"), "ms"),
        row("checks per bake interval, one check of each kind: worker CPU",
            values("probes_interval_cpu_ms"), "ms"),
    ]  # fmt: skip
    return runs, rows
