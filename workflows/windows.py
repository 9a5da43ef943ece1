"""Rollout-window and freeze arithmetic as plain functions.

No Temporal or boto3 here: the release workflow (with ``workflow.now()``), ``relman plan
check`` and the tests all call these same functions. Every datetime in must be aware; every
datetime out is UTC.

A window opens once on each listed local day. Its length is wall-clock based: a local start
that does not exist (spring-forward gap) opens at the first valid instant after the gap, an
ambiguous local time (fall-back fold) means its first occurrence, so ``09:00-17:00`` lasts
8 h, or 7 h / 9 h of real time on a switch day. An ``end`` before ``start`` crosses midnight
and that opening belongs to the day it started on (``fri 22:00-02:00`` is open Saturday
01:00). ``from_date``/``until_date`` select the days a window opens on, inclusive.

Openings are half-open ``[start, end)`` and so are freezes: at a freeze's end, work may start.

Workflows import this module inside ``workflow.unsafe.imports_passed_through()``: in the
sandbox ``zoneinfo.ZoneInfo`` is a restricted proxy, which ``datetime`` refuses as a tzinfo
("tzinfo argument must be None or of a tzinfo subclass"). The module is pure and stateless,
so passing it through is safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from models.plan import WEEKDAYS, Freeze, Window

# How far ahead next_start looks before it declares that nothing can start.
SEARCH_HORIZON = timedelta(days=400)

# Days either side of an instant's local date whose openings may contain it: the day
# before for windows crossing midnight, one more for a gap that swallows a whole local
# day (Pacific/Apia skipped 2011-12-30).
_DAYS_BEFORE = 2


class Opening(NamedTuple):
    """One opening of a window, in UTC: open from ``start`` (inclusive) to ``end``."""

    day: date
    start: datetime
    end: datetime


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware, got {at.isoformat()}")
    return at.astimezone(UTC)


def _resolve_local(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock ``wall`` on ``day`` in ``tz``.

    Ambiguous (fall back): the first occurrence. Non-existent (spring forward): the first
    valid instant after the gap, which is the transition itself.
    """
    first = datetime.combine(day, wall, tzinfo=tz)  # fold=0
    candidate = first.astimezone(UTC)
    if candidate.astimezone(tz).replace(tzinfo=None) == first.replace(tzinfo=None):
        return candidate
    # In a gap zoneinfo reads fold=0 with the offset before the switch (an instant after
    # it) and fold=1 with the offset after the switch (an instant before it). The switch
    # lies between; find the first second that already carries the new offset.
    after = candidate
    before = first.replace(fold=1).astimezone(UTC)
    new_offset = after.astimezone(tz).utcoffset()
    lo, hi = 0, int((after - before).total_seconds())
    while lo < hi:
        mid = (lo + hi) // 2
        if (before + timedelta(seconds=mid)).astimezone(tz).utcoffset() == new_offset:
            hi = mid
        else:
            lo = mid + 1
    return before + timedelta(seconds=lo)


def _opening_on(window: Window, day: date) -> Opening | None:
    """The opening that starts on local ``day``, or None if the window does not open then.

    An opening swallowed whole by a gap (``02:10-02:40`` on a spring-forward night) would be
    empty and does not happen.
    """
    if WEEKDAYS[day.weekday()] not in window.days:
        return None
    if window.from_date is not None and day < window.from_date:
        return None
    if window.until_date is not None and day > window.until_date:
        return None
    tz = ZoneInfo(window.timezone)
    end_day = day + timedelta(days=1) if window.end < window.start else day
    start = _resolve_local(day, window.start, tz)
    end = _resolve_local(end_day, window.end, tz)
    if end <= start:
        return None
    return Opening(day, start, end)


def _local_day(window: Window, at: datetime) -> date:
    return at.astimezone(ZoneInfo(window.timezone)).date()


def openings(window: Window, at: datetime) -> Iterator[Opening]:
    """Openings that end after ``at``, in order; stops after ``until_date``.

    Without ``until_date`` the iterator is endless: bound it with the caller's horizon.
    """
    at = _utc(at)
    day = _local_day(window, at) - timedelta(days=_DAYS_BEFORE)
    if window.from_date is not None and day < window.from_date:
        day = window.from_date
    while window.until_date is None or day <= window.until_date:
        opening = _opening_on(window, day)
        if opening is not None and opening.end > at:
            yield opening
        day += timedelta(days=1)


def is_open(window: Window, at: datetime) -> bool:
    """Whether ``window`` is open at ``at``."""
    at = _utc(at)
    opening = next(openings(window, at), None)
    return opening is not None and opening.start <= at


def next_opening(window: Window, at: datetime) -> datetime | None:
    """``at`` if the window is open then, else when it next opens; None if it never will."""
    at = _utc(at)
    opening = next(openings(window, at), None)
    return None if opening is None else max(opening.start, at)


def closes_at(window: Window, at: datetime) -> datetime | None:
    """When the opening that contains ``at`` closes; None if the window is closed at ``at``.

    Openings that touch (possible only when a DST gap moves an end onto the next start)
    count as one: the answer is when the window is really closed.
    """
    at = _utc(at)
    close: datetime | None = None
    for opening in openings(window, at):
        if close is None:
            if opening.start > at:
                return None
        elif opening.start > close:
            break
        close = opening.end
    return close


def active_freeze(freezes: Iterable[Freeze], at: datetime) -> Freeze | None:
    """The freeze in force at ``at`` (start inclusive, end exclusive), or None.

    When several overlap, the one that ends last, so "frozen until" is the real answer
    for that freeze; ties go to the first listed.
    """
    at = _utc(at)
    found: Freeze | None = None
    for freeze in freezes:
        if freeze.start <= at < freeze.end and (found is None or freeze.end > found.end):
            found = freeze
    return found


def next_start(
    window: Window | None,
    freezes: Iterable[Freeze],
    at: datetime,
    horizon: timedelta = SEARCH_HORIZON,
) -> datetime | None:
    """The earliest instant >= ``at`` inside ``window`` (if any) and outside every freeze.

    None when no such instant lies within ``horizon`` of ``at`` (or the window's date range
    has ended). A freeze that ends while the window is still open lets work start at the
    freeze's end.
    """
    at = _utc(at)
    freezes = list(freezes)
    limit = at + horizon
    candidate = at
    # Every pass moves the candidate strictly forward: past a closed stretch of the window
    # or to the end of a freeze, so the loop ends within the horizon.
    while candidate <= limit:
        if window is not None:
            opened = next_opening(window, candidate)
            if opened is None or opened > limit:
                return None
            candidate = opened
        freeze = active_freeze(freezes, candidate)
        if freeze is None:
            return candidate
        candidate = freeze.end.astimezone(UTC)
    return None


def _describe_days(days: Iterable[str]) -> str:
    present = sorted({WEEKDAYS.index(d) for d in days})
    if len(present) == len(WEEKDAYS):
        return "daily"
    runs: list[list[int]] = []
    for index in present:
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    # A run through Sunday continues into Monday: fri-mon, not mon,fri-sun.
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][-1] == len(WEEKDAYS) - 1:
        runs[0] = runs.pop() + runs[0]
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{WEEKDAYS[run[0]]}-{WEEKDAYS[run[-1]]}")
        else:
            parts.extend(WEEKDAYS[i] for i in run)
    return ",".join(parts)


def describe_window(window: Window) -> str:
    """A one-line summary, e.g. ``mon-fri 09:00-17:00 Europe/Berlin``."""
    text = (
        f"{_describe_days(window.days)} "
        f"{window.start.strftime('%H:%M')}-{window.end.strftime('%H:%M')} {window.timezone}"
    )
    if window.from_date is not None and window.until_date is not None:
        text += f", {window.from_date.isoformat()} to {window.until_date.isoformat()}"
    elif window.from_date is not None:
        text += f", from {window.from_date.isoformat()}"
    elif window.until_date is not None:
        text += f", until {window.until_date.isoformat()}"
    return text


def local_and_utc(at: datetime, timezone: str | None) -> str:
    """``2026-12-01 09:00 Asia/Tokyo (00:00 UTC)``: an instant in a wave's own time zone
    beside UTC (the UTC date too when it differs); UTC alone without a zone. Seconds are
    shown only when there are any (a window opens on the minute; a freeze may end off it).
    """
    utc = _utc(at)
    spec = "%Y-%m-%d %H:%M:%S" if utc.second else "%Y-%m-%d %H:%M"
    if timezone is None or timezone in ("UTC", "Etc/UTC"):
        return f"{utc.strftime(spec)} UTC"
    local = utc.astimezone(ZoneInfo(timezone))
    utc_spec = spec if utc.date() != local.date() else spec.removeprefix("%Y-%m-%d ")
    return f"{local.strftime(spec)} {timezone} ({utc.strftime(utc_spec)} UTC)"


def wait_reason(
    window: Window | None, freezes: Iterable[Freeze], at: datetime, start: datetime
) -> str:
    """Why work waits at ``at`` until ``start``: the freeze in force now, or the one whose
    end is the start it put off; else the window."""
    freezes = list(freezes)
    freeze = active_freeze(freezes, at) or next((f for f in freezes if f.end == start), None)
    if freeze is not None:
        return f"freeze: {freeze.reason}"
    return f"window {describe_window(window)}" if window is not None else "window"
