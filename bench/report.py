"""Figures: medians and percentiles, results files, and the table in docs/benchmarks.md.

A benchmark returns its runs (each with the load average at its start) and rows, one per
figure, holding the median over the runs. ``write_results`` stores them as
``<results>/<name>.json`` (``<name>.<tag>.json`` for a tagged run, such as ``before``);
``render_doc`` rewrites only the generated blocks of the markdown file.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCHMARKS = (
    "overhead",
    "serverwork",
    "parked",
    "rollback",
    "multiday",
    "checks",
    "console",
    "fleet",
)
TITLES = {
    "overhead": "Orchestration overhead: one wave of N targets vs a plain boto3 script",
    "serverwork": "Server work per release: history events, tasks and visibility writes",
    "parked": "Parked releases: one worker holding releases at an approval gate",
    "rollback": "Rollback: an alarm fires during bake, every target restored",
    "multiday": "Multi-day simulation under time skipping",
    "checks": "Checks per decision and per target: signature verification, AWS preflight",
    "console": "Web console: page response times with many releases parked",
    "fleet": "Fleet in place: N instances in batches of 10 % vs a plain boto3 script",
}
RESULTS_START, RESULTS_END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
COMPARE_START, COMPARE_END = "<!-- bench:before-after:start -->", "<!-- bench:before-after:end -->"
ROW_KEYS = ("figure", "median", "unit", "target")
RESULT_KEYS = ("benchmark", "title", "machine", "settings", "started_at", "seconds", "runs", "rows")


def load_average() -> float:
    """The 1-minute load average now (what else this machine is doing)."""
    return round(os.getloadavg()[0], 2)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile ``p`` (0..100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return float(ordered[rank - 1])


def row(figure: str, values: Sequence[float], unit: str, target: str = "") -> dict[str, Any]:
    """One table row: the median of ``values`` (one value per run)."""
    return {
        "figure": figure,
        "median": round(median(values), 4),
        "unit": unit,
        "target": target,
        "values": [round(v, 4) for v in values],
    }


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "temporalio": metadata.version("temporalio"),
        "moto": metadata.version("moto"),
    }


def results_path(results_dir: Path, name: str, tag: str | None = None) -> Path:
    return results_dir / (f"{name}.{tag}.json" if tag else f"{name}.json")


def write_results(
    results_dir: Path,
    name: str,
    settings: dict[str, Any],
    started_at: datetime,
    seconds: float,
    runs: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    tag: str | None = None,
) -> Path:
    """Write one benchmark's results file (atomically: a ``.tmp`` renamed into place)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": name,
        "title": TITLES[name],
        "machine": machine(),
        "settings": settings,
        "started_at": started_at.isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "runs": runs,
        "rows": rows,
    }
    path = results_path(results_dir, name, tag)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def read_results(results_dir: Path, tag: str | None = None) -> dict[str, dict[str, Any]]:
    found = {}
    for name in BENCHMARKS:
        path = results_path(results_dir, name, tag)
        if path.exists():
            found[name] = json.loads(path.read_text())
    return found


def _value(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit in ("MB", "kB"):
        return f"{value:,.1f} {unit}"
    if unit == "/s":
        return f"{value:,.1f} /s"
    if unit == "days":
        return f"{value:.1f} days"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"
    return f"{value:g} {unit}".strip()


def _loads(result: dict[str, Any]) -> str:
    loads = [r["load_avg"] for r in result["runs"] if "load_avg" in r]
    if not loads:
        return "?"
    return f"{min(loads):.2f}" if min(loads) == max(loads) else f"{min(loads):.2f}-{max(loads):.2f}"


def results_table(results: dict[str, dict[str, Any]]) -> str:
    """The generated block: machine, then one table per benchmark."""
    if not results:
        return "_No results yet: run `make bench`._"
    any_result = next(iter(results.values()))
    info = any_result["machine"]
    lines = [
        f"Machine: {info['cpu_count']} cores (`os.cpu_count()`), Python {info['python']}, "
        f"temporalio {info['temporalio']}, moto {info['moto']}.",
        "",
    ]
    for result in results.values():
        runs = len(result["runs"])
        lines += [
            f"**{result['title']}** ({runs} run{'s' if runs != 1 else ''}, "
            f"load average {_loads(result)} at the runs' starts, {result['started_at']}, "
            f"{result['seconds']:.0f} s)",
            "",
            "| figure | median | target |",
            "|---|---:|---|",
        ]
        lines += [
            f"| {r['figure']} | {_value(r['median'], r['unit'])} | {r['target']} |"
            for r in result["rows"]
        ]
        lines.append("")
    return "\n".join(lines).rstrip()


def tags(results_dir: Path) -> list[str]:
    """The tags of tagged results files (``<name>.<tag>.json``) in ``results_dir``."""
    found = {p.name.split(".")[1] for p in results_dir.glob("*.*.json")}
    return sorted(t for t in found if t != "tmp")


def compare_table(results_dir: Path) -> str:
    """Every tagged run's figures next to the current ones (same figure names)."""
    current = read_results(results_dir)
    blocks = []
    for tag in tags(results_dir):
        other = read_results(results_dir, tag)
        lines = [
            f"| benchmark | figure | current | `{tag}` | load current / `{tag}` |",
            "|---|---|---:|---:|---|",
        ]
        for name in BENCHMARKS:
            if name not in other or name not in current:
                continue
            now_rows = {r["figure"]: r for r in current[name]["rows"]}
            for old in other[name]["rows"]:
                new = now_rows.get(old["figure"])
                if new is not None:
                    lines.append(
                        f"| {name} | {old['figure']} | {_value(new['median'], new['unit'])} | "
                        f"{_value(old['median'], old['unit'])} | "
                        f"{_loads(current[name])} / {_loads(other[name])} |"
                    )
        if len(lines) > 2:
            blocks.append("\n".join(lines))
    if not blocks:
        return "_No tagged results: `python -m bench --tag before` stores a run to compare._"
    return "\n\n".join(blocks)


DOC_SKELETON = f"""# Benchmarks

Generated by `make bench` (`python -m bench`); see the sections after the tables for the
method.

## Results

{RESULTS_START}
{RESULTS_END}

## Before / after

{COMPARE_START}
{COMPARE_END}
"""


def _splice(text: str, start: str, end: str, block: str) -> str:
    if start not in text or end not in text:
        text = text.rstrip() + f"\n\n{start}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{block}\n{end}{tail}"


def render_doc(doc: Path, results_dir: Path) -> None:
    """Rewrite the generated blocks of ``doc`` from the results in ``results_dir``."""
    text = doc.read_text() if doc.exists() else DOC_SKELETON
    current = read_results(results_dir)
    text = _splice(text, RESULTS_START, RESULTS_END, results_table(current))
    text = _splice(text, COMPARE_START, COMPARE_END, compare_table(results_dir))
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def now() -> datetime:
    return datetime.now(UTC)
