"""``relman calendar``: every wave still to run across running releases, the freezes in
force, and the releases whose waves could run at the same time on the same department or
application.

Pure: the plans and statuses come from ``client.portfolio``; window and freeze arithmetic
from ``workflows.windows``; the day strip from ``client.schedule`` (``relman plan check``'s).
Like ``plan check``, the projection assumes gates pass at once: a wave could start at the
first instant after its predecessors' projected ends that lies inside its window and
outside every freeze (the release's own and the organisation's).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import combinations
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from client.schedule import WaveSchedule, timeline_rows
from models.plan import Freeze, ReleasePlan, Window
from models.status import WAVE_END_PHASES, ReleasePhase, ReleaseStatus, WavePhase
from models.validation import wave_order
from workflows import windows

DEFAULT_DAYS = 14
# A wave with neither window nor bake takes an instant; in the calendar it holds its
# department and application for at least this long.
MIN_SLOT = timedelta(minutes=1)
NEVER_OPENS = "its window never opens outside freezes within a year"
WAITING_FOR_WINDOW = "waiting for its window"
# A release in one of these runs no further wave: it is undoing what it did.
_NOT_ADVANCING = (ReleasePhase.ROLLING_BACK, ReleasePhase.ROLLBACK_FAILED)
ORGANISATION = "organisation"
RELEASE = "release"


def local_zone() -> ZoneInfo:
    """This machine's IANA time zone: ``TZ``, else where ``/etc/localtime`` links into the
    tz database, else UTC."""
    candidates = []
    if name := os.environ.get("TZ", "").lstrip(":"):
        candidates.append(name)
    link = os.path.realpath("/etc/localtime")
    if "zoneinfo/" in link:
        candidates.append(link.split("zoneinfo/", 1)[1])
    for candidate in candidates:
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue
    return ZoneInfo("UTC")


@dataclass(frozen=True)
class Gate:
    """A wave's approval gate as the calendar shows it."""

    state: str  # "open" (waiting for decisions), "to come" (not reached yet), "passed"
    groups: dict[str, int]  # open: what it still needs; else what it needs in all
    approvers: tuple[str, ...] = ()  # open: who may decide now
    deadline: datetime | None = None

    def text(self) -> str:
        needs = ", ".join(f"{n} of {g}" for g, n in self.groups.items())
        if self.state == "open":
            return f"open: {needs} ({', '.join(self.approvers) or 'nobody eligible'})"
        if self.state == "to come":
            return needs
        return "passed"

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "groups": self.groups,
            "approvers": list(self.approvers),
            "deadline": self.deadline.isoformat() if self.deadline else None,
        }


@dataclass
class CalendarWave:
    """A wave still to run: when it could run and what holds it."""

    release_id: str
    application: str
    version: str
    wave: str
    department: str
    phase: str
    window: Window | None
    # Projected: when it could start, when its steps and bakes would be done, and until
    # when it may run (the end of the window opening it starts in, or ``end``).
    start: datetime | None
    end: datetime | None
    slot_end: datetime | None
    gate: Gate | None
    held_by: str | None

    @property
    def label(self) -> str:
        return f"{self.release_id} {self.wave}"

    def window_text(self) -> str:
        return windows.describe_window(self.window) if self.window else "any time"

    def to_json(self) -> dict[str, Any]:
        zone = self.window.timezone if self.window else "UTC"
        return {
            "release_id": self.release_id,
            "application": self.application,
            "version": self.version,
            "wave": self.wave,
            "department": self.department,
            "phase": self.phase,
            "window": self.window_text() if self.window else None,
            "start": _iso(self.start),
            # the same instant in the wave's own time zone (its window's)
            "start_local": self.start.astimezone(ZoneInfo(zone)).isoformat()
            if self.start
            else None,
            "end": _iso(self.end),
            "slot_end": _iso(self.slot_end),
            "gate": self.gate.to_json() if self.gate else None,
            "held_by": self.held_by,
        }


@dataclass(frozen=True)
class CalendarFreeze:
    """A freeze in force during the calendar's span, and the releases it holds."""

    freeze: Freeze
    scope: str  # ORGANISATION or RELEASE
    releases: tuple[str, ...]

    @property
    def uid(self) -> str:
        f = self.freeze
        key = f"{self.scope}|{f.name}|{f.start.isoformat()}|{f.end.isoformat()}|{f.reason}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        f = self.freeze
        return {
            "scope": self.scope,
            "name": f.name,
            "start": _iso(f.start),
            "end": _iso(f.end),
            "reason": f.reason,
            "releases": list(self.releases),
        }


@dataclass(frozen=True)
class Conflict:
    """Waves of two releases that could run at the same time on a shared department or
    application."""

    first: CalendarWave
    second: CalendarWave
    shared: tuple[str, ...]  # "department finance", "application payments"
    start: datetime
    end: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "waves": [
                {"release_id": w.release_id, "wave": w.wave} for w in (self.first, self.second)
            ],
            "shared": list(self.shared),
            "start": _iso(self.start),
            "end": _iso(self.end),
        }


@dataclass(frozen=True)
class NotRead:
    """A running release the calendar could not read, and why."""

    release_id: str
    reason: str


@dataclass
class Calendar:
    """What ``relman calendar`` shows: waves, their day strip, freezes, conflicts."""

    now: datetime
    days: int
    tz: ZoneInfo
    waves: list[CalendarWave]
    strip_header: str
    strip_rows: list[tuple[str, str]]
    freezes: list[CalendarFreeze]
    conflicts: list[Conflict]
    # The organisation policy whose freezes are shown ("tests-1 from /path"), or None.
    policy: str | None = None
    not_read: list[NotRead] = field(default_factory=list)

    @property
    def until(self) -> datetime:
        return self.now + timedelta(days=self.days)

    def to_json(self) -> Any:
        return {
            "from": _iso(self.now),
            "until": _iso(self.until),
            "days": self.days,
            "timezone": self.tz.key,
            "organisation_policy": self.policy,
            "waves": [w.to_json() for w in self.waves],
            "freezes": [f.to_json() for f in self.freezes],
            "conflicts": [c.to_json() for c in self.conflicts],
            "not_read": [{"release_id": n.release_id, "reason": n.reason} for n in self.not_read],
        }

    def render(self, console: Any) -> None:
        from rich.table import Table

        tz = self.tz
        console.print(
            f"Change calendar: {self.days} days from {_at(self.now, tz)} {tz.key} "
            "(gates assumed to pass at once)",
            markup=False,
        )
        if not self.waves:
            console.print("no wave of a running release is still to run", markup=False)
        else:
            table = Table(title="Waves still to run")
            for column in (
                "release",
                "wave",
                "department",
                "gate",
                "held by",
                "next opening (wave's time)",
                f"({tz.key})",
                "done by",
            ):
                table.add_column(column)
            for w in self.waves:
                zone = ZoneInfo(w.window.timezone) if w.window else UTC
                table.add_row(
                    f"{w.release_id}\n{w.application} {w.version}",
                    w.wave,
                    w.department,
                    w.gate.text() if w.gate else "-",
                    w.held_by or "-",
                    f"{_day(w.start, zone)}\n{w.window_text()}" if w.start else "never",
                    _day(w.start, tz),
                    _day(w.end, tz),
                )
            console.print(table)
            width = max([len(f"day ({tz.key})"), *(len(label) for label, _ in self.strip_rows)])
            console.print(f"{f'day ({tz.key})':<{width}}  {self.strip_header}", markup=False)
            for label, strip in self.strip_rows:
                console.print(f"{label:<{width}}  {strip}", markup=False)
            console.print(f"{'':<{width}}  # deploying   . window open   * frozen", markup=False)
        if self.freezes:
            table = Table(title="Freezes")
            for column in ("scope", "from", "until", "reason", "holds"):
                table.add_column(column)
            for f in self.freezes:
                table.add_row(
                    f.scope,
                    _at(f.freeze.start, tz),
                    _at(f.freeze.end, tz),
                    f.freeze.reason,
                    "every release" if f.scope == ORGANISATION else ", ".join(f.releases),
                )
            console.print(table)
        if self.policy is None:
            console.print(
                "organisation freezes not shown: no organisation policy to read (RELMAN_POLICY)",
                markup=False,
            )
        if self.conflicts:
            console.print("Conflicts:", markup=False)
            for c in self.conflicts:
                console.print(
                    f"  {c.first.label} and {c.second.label}: {' and '.join(c.shared)}, "
                    f"{_day(c.start, tz)} to {_day(c.end, tz)}",
                    markup=False,
                )
        else:
            console.print("no conflicts", markup=False)
        for n in self.not_read:
            console.print(f"not read: {n.release_id}: {n.reason}", markup=False, style="yellow")


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at else None


def _at(at: datetime | None, tz: Any) -> str:
    """``Mon 2026-12-07 09:00`` in ``tz``."""
    return at.astimezone(tz).strftime("%a %Y-%m-%d %H:%M") if at else "-"


def _day(at: datetime | None, tz: Any) -> str:
    """``Mon 12-07 09:00`` in ``tz``: within the calendar's span, the year goes without
    saying."""
    return at.astimezone(tz).strftime("%a %m-%d %H:%M") if at else "-"


# --- projection ------------------------------------------------------------------------------


def remaining_waves(
    plan: ReleasePlan, status: ReleaseStatus, org_freezes: list[Freeze], now: datetime
) -> list[CalendarWave]:
    """The waves of a running release that are still to run, in dependency order, each
    projected from ``now`` past its predecessors, its window and every freeze."""
    if status.finished or status.phase in _NOT_ADVANCING:
        return []
    freezes = [*status.freezes, *org_freezes]
    # wave -> when it is projected to be done; None: it will never run
    ends: dict[str, datetime | None] = {}
    out = []
    for name in wave_order(plan):
        wave, current = plan.wave(name), status.wave(name)
        if current.phase in WAVE_END_PHASES:
            ends[name] = (
                (current.finished_at or now) if current.phase == WavePhase.COMPLETED else None
            )
            continue
        preds = [ends.get(p) for p in wave.after]
        if any(p is None for p in preds):
            ends[name] = None  # an earlier wave ended other than completed: this one is skipped
            continue
        gate = _gate(status, name)
        if current.phase in (WavePhase.DEPLOYING, WavePhase.BAKING):
            start: datetime | None = now
            end: datetime | None = now + wave.bake * (len(wave.traffic) - current.step)
            slot_end, held_by = _slot_end(None, start, end), None
        else:
            earliest = max([now, *(p for p in preds if p is not None)])
            start = windows.next_start(wave.window, freezes, earliest)
            end = start + wave.bake * len(wave.traffic) if start else None
            slot_end = _slot_end(wave.window, start, end)
            held_by = _held_by(status, wave.after, ends, now, earliest, start, wave.window, freezes)
        ends[name] = end
        out.append(
            CalendarWave(
                release_id=status.release_id,
                application=status.application,
                version=status.version,
                wave=name,
                department=wave.department,
                phase=current.phase.value,
                window=wave.window,
                start=start,
                end=end,
                slot_end=slot_end,
                gate=gate,
                held_by=held_by,
            )
        )
    return out


def _gate(status: ReleaseStatus, name: str) -> Gate | None:
    current = status.wave(name)
    if not current.required_approvals:
        return None
    pending = next((p for p in status.pending_approvals if p.wave == name), None)
    if pending is not None:
        return Gate(
            "open",
            dict(pending.missing),
            tuple(pending.eligible_approvers),
            pending.deadline or current.approval_deadline,
        )
    if current.phase == WavePhase.PENDING:
        return Gate("to come", dict(current.required_approvals))
    return Gate("passed", dict(current.required_approvals))


def _slot_end(
    window: Window | None, start: datetime | None, end: datetime | None
) -> datetime | None:
    if start is None or end is None:
        return None
    closes = windows.closes_at(window, start) if window is not None else None
    return max(end, closes or end, start + MIN_SLOT)


def _held_by(
    status: ReleaseStatus,
    after: list[str],
    ends: dict[str, datetime | None],
    now: datetime,
    earliest: datetime,
    start: datetime | None,
    window: Window | None,
    freezes: list[Freeze],
) -> str | None:
    if status.paused:
        return "release paused"
    if start is None:
        return NEVER_OPENS
    if earliest > now:
        later = [p for p in after if (ends.get(p) or now) > now]
        return f"after {', '.join(later)}"
    if start > earliest:
        reason = windows.wait_reason(window, freezes, earliest, start)
        return reason if reason.startswith("freeze") else WAITING_FOR_WINDOW
    return None


def release_freezes(
    statuses: list[ReleaseStatus], org_freezes: list[Freeze], now: datetime, until: datetime
) -> list[CalendarFreeze]:
    """Freezes in force at some time between ``now`` and ``until``: the organisation's,
    then each release's own (plan and added), one entry per freeze with the releases it
    holds; in order of start."""

    def in_span(f: Freeze) -> bool:
        return f.start < until and f.end > now

    found: dict[Freeze, list[str]] = {}
    for status in statuses:
        for freeze in status.freezes:
            if in_span(freeze) and freeze not in org_freezes:
                found.setdefault(freeze, [])
                if status.release_id not in found[freeze]:
                    found[freeze].append(status.release_id)
    out = [CalendarFreeze(f, ORGANISATION, ()) for f in org_freezes if in_span(f)]
    out += [CalendarFreeze(f, RELEASE, tuple(ids)) for f, ids in found.items()]
    return sorted(out, key=lambda f: (f.freeze.start, f.scope != ORGANISATION, f.freeze.end))


def find_conflicts(waves: list[CalendarWave], until: datetime) -> list[Conflict]:
    """Pairs of waves of different releases that share a department or an application and
    could run at the same time (their slots overlap before ``until``)."""
    out = []
    placed = [w for w in waves if w.start is not None and w.slot_end is not None]
    placed.sort(key=lambda w: (w.start, w.release_id, w.wave))
    for a, b in combinations(placed, 2):
        if a.release_id == b.release_id:
            continue
        shared = []
        if a.department == b.department:
            shared.append(f"department {a.department}")
        if a.application == b.application:
            shared.append(f"application {a.application}")
        assert a.start and a.slot_end and b.start and b.slot_end
        start, end = max(a.start, b.start), min(a.slot_end, b.slot_end)
        if shared and start < end and start < until:
            out.append(Conflict(a, b, tuple(shared), start, end))
    return out


def build_calendar(
    releases: list[tuple[ReleasePlan, ReleaseStatus]],
    org_freezes: list[Freeze],
    now: datetime,
    days: int = DEFAULT_DAYS,
    tz: ZoneInfo | None = None,
    department: str | None = None,
    policy: str | None = None,
    not_read: list[NotRead] | None = None,
) -> Calendar:
    """The calendar of ``releases`` (each running release's plan and status) from ``now``
    for ``days`` days, in ``tz``, only waves of ``department`` when given."""
    tz = tz or ZoneInfo("UTC")
    until = now + timedelta(days=days)
    today: date = now.astimezone(tz).date()
    all_waves: list[CalendarWave] = []
    header, strip_rows = "", []
    ordered = []
    for plan, status in releases:
        waves = [
            w
            for w in remaining_waves(plan, status, org_freezes, now)
            if department is None or w.department == department
        ]
        if waves:
            ordered.append((plan, status, waves))
    # Releases whose next wave could run soonest first.
    ordered.sort(key=lambda r: (_first_start(r[2]), r[1].release_id))
    for plan, status, waves in ordered:
        all_waves.extend(waves)
        # The strip of plan check, with the freezes this release waits for.
        freezes = [*status.freezes, *org_freezes]
        shown = plan.model_copy(update={"freezes": freezes})
        header, rows = timeline_rows(
            shown, [_as_schedule(w, now) for w in waves], today, days, tz=tz
        )
        strip_rows += [(f"{status.release_id} {name}", strip) for name, strip in rows]
    all_waves.sort(key=lambda w: (_first_start([w]), w.release_id, w.wave))
    if not header:
        header = "".join(f"{(today + timedelta(d)).day:<3}" for d in range(days))
    return Calendar(
        now=now,
        days=days,
        tz=tz,
        waves=all_waves,
        strip_header=header,
        strip_rows=strip_rows,
        freezes=release_freezes([s for _, s in releases], org_freezes, now, until),
        conflicts=find_conflicts(all_waves, until),
        policy=policy,
        not_read=list(not_read or []),
    )


_FAR = datetime.max.replace(tzinfo=UTC)


def _first_start(waves: list[CalendarWave]) -> datetime:
    return min((w.start for w in waves if w.start is not None), default=_FAR)


def _as_schedule(wave: CalendarWave, now: datetime) -> WaveSchedule:
    return WaveSchedule(
        wave=wave.wave,
        window=wave.window_text(),
        earliest=now,
        start=wave.start,
        end=wave.end,
        held_by=wave.held_by,
    )


# --- iCalendar (RFC 5545) --------------------------------------------------------------------

PRODID = "-//relman//change calendar//EN"
_FOLD_AT = 75  # octets per line, CRLF excluded (RFC 5545 3.1)
_TOKENS = re.compile(r"\\.|.", re.DOTALL)


def ics_text(value: str) -> str:
    """A TEXT value escaped (RFC 5545 3.3.11): backslash, semicolon, comma, newline."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def fold(line: str) -> str:
    """A content line folded into lines of at most 75 octets, never inside a UTF-8
    character or an escape; continuation lines start with one space (RFC 5545 3.1)."""
    out: list[str] = []
    current, size = "", 0
    # An escape (``\,``, ``\n``) stays on one line, for readers that unescape before unfolding.
    for token in _TOKENS.findall(line):
        width = len(token.encode())
        if size + width > _FOLD_AT:
            out.append(current)
            current, size = " ", 1
        current += token
        size += width
    out.append(current)
    return "\r\n".join(out)


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def to_ics(calendar: Calendar, stamp: datetime) -> str:
    """The calendar as an iCalendar file: one event per wave's projected opening (from
    when it could start until its opening closes, or its steps are done), one per freeze.
    Times are UTC; a calendar application shows them in its own zone. A wave keeps its UID
    (release and wave), so importing a newer calendar moves the event instead of adding
    one."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "X-WR-CALNAME:relman change calendar",
    ]
    for w in calendar.waves:
        if w.start is None or w.slot_end is None or w.start >= calendar.until:
            continue
        details = [
            f"release {w.release_id} of {w.application} {w.version}",
            f"department {w.department}",
            f"window {w.window_text()}",
            f"gate {w.gate.text() if w.gate else 'none'}",
        ]
        if w.held_by:
            details.append(f"held by {w.held_by}")
        details += [
            f"conflicts with {(c.second if c.first is w else c.first).label} "
            f"({' and '.join(c.shared)})"
            for c in calendar.conflicts
            if w in (c.first, c.second)
        ]
        lines += _event(
            uid=f"{w.release_id}.{w.wave}@relman",
            stamp=stamp,
            start=w.start,
            end=w.slot_end,
            summary=f"{w.application} {w.version}: wave {w.wave} ({w.department})",
            description="\n".join(details),
            categories="relman,wave",
        )
    for f in calendar.freezes:
        holds = "every release" if f.scope == ORGANISATION else ", ".join(f.releases)
        lines += _event(
            uid=f"freeze-{f.uid}@relman",
            stamp=stamp,
            start=f.freeze.start,
            end=f.freeze.end,
            summary=f"{f.scope.capitalize()} freeze: {f.freeze.reason}",
            description=f"no deployment step starts; holds {holds}",
            categories="relman,freeze",
        )
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)


def _event(
    *,
    uid: str,
    stamp: datetime,
    start: datetime,
    end: datetime,
    summary: str,
    description: str,
    categories: str,
) -> list[str]:
    return [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{_stamp(stamp)}",
        f"DTSTART:{_stamp(start)}",
        f"DTEND:{_stamp(end)}",
        f"SUMMARY:{ics_text(summary)}",
        f"DESCRIPTION:{ics_text(description)}",
        f"CATEGORIES:{categories}",
        # The release's time, not the reader's: it does not make them busy.
        "TRANSP:TRANSPARENT",
        "END:VEVENT",
    ]
