"""``relman report``: DORA figures and approval waits over a period, from many releases.

Pure: the releases come from ``client.portfolio``. Two sources, by cost:

- every release that ended in the period, from Temporal visibility alone (its start and
  close times and its ``RelmanPhase``): deployment frequency, lead time from submission,
  change failure rate;
- the timelines of the most recently ended of them (``ReleaseFacts.timeline``; a bounded
  number, each history read once): lead time from the first approval, time to restore and
  approval waits per group.

Percentiles are nearest-rank: p50 of n values is the ceil(n/2)-th smallest, a value that
occurred.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from models.status import ReleasePhase, ReleaseStatus, TimelineEvent, WavePhase

COMPLETED = ReleasePhase.COMPLETED.value
# Deployments that failed: the change had to be undone, or could not be (the issue's "rolled
# back, failed, rollback_failed"). rollback_failed is not an end: such a release is running,
# waiting for an operator, and counts in the week the report is made.
FAILURES = (
    ReleasePhase.ROLLED_BACK.value,
    ReleasePhase.ROLLED_BACK_WITH_SKIPS.value,
    ReleasePhase.FAILED.value,
    ReleasePhase.ROLLBACK_FAILED.value,
)
_ROLLED_BACK = (ReleasePhase.ROLLED_BACK, ReleasePhase.ROLLED_BACK_WITH_SKIPS)
CHART_FORMATS = (".png", ".svg")


# --- what one release tells -------------------------------------------------------------------


@dataclass(frozen=True)
class GateWait:
    """How long one group of one gate took to give the approvals it owed, from the gate's
    opening; ``wait`` None when the gate ended without them (rejected, timed out, stopped)."""

    group: str
    department: str
    wait: timedelta | None


@dataclass(frozen=True)
class TimelineFacts:
    """What a release's timeline adds to visibility."""

    first_approval: datetime | None
    # From the first alarm (else the first failed wave) to the end of the rollback, for a
    # release that rolled back after one; None otherwise.
    restore: timedelta | None
    gate_waits: tuple[GateWait, ...] = ()


@dataclass
class ReleaseFacts:
    """One release as the report counts it."""

    release_id: str
    application: str | None
    departments: list[str]
    outcome: str  # its final phase (or rollback_failed, or the workflow's status if neither)
    submitted: datetime
    ended: datetime | None  # None: still running (rollback_failed)
    history_length: int = 0
    timeline: TimelineFacts | None = None  # None: not read


def _first(events: list[TimelineEvent], kind: str) -> TimelineEvent | None:
    return next((e for e in events if e.kind == kind), None)


def timeline_facts(status: ReleaseStatus) -> TimelineFacts:
    """First approval, time to restore and gate waits from a release's status and timeline
    (event kinds ``alarm``, ``wave_failed``, ``rollback_finished``,
    ``wave_awaiting_approval``, and each wave's approval records)."""
    approvals = [a.at for w in status.waves for a in w.approvals if a.decision == "approved"]
    restore = None
    if status.phase in _ROLLED_BACK:
        broke = _first(status.timeline, "alarm") or _first(status.timeline, "wave_failed")
        done = [e.at for e in status.timeline if e.kind == "rollback_finished"]
        restored = done[-1] if done else status.finished_at
        if broke is not None and restored is not None:
            restore = restored - broke.at
    waits = []
    for wave in status.waves:
        groups = {**wave.required_approvals, **wave.escalated_to}
        opened = next(
            (
                e.at
                for e in status.timeline
                if e.kind == f"wave_{WavePhase.AWAITING_APPROVAL.value}" and e.wave == wave.name
            ),
            None,
        )
        if not groups or opened is None:
            continue
        given = sorted((a for a in wave.approvals if a.decision == "approved"), key=lambda a: a.at)
        for group, needed in groups.items():
            # One person counts once per group (workflows.gates.missing_approvals).
            times: dict[str, datetime] = {}
            for a in given:
                if group in a.groups:
                    times.setdefault(a.approver, a.at)
            met = sorted(times.values())
            wait = met[needed - 1] - opened if len(met) >= needed else None
            waits.append(GateWait(group, wave.department, wait))
    return TimelineFacts(min(approvals) if approvals else None, restore, tuple(waits))


# --- figures ---------------------------------------------------------------------------------


def percentile(values: list[timedelta], q: float) -> timedelta | None:
    """The nearest-rank ``q`` percentile (0 < q <= 1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)), 1) - 1]


@dataclass(frozen=True)
class Spread:
    """How many durations, and their p50 and p90."""

    count: int
    p50: timedelta | None
    p90: timedelta | None

    @classmethod
    def of(cls, values: list[timedelta]) -> Spread:
        return cls(len(values), percentile(values, 0.5), percentile(values, 0.9))

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50_seconds": _seconds(self.p50),
            "p90_seconds": _seconds(self.p90),
        }

    def text(self) -> str:
        if not self.count:
            return "-"
        return f"p50 {short(self.p50)}, p90 {short(self.p90)} ({self.count})"


@dataclass(frozen=True)
class GroupWait:
    """Approval waits of one group: decided gates' spread, and gates left unanswered."""

    group: str
    waits: Spread
    unanswered: int


@dataclass(frozen=True)
class Week:
    """One week (Monday 00:00 UTC on) of the series."""

    start: datetime
    completed: int
    failures: int
    lead_time_p50: timedelta | None
    restore_p50: timedelta | None

    @property
    def failure_rate(self) -> float | None:
        deployed = self.completed + self.failures
        return self.failures / deployed if deployed else None

    def to_json(self) -> dict[str, Any]:
        return {
            "week": self.start.date().isoformat(),
            "completed": self.completed,
            "failures": self.failures,
            "change_failure_rate": _rate(self.failure_rate),
            "lead_time_p50_seconds": _seconds(self.lead_time_p50),
            "time_to_restore_p50_seconds": _seconds(self.restore_p50),
        }


@dataclass(frozen=True)
class NotRead:
    """An ended release whose timeline the report did not read, and why."""

    release_id: str
    reason: str


@dataclass
class Report:
    """What ``relman report`` shows."""

    since: datetime
    until: datetime
    application: str | None
    department: str | None
    releases: int
    outcomes: dict[str, int]
    completed: int
    failures: int
    lead_time: Spread  # submitted -> completed
    approval_lead_time: Spread  # first approval -> completed
    restore: Spread
    approval_waits: list[GroupWait]
    weeks: list[Week]
    timelines_read: int
    timeline_limit: int
    event_limit: int
    not_read: list[NotRead] = field(default_factory=list)
    chart: str | None = None  # the file the weekly series was drawn into

    @property
    def weeks_in_period(self) -> float:
        return (self.until - self.since) / timedelta(days=7)

    @property
    def per_week(self) -> float:
        return self.completed / self.weeks_in_period if self.weeks_in_period else 0.0

    @property
    def failure_rate(self) -> float | None:
        deployed = self.completed + self.failures
        return self.failures / deployed if deployed else None

    def to_json(self) -> Any:
        days = (self.until - self.since) / timedelta(days=1)
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "application": self.application,
            "department": self.department,
            "releases": self.releases,
            "outcomes": self.outcomes,
            "deployment_frequency": {
                "completed": self.completed,
                "per_week": round(self.per_week, 2),
                "per_day": round(self.completed / days, 2) if days else 0.0,
            },
            "lead_time": {
                "submitted_to_completed": self.lead_time.to_json(),
                "first_approval_to_completed": self.approval_lead_time.to_json(),
            },
            "change_failure_rate": {
                "failures": self.failures,
                "deployments": self.completed + self.failures,
                "rate": _rate(self.failure_rate),
            },
            "time_to_restore": self.restore.to_json(),
            "approval_wait": [
                {"group": g.group, **g.waits.to_json(), "unanswered": g.unanswered}
                for g in self.approval_waits
            ],
            "weekly": [w.to_json() for w in self.weeks],
            "chart": self.chart,
            "timelines": {
                "read": self.timelines_read,
                "of": self.releases,
                "limit": self.timeline_limit,
                "event_limit": self.event_limit,
                "not_read": [
                    {"release_id": n.release_id, "reason": n.reason} for n in self.not_read
                ],
            },
        }

    def render(self, console: Any) -> None:
        from rich.table import Table

        scope = "".join(
            f", {label} {value}"
            for label, value in (("application", self.application), ("department", self.department))
            if value
        )
        console.print(
            f"Release report: {_day(self.since)} to {_day(self.until)} UTC "
            f"({short(self.until - self.since)}){scope}",
            markup=False,
        )
        outcomes = ", ".join(f"{n} {phase}" for phase, n in self.outcomes.items())
        console.print(
            f"{self.releases} release(s)" + (f": {outcomes}" if outcomes else ""), markup=False
        )
        rate = self.failure_rate
        figures = Table(title="DORA figures")
        for column in ("figure", "value", "from"):
            figures.add_column(column)
        from_timelines = f"timelines ({self.timelines_read})"
        figures.add_row(
            "deployment frequency",
            f"{self.per_week:.1f} per week ({self.completed} completed)",
            "visibility",
        )
        figures.add_row("lead time, submitted -> completed", self.lead_time.text(), "visibility")
        figures.add_row(
            "lead time, first approval -> completed",
            self.approval_lead_time.text(),
            from_timelines,
        )
        figures.add_row(
            "change failure rate",
            "-"
            if rate is None
            else f"{rate:.1%} ({self.failures} of {self.completed + self.failures} deployments)",
            "visibility",
        )
        figures.add_row(
            "time to restore, alarm -> rolled back", self.restore.text(), from_timelines
        )
        console.print(figures)
        if self.approval_waits:
            waits = Table(title="Approval wait per group, from the gate's opening")
            for column in ("group", "gates", "p50", "p90", "unanswered"):
                waits.add_column(column)
            for g in self.approval_waits:
                waits.add_row(
                    g.group,
                    str(g.waits.count),
                    short(g.waits.p50),
                    short(g.waits.p90),
                    str(g.unanswered),
                )
            console.print(waits)
        weekly = Table(title="Weekly")
        for column in (
            "week of",
            "completed",
            "failed",
            "failure rate",
            "lead time p50",
            "restore p50",
        ):
            weekly.add_column(column)
        for w in self.weeks:
            weekly.add_row(
                w.start.date().isoformat(),
                str(w.completed),
                str(w.failures),
                "-" if w.failure_rate is None else f"{w.failure_rate:.0%}",
                short(w.lead_time_p50),
                short(w.restore_p50),
            )
        console.print(weekly)
        console.print(
            f"timelines read: {self.timelines_read} of {self.releases} (at most the "
            f"{self.timeline_limit} most recently ended, histories of at most "
            f"{self.event_limit} events)",
            markup=False,
        )
        for n in self.not_read:
            console.print(f"not read: {n.release_id}: {n.reason}", markup=False, style="yellow")
        if self.chart:
            console.print(f"chart: {self.chart}", markup=False)


def build_report(
    releases: list[ReleaseFacts],
    since: datetime,
    until: datetime,
    *,
    application: str | None = None,
    department: str | None = None,
    timeline_limit: int,
    event_limit: int,
    not_read: list[NotRead] | None = None,
) -> Report:
    """The report over ``releases`` (those that ended between ``since`` and ``until``, and
    those in rollback_failed); with ``department``, approval waits of its gates only."""
    completed = [r for r in releases if r.outcome == COMPLETED]
    failed = [r for r in releases if r.outcome in FAILURES]
    read = [r for r in releases if r.timeline is not None]
    groups: dict[str, list[GateWait]] = {}
    for r in read:
        assert r.timeline is not None
        for w in r.timeline.gate_waits:
            if department is None or w.department == department:
                groups.setdefault(w.group, []).append(w)
    order = Counter(r.outcome for r in releases)
    outcomes = dict(sorted(order.items(), key=lambda item: (-item[1], item[0])))
    return Report(
        since=since,
        until=until,
        application=application,
        department=department,
        releases=len(releases),
        outcomes=outcomes,
        completed=len(completed),
        failures=len(failed),
        lead_time=Spread.of([_lead(r) for r in completed]),
        approval_lead_time=Spread.of(
            [_approval_lead(r) for r in completed if _approval_lead(r) is not None]  # type: ignore[misc]
        ),
        restore=Spread.of(_restores(read)),
        approval_waits=[
            GroupWait(
                group,
                Spread.of([w.wait for w in waits if w.wait is not None]),
                sum(1 for w in waits if w.wait is None),
            )
            for group, waits in sorted(groups.items())
        ],
        weeks=_weeks(releases, since, until),
        timelines_read=len(read),
        timeline_limit=timeline_limit,
        event_limit=event_limit,
        not_read=list(not_read or []),
    )


def _lead(r: ReleaseFacts) -> timedelta:
    assert r.ended is not None
    return r.ended - r.submitted


def _approval_lead(r: ReleaseFacts) -> timedelta | None:
    if r.timeline is None or r.timeline.first_approval is None or r.ended is None:
        return None
    return r.ended - r.timeline.first_approval


def _restores(releases: list[ReleaseFacts]) -> list[timedelta]:
    return [r.timeline.restore for r in releases if r.timeline and r.timeline.restore is not None]


def week_start(at: datetime) -> datetime:
    """Monday 00:00 UTC of ``at``'s week."""
    day = at.astimezone(UTC).date()
    monday = day - timedelta(days=day.weekday())
    return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)


def _weeks(releases: list[ReleaseFacts], since: datetime, until: datetime) -> list[Week]:
    out = []
    start = week_start(since)
    while start < until:
        end = start + timedelta(days=7)
        inside = [r for r in releases if start <= (r.ended or until) < end]
        done = [r for r in inside if r.outcome == COMPLETED]
        out.append(
            Week(
                start=start,
                completed=len(done),
                failures=sum(1 for r in inside if r.outcome in FAILURES),
                lead_time_p50=percentile([_lead(r) for r in done], 0.5),
                restore_p50=percentile(_restores(inside), 0.5),
            )
        )
        start = end
    return out


# --- text and numbers ------------------------------------------------------------------------


def short(value: timedelta | None) -> str:
    """``2d 3h``, ``5h 12m``, ``12m 5s``, ``40s``: the two largest units, rounded down."""
    if value is None:
        return "-"
    total = max(int(value.total_seconds()), 0)
    counts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        counts.append((count, unit))
    first = next((i for i, (count, _) in enumerate(counts) if count), None)
    if first is None:
        return "0s"
    return " ".join(f"{count}{unit}" for count, unit in counts[first : first + 2] if count)


def _seconds(value: timedelta | None) -> float | None:
    return round(value.total_seconds(), 3) if value is not None else None


def _rate(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def _day(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


# --- chart -----------------------------------------------------------------------------------


def draw_chart(report: Report, path: Path) -> None:
    """The weekly series as a PNG or SVG (by ``path``'s suffix): completed and failed
    releases per week above, median lead time and time to restore (hours) below."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    suffix = path.suffix.lower()
    labels = [w.start.strftime("%m-%d") for w in report.weeks]
    x = list(range(len(labels)))
    hours = 3600.0
    with matplotlib.rc_context(
        # Text stays text (searchable, small), and ids in the SVG do not change run to run.
        {"svg.fonttype": "none", "svg.hashsalt": "relman"}
    ):
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
        try:
            top.bar([i - 0.2 for i in x], [w.completed for w in report.weeks], 0.4,
                    label="completed", color="#2e7d32")  # fmt: skip
            top.bar([i + 0.2 for i in x], [w.failures for w in report.weeks], 0.4,
                    label="failed", color="#c62828")  # fmt: skip
            top.set_ylabel("releases")
            top.yaxis.get_major_locator().set_params(integer=True)
            top.legend(loc="upper left")
            top.set_title(_chart_title(report))
            for label, series, style in (
                ("lead time p50", [w.lead_time_p50 for w in report.weeks], "o-"),
                ("time to restore p50", [w.restore_p50 for w in report.weeks], "s--"),
            ):
                points = [
                    (i, v.total_seconds() / hours) for i, v in zip(x, series, strict=True) if v
                ]
                if points:
                    xs, ys = [p[0] for p in points], [p[1] for p in points]
                    bottom.plot(xs, ys, style, label=label, clip_on=False)
            bottom.set_ylabel("hours")
            bottom.set_xlabel("week of (UTC)")
            bottom.set_xticks(x, labels)
            bottom.set_ylim(bottom=0)
            if bottom.get_legend_handles_labels()[0]:
                bottom.legend(loc="upper left")
            fig.tight_layout()
            fig.savefig(path, format=suffix.lstrip("."), metadata=_metadata(suffix))
        finally:
            plt.close(fig)


def _chart_title(report: Report) -> str:
    scope = " ".join(v for v in (report.application, report.department) if v)
    return f"relman releases {_day(report.since)[:10]} to {_day(report.until)[:10]}" + (
        f" ({scope})" if scope else ""
    )


def _metadata(suffix: str) -> dict[str, Any]:
    # No creation date: the same report draws the same file.
    return {"Date": None} if suffix == ".svg" else {}
