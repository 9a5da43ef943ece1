"""Pure decisions for a wave's checks: when a check has failed, and how values are shown.

No Temporal, no boto3: the checks activity and the wave use these, and tests call them
directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

# How many probes a check remembers (its threshold looks at no more).
MAX_RECENT = 100
# A bake's checks activity heartbeats at least this often, and is declared dead after
# this many missed heartbeats.
CHECKS_HEARTBEAT = timedelta(seconds=10)
CHECKS_HEARTBEATS_MISSED = 3
# A probe without its own timeout (an AWS call) is given this long.
PROBE_TIMEOUT = timedelta(seconds=60)


def heartbeat_timeout(checks: Sequence[Any]) -> timedelta:
    """How long the checks activity may go without heartbeating: a round of probes (each
    up to its timeout; they run one after another) plus a few missed heartbeats (at the
    checks' shortest interval, at most CHECKS_HEARTBEAT)."""
    probes = sum((getattr(c, "timeout", PROBE_TIMEOUT) for c in checks), timedelta(0))
    # Temporal sends heartbeats at most every 80% of this: the shortest interval keeps
    # status's view of the latest probes (client.checks_progress) about that fresh.
    every = min([CHECKS_HEARTBEAT, *(c.interval for c in checks)])
    return probes + every * CHECKS_HEARTBEATS_MISSED


def remember(recent: list[bool], ok: bool | None, window: int | None, failures: int) -> list[bool]:
    """``recent`` with the probe's outcome added (a None, "no data, ignored", adds nothing),
    trimmed to what the threshold needs."""
    if ok is None:
        return list(recent)
    keep = max(window or failures, 1)
    return [*recent, ok][-min(keep, MAX_RECENT) :]


def threshold_reached(recent: list[bool], failures: int, window: int | None) -> bool:
    """N consecutive failed probes (``window`` None), or M failed of the last K probes."""
    if window is None:
        tail = recent[-failures:]
        return len(tail) == failures and not any(tail)
    return sum(1 for ok in recent[-window:] if not ok) >= failures


def format_number(value: float) -> str:
    """812.0 -> "812", 0.25 -> "0.25", 12345.678 -> "12345.68"."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def format_value(value: float, unit: str = "") -> str:
    """A measured value with its unit: "812 ms", "3.5 %", "12"."""
    text = format_number(value)
    return f"{text} {unit}" if unit else text


COMPARISONS = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def breaches(value: float, comparison: str, threshold: float) -> bool:
    """Whether ``value`` is on the failing side of ``threshold`` (``comparison`` fails)."""
    return bool(COMPARISONS[comparison](value, threshold))


def breach_message(label: str, value: float, comparison: str, threshold: float, unit: str) -> str:
    """ "p99 latency 812 ms > 500 ms" when it breaches, "p99 latency 120 ms" when it doesn't."""
    measured = f"{label} {format_value(value, unit)}"
    if breaches(value, comparison, threshold):
        return f"{measured} {comparison} {format_value(threshold, unit)}"
    return measured


def failed_message(name: str, message: str, percent: int | None, where: str | None = None) -> str:
    """The step's failure: "check 'latency' failed while baking at 50%: p99 latency ...";
    ``where`` says when otherwise ("after web batch 2/3")."""
    if where is None:
        where = "before the wave started" if percent is None else f"while baking at {percent}%"
    return f"check {name!r} failed {where}: {message}"
