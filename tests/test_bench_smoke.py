"""The benchmark suite at tiny sizes (``python -m bench --smoke``), so its code cannot rot.

Only the shape of what it writes is checked: results files with their keys and the
generated tables. Figures are never asserted: they depend on the machine and its load.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import (
    BENCHMARKS,
    COMPARE_END,
    COMPARE_START,
    RESULT_KEYS,
    RESULTS_END,
    RESULTS_START,
    ROW_KEYS,
)

ROOT = Path(__file__).resolve().parent.parent
SMOKE_TIMEOUT_SECONDS = 240
# What each benchmark records per run, besides the load average at its start.
RUN_KEYS = {
    "overhead": {"n", "relman_seconds", "plain_seconds", "ratio", "relman_aws_calls"},
    "parked": {"parked_rss_mb", "per_release_kb", "levels"},
    "rollback": {"detection_seconds", "restore_seconds", "plain_sequential_seconds"},
    "multiday": {"wall_seconds", "simulated_days"},
    "checks": {
        "verify_p50_ms",
        "verify_p99_ms",
        "check_p50_ms",
        "preflight_p50_ms",
        "locks_request_p99_ms",
        "locks_waited_p99_ms",
        "locks_bare_p99_ms",
        "probes_interval_ms",
        "probes_interval_cpu_ms",
    },
    "console": {"release_p95_ms", "approvals_p95_ms"},
    "fleet": {"n", "relman_seconds", "plain_seconds", "ratio", "relman_aws_calls"},
    "serverwork": {"release", "total", "by_type"},
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--results-dir",
            str(out),
            "--doc",
            str(out / "benchmarks.md"),
        ],
        cwd=ROOT,
        check=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
    )
    return out


@pytest.mark.timeout(SMOKE_TIMEOUT_SECONDS + 30)
@pytest.mark.parametrize("name", BENCHMARKS)
def test_smoke_run_writes_results_with_their_keys(smoke: Path, name: str) -> None:
    result = json.loads((smoke / f"{name}.json").read_text())
    assert set(RESULT_KEYS) <= result.keys()
    assert result["benchmark"] == name
    assert result["machine"]["cpu_count"] >= 1
    assert result["runs"]
    for run in result["runs"]:
        assert {"load_avg", *RUN_KEYS[name]} <= run.keys()
        # parked: per approval concurrency, releases still cached and those evicted
        for level in run.get("levels", {}).values():
            assert level
            for group in level.values():
                assert {"latency_p50", "latency_p99", "approvals_per_second"} <= group.keys()
        if name == "serverwork":  # a one-wave release takes at least its release's workflow
            assert run["total"]["workflows"] >= 1
            assert run["total"]["history events"] > run["total"]["workflow tasks"] > 0
    assert result["rows"]
    for row in result["rows"]:
        assert set(ROW_KEYS) <= row.keys()


@pytest.mark.timeout(SMOKE_TIMEOUT_SECONDS + 30)
def test_smoke_run_regenerates_the_tables(smoke: Path) -> None:
    doc = (smoke / "benchmarks.md").read_text()
    for marker in (RESULTS_START, RESULTS_END, COMPARE_START, COMPARE_END):
        assert marker in doc
    generated = doc.split(RESULTS_START)[1].split(RESULTS_END)[0]
    assert "cores (`os.cpu_count()`)" in generated
    assert generated.count("| figure | median | target |") == len(BENCHMARKS)
