"""``relman plan check``'s schedule: when each wave could start, given windows and freezes.

Approvals take unknown time, so the projection assumes gates pass at once; a wave starts
after its predecessors' projected ends (each traffic step plus its bake).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from models.plan import ReleasePlan
from models.validation import wave_order
from workflows import windows

TIMELINE_DAYS = 14
EARLIER_NEVER_STARTS = "an earlier wave can never start"


@dataclass
class WaveSchedule:
    """A wave's projected start and end, and what holds it back."""

    wave: str
    window: str
    earliest: datetime
    start: datetime | None
    end: datetime | None
    held_by: str | None
    timezone: str | None = None  # the window's: the wave's local time

    def to_json(self) -> dict[str, str | None]:
        return {
            "wave": self.wave,
            "window": self.window,
            "timezone": self.timezone,
            "earliest": self.earliest.isoformat(),
            "start": self.start.isoformat() if self.start else None,
            # the same instants in the wave's own time zone
            "start_local": self._local(self.start),
            "end": self.end.isoformat() if self.end else None,
            "end_local": self._local(self.end),
            "held_by": self.held_by,
        }

    def local_text(self, at: datetime | None) -> str:
        """``2026-12-01 09:00 Asia/Tokyo (00:00 UTC)``, or ``-``."""
        return windows.local_and_utc(at, self.timezone) if at else "-"

    def _local(self, at: datetime | None) -> str | None:
        if at is None:
            return None
        return at.astimezone(ZoneInfo(self.timezone) if self.timezone else UTC).isoformat()


def project(plan: ReleasePlan, now: datetime) -> list[WaveSchedule]:
    """Each wave's projected schedule if the release were submitted at ``now``."""
    ends: dict[str, datetime | None] = {}
    out = []
    for name in wave_order(plan):
        wave = plan.wave(name)
        pred_ends = [ends.get(p) for p in wave.after]
        zone = wave.window.timezone if wave.window else None
        if any(e is None for e in pred_ends):
            out.append(
                WaveSchedule(
                    name, _window(wave.window), now, None, None, EARLIER_NEVER_STARTS, zone
                )
            )
            ends[name] = None
            continue
        earliest = max([now, *(e for e in pred_ends if e is not None)])
        start = windows.next_start(wave.window, plan.freezes, earliest)
        held_by = None
        if start is None:
            held_by = "its window never opens outside freezes within a year"
        elif start > earliest:
            freeze = windows.active_freeze(plan.freezes, earliest)
            held_by = f"freeze: {freeze.reason}" if freeze else "waiting for its window"
        end = start + wave.bake * len(wave.traffic) if start else None
        ends[name] = end
        out.append(WaveSchedule(name, _window(wave.window), earliest, start, end, held_by, zone))
    return out


def never_starting(plan: ReleasePlan, schedule: list[WaveSchedule]) -> list[str]:
    """``waves[i].window: ...`` for each wave that could never start (the plan's fault)."""
    index = {w.name: i for i, w in enumerate(plan.waves)}
    return [
        f"waves[{index[item.wave]}].window: wave {item.wave} can never start: {item.held_by}"
        for item in schedule
        if item.start is None and item.held_by != EARLIER_NEVER_STARTS
    ]


def _window(window: object) -> str:
    return windows.describe_window(window) if window is not None else "any time"  # type: ignore[arg-type]


def timeline_rows(
    plan: ReleasePlan,
    schedule: list[WaveSchedule],
    today: date,
    days: int = TIMELINE_DAYS,
    tz: tzinfo = UTC,
) -> tuple[str, list[tuple[str, str]]]:
    """A day-per-column strip per wave: ``.`` window open, ``*`` frozen, ``#`` deploying.

    Days run midnight to midnight in ``tz``. Returns the header (day numbers) and one
    (wave, strip) row per wave.
    """
    header = "".join(f"{(today + timedelta(d)).day % 100:<3}" for d in range(days))
    rows = []
    for item in schedule:
        wave = plan.wave(item.wave)
        cells = []
        for d in range(days):
            day = today + timedelta(d)
            noon = datetime(day.year, day.month, day.day, 12, tzinfo=tz)
            day_start = datetime(day.year, day.month, day.day, tzinfo=tz)
            day_end = day_start + timedelta(days=1)
            deploying = (
                item.start is not None
                and item.end is not None
                and item.start < day_end
                and max(item.end, item.start + timedelta(minutes=1)) > day_start
            )
            if deploying:
                cells.append("#")
            elif windows.active_freeze(plan.freezes, noon):
                cells.append("*")
            elif wave.window is None or _open_that_day(wave.window, day_start, day_end):
                cells.append(".")
            else:
                cells.append(" ")
        rows.append((item.wave, "".join(f"{c:<3}" for c in cells)))
    return header, rows


def _open_that_day(window: object, day_start: datetime, day_end: datetime) -> bool:
    opened = windows.next_opening(window, day_start)  # type: ignore[arg-type]
    return opened is not None and opened < day_end
