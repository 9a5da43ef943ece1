"""``python -m bench``: start the bench stack, run the benchmarks, write results and table.

Without ``--smoke`` the results go to ``bench/results/<name>.json`` and the table into
``docs/benchmarks.md``; ``--smoke`` (tiny sizes, one run) writes to a temporary folder
unless ``--results-dir`` / ``--doc`` say where, so it never overwrites real figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import logging
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.report import BENCHMARKS, load_average, now, render_doc, write_results
from bench.settings import Settings
from bench.stack import open_stack
from common.codec import KEY_FILE_ENV, KEYS_ENV, KMS_KEYS_ENV

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "benchmarks",
        nargs="*",
        metavar="BENCHMARK",
        help=f"which to run (default: all of {', '.join(BENCHMARKS)})",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run each")
    parser.add_argument("--runs", type=int, help=f"runs per figure (default {defaults.runs})")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        help="overhead: targets per wave, comma-separated (default 10,50,200)",
    )
    parser.add_argument("--parked", type=int, help=f"parked releases (default {defaults.parked})")
    parser.add_argument(
        "--parked-runs", type=int, help=f"runs of the parked benchmark ({defaults.parked_runs})"
    )
    parser.add_argument(
        "--cache",
        type=int,
        help="parked: RELMAN_WORKER_MAX_CACHED_WORKFLOWS of each worker (default: the "
        "worker's own default)",
    )
    parser.add_argument(
        "--approval-sample",
        type=int,
        help="parked: approve only this many releases per concurrency level of the cached "
        "and of the evicted ones, leaving the rest parked (default: approve all)",
    )
    parser.add_argument(
        "--workers", type=int, help="parked: workers polling the task queue (default 1)"
    )
    parser.add_argument(
        "--approval-concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        help="approval Updates in flight at once, comma-separated: the parked releases are "
        "approved in equal shares, one per level (default "
        f"{','.join(map(str, defaults.approval_concurrency))})",
    )
    parser.add_argument(
        "--rollback-targets", type=int, help=f"rollback targets ({defaults.rollback_targets})"
    )
    parser.add_argument(
        "--bake-interval",
        type=int,
        dest="bake_interval_seconds",
        help=f"rollback: alarm poll interval in seconds (default {defaults.bake_interval_seconds})",
    )
    parser.add_argument(
        "--multiday-runs", type=int, help=f"runs of the simulation ({defaults.multiday_runs})"
    )
    parser.add_argument(
        "--verify-calls",
        type=int,
        help=f"checks: verify_decision calls per run (default {defaults.verify_calls})",
    )
    parser.add_argument(
        "--preflight-targets",
        type=int,
        help=f"checks: targets preflighted per run (default {defaults.preflight_targets})",
    )
    parser.add_argument(
        "--fleet-instances",
        type=int,
        help=f"fleet: instances rolled out (default {defaults.fleet_instances})",
    )
    parser.add_argument(
        "--profile",
        dest="profile_dir",
        help="parked: record the worker with py-spy (pip install py-spy) while approving",
    )
    parser.add_argument(
        "--payloads",
        choices=("encrypted", "clear"),
        help="encrypted (default: a payload key made for the run, as relman deploys) or "
        "clear (no codec), to measure what encryption costs",
    )
    parser.add_argument("--results-dir", type=Path, help="where the <name>.json files go")
    parser.add_argument("--doc", type=Path, help="the markdown file whose tables to regenerate")
    parser.add_argument(
        "--tag", help="write <name>.<tag>.json (e.g. 'before' a change) instead of <name>.json"
    )
    args = parser.parse_args(argv)
    unknown = [b for b in args.benchmarks if b not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r} (choose from {', '.join(BENCHMARKS)})")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.smoke() if args.smoke else Settings()
    for name in (
        "runs",
        "sizes",
        "parked",
        "parked_runs",
        "cache",
        "workers",
        "approval_concurrency",
        "approval_sample",
        "rollback_targets",
        "bake_interval_seconds",
        "multiday_runs",
        "verify_calls",
        "preflight_targets",
        "fleet_instances",
        "profile_dir",
        "payloads",
    ):
        value = getattr(args, name)
        if value is not None:
            setattr(settings, name, value)
    return settings


async def run(args: argparse.Namespace) -> Path:
    settings = settings_from(args)
    if args.smoke and args.results_dir is None:
        results_dir = Path(tempfile.mkdtemp(prefix="relman-bench-smoke-"))
    else:
        results_dir = args.results_dir or RESULTS_DIR
    doc = args.doc or (results_dir / "benchmarks.md" if args.smoke else DOC)
    log_dir = Path(tempfile.mkdtemp(prefix="relman-bench-logs-"))
    chosen = args.benchmarks or list(BENCHMARKS)
    print(f"bench: {', '.join(chosen)}; load average {load_average()}; logs in {log_dir}")
    use_payload_keys(settings.payloads == "encrypted")
    async with open_stack(log_dir) as stack:
        for name in chosen:
            scenario = importlib.import_module(f"bench.scenarios.{name}")
            started_at, began = now(), time.perf_counter()
            runs, rows = await scenario.run(stack, settings)
            seconds = time.perf_counter() - began
            path = write_results(
                results_dir, name, settings.as_dict(), started_at, seconds, runs, rows, args.tag
            )
            print(f"bench: {name} done in {seconds:.1f} s -> {path}")
            for r in rows:
                print(f"  {r['figure']}: {r['median']:g} {r['unit']}")
    render_doc(doc, results_dir)
    print(f"bench: table written to {doc}")
    return results_dir


def use_payload_keys(encrypted: bool) -> None:
    """Make this process and the workers it starts encrypt payloads with a key of the run's
    own (or none at all), whatever the shell set."""
    for name in (KEYS_ENV, KEY_FILE_ENV, KMS_KEYS_ENV):
        os.environ.pop(name, None)
    if encrypted:
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        os.environ[KEYS_ENV] = f"bench-{secrets.token_hex(4)}={key}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # asyncio.run cancels the run: the stack's servers stop


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # The rollback benchmark's alarm is expected: keep the activity's warning out.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    # botocore keeps 10 connections per client; with more threads urllib3 warns on every
    # extra one (the worker's clients are configured the same way: see docs/benchmarks.md).
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    asyncio.run(run(parse_args(argv)))
