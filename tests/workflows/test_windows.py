"""Rollout windows and freezes: each assertion names the exact UTC instant it expects.

2026 calendar facts used below: Europe/Berlin springs forward on Sun 29 March (02:00 CET ->
03:00 CEST, at 01:00 UTC) and falls back on Sun 25 October (03:00 CEST -> 02:00 CET, at
01:00 UTC); America/New_York springs forward on Sun 8 March (02:00 EST -> 03:00 EDT, at
07:00 UTC) and falls back on Sun 1 November (02:00 EDT -> 01:00 EST, at 06:00 UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from models.plan import Freeze, Window
from workflows.windows import (
    active_freeze,
    closes_at,
    describe_window,
    is_open,
    local_and_utc,
    next_opening,
    next_start,
)

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
MICRO = timedelta(microseconds=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def window(tz: str, days: Any, start: str, end: str, **extra: Any) -> Window:
    return Window.model_validate(
        {"timezone": tz, "days": days, "start": start, "end": end, **extra}
    )


def freeze(start: datetime, end: datetime, reason: str = "freeze") -> Freeze:
    return Freeze(start=start, end=end, reason=reason)


OFFICE = window(BERLIN, "mon-fri", "09:00", "17:00")


# --- one opening on a DST switch day ------------------------------------------------------

# (window, an instant before the opening, opens at UTC, closes at UTC)
SWITCH_DAY_OPENINGS = {
    # Europe/Berlin, spring forward, Sun 29 March 2026
    "berlin-spring 09:00-17:00 is 8 h": (
        window(BERLIN, "sun", "09:00", "17:00"),
        utc(2026, 3, 28, 12),
        utc(2026, 3, 29, 7),
        utc(2026, 3, 29, 15),
    ),
    "berlin-spring 01:00-09:00 spans the switch: 7 h": (
        window(BERLIN, "sun", "01:00", "09:00"),
        utc(2026, 3, 28, 12),
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 7),
    ),
    "berlin-spring sat 22:00-04:00 crosses midnight: 5 h": (
        window(BERLIN, "sat", "22:00", "04:00"),
        utc(2026, 3, 28, 12),
        utc(2026, 3, 28, 21),
        utc(2026, 3, 29, 2),
    ),
    "berlin-spring 01:00-03:00 loses the missing hour: 1 h": (
        window(BERLIN, "sun", "01:00", "03:00"),
        utc(2026, 3, 28, 12),
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 1),
    ),
    "berlin-spring start 02:30 does not exist: opens 03:00 CEST": (
        window(BERLIN, "sun", "02:30", "04:00"),
        utc(2026, 3, 28, 12),
        utc(2026, 3, 29, 1),
        utc(2026, 3, 29, 2),
    ),
    "berlin-spring end 02:30 does not exist: closes 03:00 CEST": (
        window(BERLIN, "sun", "01:00", "02:30"),
        utc(2026, 3, 28, 12),
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 1),
    ),
    # Europe/Berlin, fall back, Sun 25 October 2026
    "berlin-fall 09:00-17:00 is 8 h": (
        window(BERLIN, "sun", "09:00", "17:00"),
        utc(2026, 10, 24, 12),
        utc(2026, 10, 25, 8),
        utc(2026, 10, 25, 16),
    ),
    "berlin-fall 01:00-09:00 spans the switch: 9 h": (
        window(BERLIN, "sun", "01:00", "09:00"),
        utc(2026, 10, 24, 12),
        utc(2026, 10, 24, 23),
        utc(2026, 10, 25, 8),
    ),
    "berlin-fall sat 22:00-04:00 crosses midnight: 7 h": (
        window(BERLIN, "sat", "22:00", "04:00"),
        utc(2026, 10, 24, 12),
        utc(2026, 10, 24, 20),
        utc(2026, 10, 25, 3),
    ),
    "berlin-fall 01:00-03:00 gains the repeated hour: 3 h": (
        window(BERLIN, "sun", "01:00", "03:00"),
        utc(2026, 10, 24, 12),
        utc(2026, 10, 24, 23),
        utc(2026, 10, 25, 2),
    ),
    "berlin-fall start 02:30 is ambiguous: first occurrence, CEST": (
        window(BERLIN, "sun", "02:30", "04:00"),
        utc(2026, 10, 24, 12),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 3),
    ),
    "berlin-fall end 02:30 is ambiguous: first occurrence, CEST": (
        window(BERLIN, "sun", "00:00", "02:30"),
        utc(2026, 10, 24, 12),
        utc(2026, 10, 24, 22),
        utc(2026, 10, 25, 0, 30),
    ),
    # America/New_York, spring forward, Sun 8 March 2026
    "ny-spring 09:00-17:00 is 8 h": (
        window(NEW_YORK, "sun", "09:00", "17:00"),
        utc(2026, 3, 7, 12),
        utc(2026, 3, 8, 13),
        utc(2026, 3, 8, 21),
    ),
    "ny-spring 00:00-08:00 spans the switch: 7 h": (
        window(NEW_YORK, "sun", "00:00", "08:00"),
        utc(2026, 3, 7, 12),
        utc(2026, 3, 8, 5),
        utc(2026, 3, 8, 12),
    ),
    "ny-spring sat 22:00-04:00 crosses midnight: 5 h": (
        window(NEW_YORK, "sat", "22:00", "04:00"),
        utc(2026, 3, 7, 12),
        utc(2026, 3, 8, 3),
        utc(2026, 3, 8, 8),
    ),
    "ny-spring 01:00-03:00 loses the missing hour: 1 h": (
        window(NEW_YORK, "sun", "01:00", "03:00"),
        utc(2026, 3, 7, 12),
        utc(2026, 3, 8, 6),
        utc(2026, 3, 8, 7),
    ),
    "ny-spring start 02:30 does not exist: opens 03:00 EDT": (
        window(NEW_YORK, "sun", "02:30", "05:00"),
        utc(2026, 3, 7, 12),
        utc(2026, 3, 8, 7),
        utc(2026, 3, 8, 9),
    ),
    # America/New_York, fall back, Sun 1 November 2026
    "ny-fall 09:00-17:00 is 8 h": (
        window(NEW_YORK, "sun", "09:00", "17:00"),
        utc(2026, 10, 31, 12),
        utc(2026, 11, 1, 14),
        utc(2026, 11, 1, 22),
    ),
    "ny-fall 00:00-08:00 spans the switch: 9 h": (
        window(NEW_YORK, "sun", "00:00", "08:00"),
        utc(2026, 10, 31, 12),
        utc(2026, 11, 1, 4),
        utc(2026, 11, 1, 13),
    ),
    "ny-fall sat 22:00-04:00 crosses midnight: 7 h": (
        window(NEW_YORK, "sat", "22:00", "04:00"),
        utc(2026, 10, 31, 12),
        utc(2026, 11, 1, 2),
        utc(2026, 11, 1, 9),
    ),
    "ny-fall 01:00-03:00 gains the repeated hour: 3 h": (
        window(NEW_YORK, "sun", "01:00", "03:00"),
        utc(2026, 10, 31, 12),
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 8),
    ),
    "ny-fall 01:30-01:45 is ambiguous: first occurrence, EDT": (
        window(NEW_YORK, "sun", "01:30", "01:45"),
        utc(2026, 10, 31, 12),
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 5, 45),
    ),
}


@pytest.mark.parametrize(
    ("win", "before", "opens", "closes"),
    SWITCH_DAY_OPENINGS.values(),
    ids=SWITCH_DAY_OPENINGS.keys(),
)
def test_opening_on_switch_days(
    win: Window, before: datetime, opens: datetime, closes: datetime
) -> None:
    assert next_opening(win, before) == opens
    assert closes_at(win, opens) == closes
    # Half-open: open from the first instant, closed at the closing instant.
    assert not is_open(win, opens - MICRO)
    assert is_open(win, opens)
    assert is_open(win, closes - MICRO)
    assert not is_open(win, closes)
    assert closes_at(win, closes) is None


def test_ambiguous_second_occurrence_is_outside_a_first_occurrence_window() -> None:
    win = window(NEW_YORK, "sun", "01:30", "01:45")
    # 06:35 UTC is 01:35 EST, the second time the wall clock shows 01:35 that night.
    assert not is_open(win, utc(2026, 11, 1, 6, 35))
    assert next_opening(win, utc(2026, 11, 1, 6, 35)) == utc(2026, 11, 8, 6, 30)


def test_opening_swallowed_by_the_gap_does_not_happen() -> None:
    win = window(BERLIN, "sun", "02:10", "02:40")
    assert next_opening(win, utc(2026, 3, 28, 12)) == utc(2026, 4, 5, 0, 10)


def test_openings_that_touch_across_the_gap_close_together() -> None:
    # 02:30-02:15 runs 23 h 45 min a day; on 29 March the end of Saturday's opening and the
    # start of Sunday's both fall in the gap, i.e. both at 03:00 CEST: open without a break
    # until Monday 02:15 CEST.
    win = window(BERLIN, ["sat", "sun"], "02:30", "02:15")
    assert closes_at(win, utc(2026, 3, 28, 12)) == utc(2026, 3, 30, 0, 15)
    assert is_open(win, utc(2026, 3, 29, 1))


def test_returns_utc_for_any_input_offset() -> None:
    at = datetime(2026, 1, 14, 10, 0, tzinfo=timezone(timedelta(hours=-5)))  # 15:00 UTC
    opened = next_opening(OFFICE, at)
    closed = closes_at(OFFICE, at)
    assert opened == utc(2026, 1, 14, 15) and opened.tzinfo is UTC
    assert closed == utc(2026, 1, 14, 16) and closed.tzinfo is UTC


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(OFFICE, datetime(2026, 1, 14, 10))


# --- weekdays and midnight ----------------------------------------------------------------


def test_friday_evening_opens_monday_morning() -> None:
    # Fri 16 January 2026 18:00 CET.
    assert not is_open(OFFICE, utc(2026, 1, 16, 17))
    assert next_opening(OFFICE, utc(2026, 1, 16, 17)) == utc(2026, 1, 19, 8)


def test_office_hours_boundaries() -> None:
    # Wed 14 January 2026, CET: open 08:00-16:00 UTC.
    assert next_opening(OFFICE, utc(2026, 1, 14, 8)) == utc(2026, 1, 14, 8)
    assert next_opening(OFFICE, utc(2026, 1, 14, 8) - MICRO) == utc(2026, 1, 14, 8)
    assert closes_at(OFFICE, utc(2026, 1, 14, 8)) == utc(2026, 1, 14, 16)
    assert next_opening(OFFICE, utc(2026, 1, 14, 16)) == utc(2026, 1, 15, 8)
    # Friday's closing instant leads to Monday.
    assert next_opening(OFFICE, utc(2026, 1, 16, 16)) == utc(2026, 1, 19, 8)


def test_saturday_and_sunday_are_closed() -> None:
    assert not is_open(OFFICE, utc(2026, 1, 17, 10))
    assert not is_open(OFFICE, utc(2026, 1, 18, 10))
    assert closes_at(OFFICE, utc(2026, 1, 17, 10)) is None


def test_after_midnight_belongs_to_the_day_the_window_opened() -> None:
    win = window(BERLIN, "fri", "22:00", "02:00")
    # Sat 17 January 2026 01:00 CET: inside Friday's opening.
    assert is_open(win, utc(2026, 1, 17, 0))
    assert closes_at(win, utc(2026, 1, 17, 0)) == utc(2026, 1, 17, 1)
    # Fri 16 January 01:00 CET belongs to Thursday, which is not listed.
    assert not is_open(win, utc(2026, 1, 16, 0))
    assert next_opening(win, utc(2026, 1, 16, 0)) == utc(2026, 1, 16, 21)
    # Sat 23:00 CET and Sun 01:00 CET: Saturday is not listed.
    assert not is_open(win, utc(2026, 1, 17, 22))
    assert next_opening(win, utc(2026, 1, 17, 22)) == utc(2026, 1, 23, 21)


def test_day_range_wraps_over_the_weekend() -> None:
    win = window(NEW_YORK, "fri-mon", "09:00", "17:00")
    # Wed 14 January 2026 12:00 EST -> Fri 16 January 09:00 EST.
    assert next_opening(win, utc(2026, 1, 14, 17)) == utc(2026, 1, 16, 14)
    assert is_open(win, utc(2026, 1, 19, 15))  # Monday 10:00 EST
    assert next_opening(win, utc(2026, 1, 19, 22)) == utc(2026, 1, 23, 14)


# --- date range ---------------------------------------------------------------------------

MAY = window(BERLIN, "mon-sun", "09:00", "17:00", from_date="2026-05-04", until_date="2026-05-06")


def test_date_range_waits_for_from_date() -> None:
    assert next_opening(MAY, utc(2026, 5, 1, 8)) == utc(2026, 5, 4, 7)


def test_date_range_includes_until_date_then_ends() -> None:
    assert next_opening(MAY, utc(2026, 5, 6, 3)) == utc(2026, 5, 6, 7)
    assert next_opening(MAY, utc(2026, 5, 6, 15)) is None
    assert next_start(MAY, [], utc(2026, 5, 6, 15)) is None


def test_date_range_applies_to_the_day_an_opening_starts() -> None:
    night = window(
        BERLIN, "mon-sun", "22:00", "02:00", from_date="2026-05-04", until_date="2026-05-06"
    )
    # Mon 4 May 01:00 CEST belongs to 3 May's opening, before the range.
    assert not is_open(night, utc(2026, 5, 3, 23))
    # Thu 7 May 01:00 CEST belongs to 6 May's opening, the last one.
    assert is_open(night, utc(2026, 5, 6, 23))
    assert closes_at(night, utc(2026, 5, 6, 23)) == utc(2026, 5, 7, 0)
    assert next_opening(night, utc(2026, 5, 7, 0)) is None


def test_far_from_date_is_found_but_beyond_the_start_horizon() -> None:
    win = window(BERLIN, "mon-fri", "09:00", "17:00", from_date="2028-01-03")
    assert next_opening(win, utc(2026, 1, 1)) == utc(2028, 1, 3, 8)
    assert next_start(win, [], utc(2026, 1, 1)) is None


# --- freezes ------------------------------------------------------------------------------

# Berlin, February 2026 (CET, UTC+1): Mon 2 ... Sun 8, Mon 9.
FEB_WEEK = freeze(utc(2026, 2, 1, 23), utc(2026, 2, 8, 23), "release week freeze")


def test_active_freeze_boundaries() -> None:
    assert active_freeze([FEB_WEEK], utc(2026, 2, 1, 23) - MICRO) is None
    assert active_freeze([FEB_WEEK], utc(2026, 2, 1, 23)) == FEB_WEEK
    assert active_freeze([FEB_WEEK], utc(2026, 2, 8, 23) - MICRO) == FEB_WEEK
    assert active_freeze([FEB_WEEK], utc(2026, 2, 8, 23)) is None


def test_overlapping_freezes_report_the_one_ending_last() -> None:
    short = freeze(utc(2026, 2, 3), utc(2026, 2, 4), "short")
    assert active_freeze([short, FEB_WEEK], utc(2026, 2, 3, 12)) == FEB_WEEK


def test_freeze_covering_a_whole_week_moves_start_to_next_monday() -> None:
    assert next_start(OFFICE, [FEB_WEEK], utc(2026, 2, 2, 10)) == utc(2026, 2, 9, 8)


def test_freeze_ending_mid_window_starts_when_it_ends() -> None:
    until_lunch = freeze(utc(2026, 2, 1, 23), utc(2026, 2, 4, 11, 30))  # Wed 12:30 CET
    assert next_start(OFFICE, [until_lunch], utc(2026, 2, 2, 8)) == utc(2026, 2, 4, 11, 30)


def test_freeze_ending_at_window_close_waits_for_next_opening() -> None:
    until_close = freeze(utc(2026, 2, 1, 23), utc(2026, 2, 4, 16))  # Wed 17:00 CET
    assert next_start(OFFICE, [until_close], utc(2026, 2, 2, 8)) == utc(2026, 2, 5, 8)


def test_freeze_starting_later_does_not_delay_an_open_window() -> None:
    afternoon = freeze(utc(2026, 2, 2, 13), utc(2026, 2, 2, 20))
    assert next_start(OFFICE, [afternoon], utc(2026, 2, 2, 9)) == utc(2026, 2, 2, 9)
    assert next_start(OFFICE, [afternoon], utc(2026, 2, 2, 13)) == utc(2026, 2, 3, 8)


def test_adjacent_freezes_act_as_one() -> None:
    first = freeze(utc(2026, 2, 1, 23), utc(2026, 2, 3, 23), "first")  # Mon-Tue
    second = freeze(utc(2026, 2, 3, 23), utc(2026, 2, 5, 11), "second")  # Wed-Thu 12:00
    assert active_freeze([first, second], utc(2026, 2, 3, 23)) == second
    assert next_start(OFFICE, [second, first], utc(2026, 2, 2, 8)) == utc(2026, 2, 5, 11)
    assert next_start(None, [second, first], utc(2026, 2, 2, 8)) == utc(2026, 2, 5, 11)


def test_freeze_then_window_then_freeze_again() -> None:
    # Mon-Tue frozen: Wednesday 09:00 CET. Asked at Wednesday's close, Thursday is frozen
    # until 18:00 CET, after the window closed: Friday 09:00 CET.
    mon_tue = freeze(utc(2026, 2, 1, 23), utc(2026, 2, 3, 23))
    thursday = freeze(utc(2026, 2, 4, 23), utc(2026, 2, 5, 17))
    assert next_start(OFFICE, [mon_tue, thursday], utc(2026, 2, 2, 8)) == utc(2026, 2, 4, 8)
    assert next_start(OFFICE, [mon_tue, thursday], utc(2026, 2, 4, 16)) == utc(2026, 2, 6, 8)


def test_no_window_only_freezes() -> None:
    assert next_start(None, [], utc(2026, 2, 3, 12)) == utc(2026, 2, 3, 12)
    assert next_start(None, [FEB_WEEK], utc(2026, 2, 1, 22)) == utc(2026, 2, 1, 22)
    assert next_start(None, [FEB_WEEK], utc(2026, 2, 1, 23)) == utc(2026, 2, 8, 23)
    assert next_start(None, [FEB_WEEK], utc(2026, 2, 8, 23)) == utc(2026, 2, 8, 23)


def test_freeze_in_another_offset_ends_at_the_same_instant() -> None:
    tokyo = timezone(timedelta(hours=9))
    f = freeze(datetime(2026, 2, 2, 0, tzinfo=tokyo), datetime(2026, 2, 4, 20, 30, tzinfo=tokyo))
    # Ends Wed 4 February 11:30 UTC = 12:30 CET, inside the office window.
    started = next_start(OFFICE, [f], utc(2026, 2, 2, 8))
    assert started == utc(2026, 2, 4, 11, 30)
    assert started is not None and started.tzinfo is UTC


def test_freeze_over_a_dst_switch_opens_in_summer_time() -> None:
    # Frozen until Mon 30 March 2026 00:00 CEST; the office opens 09:00 CEST = 07:00 UTC.
    easter = freeze(utc(2026, 3, 20), utc(2026, 3, 29, 22))
    assert next_start(OFFICE, [easter], utc(2026, 3, 23, 9)) == utc(2026, 3, 30, 7)


def test_endless_freeze_gives_up_at_the_horizon() -> None:
    forever = freeze(utc(2026, 1, 1), utc(2030, 1, 1))
    assert next_start(OFFICE, [forever], utc(2026, 2, 2, 8)) is None
    assert next_start(None, [forever], utc(2026, 2, 2, 8)) is None
    assert next_start(None, [forever], utc(2026, 2, 2, 8), horizon=timedelta(days=5 * 365)) == (
        utc(2030, 1, 1)
    )


# --- description --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("win", "text"),
    [
        (OFFICE, "mon-fri 09:00-17:00 Europe/Berlin"),
        (window(BERLIN, "mon-sun", "22:00", "02:00"), "daily 22:00-02:00 Europe/Berlin"),
        (window(NEW_YORK, "fri-mon", "09:00", "17:00"), "fri-mon 09:00-17:00 America/New_York"),
        (
            window(NEW_YORK, ["sun", "sat"], "06:00", "08:30"),
            "sat,sun 06:00-08:30 America/New_York",
        ),
        (
            window(BERLIN, ["fri", "mon", "wed"], "09:00", "10:00"),
            "mon,wed,fri 09:00-10:00 Europe/Berlin",
        ),
        (MAY, "daily 09:00-17:00 Europe/Berlin, 2026-05-04 to 2026-05-06"),
        (
            window(BERLIN, "tue", "09:00", "17:00", until_date="2026-06-30"),
            "tue 09:00-17:00 Europe/Berlin, until 2026-06-30",
        ),
    ],
)
def test_describe_window(win: Window, text: str) -> None:
    assert describe_window(win) == text


@pytest.mark.parametrize(
    ("at", "zone", "text"),
    [
        # Tokyo is UTC+9: its 09:00 is midnight UTC the same day.
        (
            datetime(2026, 12, 1, 0, tzinfo=UTC),
            "Asia/Tokyo",
            "2026-12-01 09:00 Asia/Tokyo (00:00 UTC)",
        ),
        # Tokyo 08:00 is 23:00 UTC the day before: the UTC date is shown.
        (
            datetime(2026, 11, 30, 23, tzinfo=UTC),
            "Asia/Tokyo",
            "2026-12-01 08:00 Asia/Tokyo (2026-11-30 23:00 UTC)",
        ),
        # Summer time: Berlin 09:00 is 07:00 UTC in July, 08:00 in December.
        (datetime(2026, 7, 6, 7, tzinfo=UTC), BERLIN, "2026-07-06 09:00 Europe/Berlin (07:00 UTC)"),
        (
            datetime(2026, 12, 7, 8, tzinfo=UTC),
            BERLIN,
            "2026-12-07 09:00 Europe/Berlin (08:00 UTC)",
        ),
        # A freeze may end off the minute; without a zone (no window) UTC alone.
        (datetime(2026, 12, 7, 8, 0, 30, tzinfo=UTC), None, "2026-12-07 08:00:30 UTC"),
        (datetime(2026, 12, 7, 8, tzinfo=UTC), "UTC", "2026-12-07 08:00 UTC"),
    ],
)
def test_local_and_utc(at: datetime, zone: str | None, text: str) -> None:
    assert local_and_utc(at, zone) == text
