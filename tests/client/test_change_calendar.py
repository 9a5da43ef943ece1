"""``relman calendar``'s logic: which waves are still to run and when they could, freezes,
conflicts, the day strip in the viewer's zone, and the iCalendar file (exact text)."""

# ruff: noqa: E501 (the expected calendar is a 160-column table, as relman prints it)

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from client.change_calendar import (
    CalendarWave,
    Gate,
    build_calendar,
    find_conflicts,
    fold,
    ics_text,
    release_freezes,
    remaining_waves,
    to_ics,
)
from client.output import console
from client.schedule import project, timeline_rows
from models.loader import parse_plan
from models.plan import Freeze, ReleasePlan
from models.status import PendingApproval, ReleasePhase, ReleaseStatus, WavePhase
from workflows.release_state import initial_status

# A Monday, 06:00 UTC: 08:00 in Berlin, 02:00 in New York (summer time).
NOW = datetime(2031, 6, 2, 6, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2031, 6, day, hour, minute, tzinfo=UTC)


def freeze(start: datetime, end: datetime, reason: str) -> dict[str, Any]:
    return {"start": start.isoformat(), "end": end.isoformat(), "reason": reason}


def plan(
    release_id: str,
    application: str = "payments",
    *,
    finance_days: str = "mon-fri",
    freezes: list[dict[str, Any]] | None = None,
    department: str = "finance",
) -> ReleasePlan:
    """finance (gated by finance-cab, 09:00-17:00 Berlin, two steps baking 1h each), then
    operations (22:00-02:00 New York, one step)."""
    return parse_plan(
        {
            "id": release_id,
            "application": application,
            "version": "2.4.0",
            "requested_by": "alice",
            "targets": [
                {
                    "name": n,
                    "kind": "ssm_parameter",
                    "parameter": f"/{release_id}/{n}",
                    "value": "1",
                }
                for n in ("api", "ops")
            ],
            "waves": [
                {
                    "name": "finance",
                    "department": department,
                    "targets": ["api"],
                    "approval": {"groups": {"finance-cab": 1}},
                    "window": {
                        "timezone": "Europe/Berlin",
                        "days": finance_days,
                        "start": "09:00",
                        "end": "17:00",
                    },
                    "traffic": [50, 100],
                    "bake": "1h",
                },
                {
                    "name": "operations",
                    "department": "operations",
                    "targets": ["ops"],
                    "after": ["finance"],
                    "window": {
                        "timezone": "America/New_York",
                        "days": "mon-fri",
                        "start": "22:00",
                        "end": "02:00",
                    },
                },
            ],
            "freezes": freezes or [],
        }
    )


def awaiting(p: ReleasePlan) -> ReleaseStatus:
    """The release's status while its finance gate waits for bob or carol."""
    status = initial_status(p)
    status.phase = ReleasePhase.AWAITING_APPROVAL
    status.wave("finance").phase = WavePhase.AWAITING_APPROVAL
    status.pending_approvals = [
        PendingApproval(
            wave="finance",
            missing={"finance-cab": 1},
            eligible_approvers=["bob", "carol"],
            deadline=utc(4, 9),
        )
    ]
    return status


def brief(waves: list[CalendarWave]) -> list[tuple[Any, ...]]:
    return [(w.wave, w.phase, w.start, w.end, w.slot_end, w.held_by, w.gate) for w in waves]


# --- projection ------------------------------------------------------------------------------


def test_a_gated_wave_and_the_wave_after_it_are_projected_past_windows():
    p = plan("rel-a")
    assert brief(remaining_waves(p, awaiting(p), [], NOW)) == [
        # opens 09:00 Berlin; two steps of an hour; may run until the window closes at 17:00
        (
            "finance",
            "awaiting_approval",
            utc(2, 7),
            utc(2, 9),
            utc(2, 15),
            "waiting for its window",
            Gate("open", {"finance-cab": 1}, ("bob", "carol"), utc(4, 9)),
        ),
        # after finance's projected end: the next New York evening, 22:00-02:00
        ("operations", "pending", utc(3, 2), utc(3, 2), utc(3, 6), "after finance", None),
    ]


def test_a_freeze_pushes_a_wave_to_the_next_opening_after_it():
    p = plan("rel-a", freezes=[freeze(utc(1, 0), utc(3, 0), "billing run")])
    finance, operations = remaining_waves(p, awaiting(p), [], NOW)
    assert (finance.start, finance.held_by) == (utc(3, 7), "freeze: billing run")
    assert (operations.start, operations.held_by) == (utc(4, 2), "after finance")


def test_an_organisation_freeze_holds_every_release():
    p = plan("rel-a")
    year_end = Freeze(start=utc(1, 0), end=utc(2, 12), reason="quarter close")
    finance, _ = remaining_waves(p, awaiting(p), [year_end], NOW)
    # 12:00 UTC is 14:00 in Berlin: the window is still open when the freeze ends
    assert (finance.start, finance.held_by) == (utc(2, 12), "freeze: quarter close")


def test_done_waves_are_left_out_and_a_deploying_wave_runs_from_now():
    p = parse_plan(
        plan("rel-a").model_dump(mode="json")
        | {
            "waves": [
                plan("rel-a").waves[0].model_dump(mode="json", exclude_none=True),
                plan("rel-a").waves[1].model_dump(mode="json", exclude_none=True)
                | {"traffic": [10, 50, 100], "bake": "30m"},
            ]
        }
    )
    status = initial_status(p)
    status.phase = ReleasePhase.BAKING
    status.wave("finance").phase = WavePhase.COMPLETED
    status.wave("finance").finished_at = NOW - timedelta(hours=1)
    status.wave("operations").phase = WavePhase.BAKING
    status.wave("operations").step = 1
    # steps 50% and 100% still to bake: an hour from now
    assert brief(remaining_waves(p, status, [], NOW)) == [
        (
            "operations",
            "baking",
            NOW,
            NOW + timedelta(hours=1),
            NOW + timedelta(hours=1),
            None,
            None,
        )
    ]


def test_a_release_that_stops_has_nothing_left_to_run():
    p = plan("rel-a")
    failed = awaiting(p)
    failed.wave("finance").phase = WavePhase.REJECTED  # the release is about to stop
    assert remaining_waves(p, failed, [], NOW) == []
    rolling_back = awaiting(p)
    rolling_back.phase = ReleasePhase.ROLLING_BACK
    assert remaining_waves(p, rolling_back, [], NOW) == []


def test_a_paused_release_says_so():
    p = plan("rel-a")
    status = awaiting(p)
    status.paused = True
    assert [w.held_by for w in remaining_waves(p, status, [], NOW)] == [
        "release paused",
        "release paused",
    ]


# --- conflicts and freezes -------------------------------------------------------------------


def test_waves_of_two_releases_that_could_run_at_once_on_a_department_or_application_conflict():
    a, b = plan("rel-a"), plan("rel-b", application="ledger")
    # same application as rel-a, other departments, and only on Wednesdays: never at once
    c = plan("rel-c", finance_days="wed", department="treasury")
    waves = [
        w
        for p in (a, b, c)
        for w in remaining_waves(p, awaiting(p) if p is not c else initial_status(p), [], NOW)
    ]
    found = [
        (x.first.label, x.second.label, x.shared, x.start, x.end)
        for x in find_conflicts(waves, NOW + timedelta(days=14))
    ]
    assert found == [
        ("rel-a finance", "rel-b finance", ("department finance",), utc(2, 7), utc(2, 15)),
        ("rel-a operations", "rel-b operations", ("department operations",), utc(3, 2), utc(3, 6)),
    ]
    # rel-c's operations wave runs Wednesday night: the same department as the others', but
    # days apart
    assert [(w.wave, w.start) for w in waves if w.release_id == "rel-c"] == [
        ("finance", utc(4, 7)),
        ("operations", utc(5, 2)),
    ]
    # beyond the calendar's span a conflict is not shown
    assert find_conflicts(waves, utc(2, 7)) == []


def test_freezes_in_the_span_are_listed_once_with_the_releases_they_hold():
    billing = freeze(utc(3, 0), utc(4, 0), "billing run")
    a = plan("rel-a", freezes=[billing])
    b = plan("rel-b", freezes=[billing, freeze(utc(28, 0), utc(29, 0), "after the span")])
    org = Freeze(start=utc(1, 0), end=utc(2, 8), reason="quarter close")
    found = release_freezes([initial_status(a), initial_status(b)], [org], NOW, utc(9, 6))
    assert [(f.scope, f.freeze.reason, f.releases) for f in found] == [
        ("organisation", "quarter close", ()),
        ("release", "billing run", ("rel-a", "rel-b")),
    ]


# --- the strip, in the viewer's zone ---------------------------------------------------------


def test_the_strip_counts_days_in_the_viewers_zone():
    p = parse_plan(
        plan("rel-a").model_dump(mode="json")
        | {
            "waves": [
                {
                    "name": "late",
                    "department": "finance",
                    "targets": ["api"],
                    "window": {
                        "timezone": "UTC",
                        "days": ["mon"],
                        "start": "23:00",
                        "end": "23:30",
                    },
                }
            ],
            "targets": [plan("rel-a").targets[0].model_dump(mode="json")],
        }
    )
    schedule = project(p, NOW)
    # Monday 23:00 UTC is Tuesday 08:00 in Tokyo
    assert timeline_rows(p, schedule, date(2031, 6, 2), 3) == (
        "2  3  4  ",
        [("late", "#        ")],
    )
    assert timeline_rows(p, schedule, date(2031, 6, 2), 3, tz=ZoneInfo("Asia/Tokyo")) == (
        "2  3  4  ",
        [("late", "   #     ")],
    )


# --- what a person sees ----------------------------------------------------------------------


def two_releases() -> Any:
    a = plan("rel-a", freezes=[freeze(utc(4, 0), utc(5, 0), "billing run")])
    b = plan("rel-b", application="ledger")
    status_b = initial_status(b)
    status_b.phase = ReleasePhase.WAITING_FOR_WINDOW
    status_b.wave("finance").phase = WavePhase.WAITING_FOR_WINDOW
    org = Freeze(start=utc(6, 16), end=utc(9, 6), reason="release train, weekend")
    return build_calendar(
        [(b, status_b), (a, awaiting(a))], [org], NOW, 5, BERLIN, policy="tests-1"
    )


def test_the_calendar_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    two_releases().render(console())
    # (rich pads table titles with spaces to the console's width)
    lines = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert lines == EXPECTED_TEXT.splitlines()


EXPECTED_TEXT = """\
Change calendar: 5 days from Mon 2031-06-02 08:00 Europe/Berlin (gates assumed to pass at once)
                                                                       Waves still to run
┏━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┓
┃                ┃            ┃            ┃                           ┃                        ┃ next opening (wave's     ┃                 ┃                 ┃
┃ release        ┃ wave       ┃ department ┃ gate                      ┃ held by                ┃ time)                    ┃ (Europe/Berlin) ┃ done by         ┃
┡━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━┩
│ rel-a          │ finance    │ finance    │ open: 1 of finance-cab    │ waiting for its window │ Mon 06-02 09:00          │ Mon 06-02 09:00 │ Mon 06-02 11:00 │
│ payments 2.4.0 │            │            │ (bob, carol)              │                        │ mon-fri 09:00-17:00      │                 │                 │
│                │            │            │                           │                        │ Europe/Berlin            │                 │                 │
│ rel-b          │ finance    │ finance    │ passed                    │ waiting for its window │ Mon 06-02 09:00          │ Mon 06-02 09:00 │ Mon 06-02 11:00 │
│ ledger 2.4.0   │            │            │                           │                        │ mon-fri 09:00-17:00      │                 │                 │
│                │            │            │                           │                        │ Europe/Berlin            │                 │                 │
│ rel-a          │ operations │ operations │ -                         │ after finance          │ Mon 06-02 22:00          │ Tue 06-03 04:00 │ Tue 06-03 04:00 │
│ payments 2.4.0 │            │            │                           │                        │ mon-fri 22:00-02:00      │                 │                 │
│                │            │            │                           │                        │ America/New_York         │                 │                 │
│ rel-b          │ operations │ operations │ -                         │ after finance          │ Mon 06-02 22:00          │ Tue 06-03 04:00 │ Tue 06-03 04:00 │
│ ledger 2.4.0   │            │            │                           │                        │ mon-fri 22:00-02:00      │                 │                 │
│                │            │            │                           │                        │ America/New_York         │                 │                 │
└────────────────┴────────────┴────────────┴───────────────────────────┴────────────────────────┴──────────────────────────┴─────────────────┴─────────────────┘
day (Europe/Berlin)  2  3  4  5  6
rel-a finance        #  .  *  .  .
rel-a operations        #  *  .  .
rel-b finance        #  .  .  .  .
rel-b operations        #  .  .  .
                     # deploying   . window open   * frozen
                                                Freezes
┏━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ scope        ┃ from                 ┃ until                ┃ reason                 ┃ holds         ┃
┡━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ release      │ Wed 2031-06-04 02:00 │ Thu 2031-06-05 02:00 │ billing run            │ rel-a         │
│ organisation │ Fri 2031-06-06 18:00 │ Mon 2031-06-09 08:00 │ release train, weekend │ every release │
└──────────────┴──────────────────────┴──────────────────────┴────────────────────────┴───────────────┘
Conflicts:
  rel-a finance and rel-b finance: department finance, Mon 06-02 09:00 to Mon 06-02 17:00
  rel-a operations and rel-b operations: department operations, Tue 06-03 04:00 to Tue 06-03 08:00
"""


def test_the_calendar_as_json() -> None:
    data = two_releases().to_json()
    assert data["from"] == "2031-06-02T06:00:00+00:00"
    assert data["until"] == "2031-06-07T06:00:00+00:00"
    assert (data["days"], data["timezone"], data["organisation_policy"]) == (
        5,
        "Europe/Berlin",
        "tests-1",
    )
    assert data["waves"][0] == {
        "release_id": "rel-a",
        "application": "payments",
        "version": "2.4.0",
        "wave": "finance",
        "department": "finance",
        "phase": "awaiting_approval",
        "window": "mon-fri 09:00-17:00 Europe/Berlin",
        "start": "2031-06-02T07:00:00+00:00",
        "start_local": "2031-06-02T09:00:00+02:00",
        "end": "2031-06-02T09:00:00+00:00",
        "slot_end": "2031-06-02T15:00:00+00:00",
        "gate": {
            "state": "open",
            "groups": {"finance-cab": 1},
            "approvers": ["bob", "carol"],
            "deadline": "2031-06-04T09:00:00+00:00",
        },
        "held_by": "waiting for its window",
    }
    assert [(w["release_id"], w["wave"], w["gate"]) for w in data["waves"][1:]] == [
        (
            "rel-b",
            "finance",
            {"state": "passed", "groups": {"finance-cab": 1}, "approvers": [], "deadline": None},
        ),
        ("rel-a", "operations", None),
        ("rel-b", "operations", None),
    ]
    assert data["freezes"] == [
        {
            "scope": "release",
            "name": None,
            "start": "2031-06-04T00:00:00+00:00",
            "end": "2031-06-05T00:00:00+00:00",
            "reason": "billing run",
            "releases": ["rel-a"],
        },
        {
            "scope": "organisation",
            "name": None,
            "start": "2031-06-06T16:00:00+00:00",
            "end": "2031-06-09T06:00:00+00:00",
            "reason": "release train, weekend",
            "releases": [],
        },
    ]
    assert data["conflicts"] == [
        {
            "waves": [
                {"release_id": "rel-a", "wave": "finance"},
                {"release_id": "rel-b", "wave": "finance"},
            ],
            "shared": ["department finance"],
            "start": "2031-06-02T07:00:00+00:00",
            "end": "2031-06-02T15:00:00+00:00",
        },
        {
            "waves": [
                {"release_id": "rel-a", "wave": "operations"},
                {"release_id": "rel-b", "wave": "operations"},
            ],
            "shared": ["department operations"],
            "start": "2031-06-03T02:00:00+00:00",
            "end": "2031-06-03T06:00:00+00:00",
        },
    ]
    assert data["not_read"] == []


# --- iCalendar -------------------------------------------------------------------------------


def test_text_values_are_escaped_and_long_lines_folded_between_characters():
    assert ics_text("a\\b; c, d\ne") == "a\\\\b\\; c\\, d\\ne"
    line = "DESCRIPTION:" + "x" * 70
    assert fold(line) == "DESCRIPTION:" + "x" * 63 + "\r\n " + "x" * 7
    # 74 ASCII octets, then a two-octet character: it moves to the next line whole
    assert fold("y" * 74 + "é" + "z").split("\r\n") == ["y" * 74, " éz"]
    assert all(len(part.encode()) <= 75 for part in fold("ü" * 100).split("\r\n"))


def test_the_calendar_as_an_icalendar_file():
    text = to_ics(two_releases(), stamp=utc(2, 6, 30))
    assert text == EXPECTED_ICS.replace("\n", "\r\n")


def test_a_calendar_application_reads_every_event_back():
    calendar = two_releases()
    parsed = icalendar.Calendar.from_ical(to_ics(calendar, stamp=utc(2, 6, 30)))
    events = [
        (str(e["UID"]), e.decoded("DTSTART"), e.decoded("DTEND"), str(e["SUMMARY"]))
        for e in parsed.walk("VEVENT")
    ]
    assert events == [
        ("rel-a.finance@relman", utc(2, 7), utc(2, 15), "payments 2.4.0: wave finance (finance)"),
        ("rel-b.finance@relman", utc(2, 7), utc(2, 15), "ledger 2.4.0: wave finance (finance)"),
        (
            "rel-a.operations@relman",
            utc(3, 2),
            utc(3, 6),
            "payments 2.4.0: wave operations (operations)",
        ),
        (
            "rel-b.operations@relman",
            utc(3, 2),
            utc(3, 6),
            "ledger 2.4.0: wave operations (operations)",
        ),
        (events[4][0], utc(4, 0), utc(5, 0), "Release freeze: billing run"),
        (events[5][0], utc(6, 16), utc(9, 6), "Organisation freeze: release train, weekend"),
    ]
    [first] = [e for e in parsed.walk("VEVENT") if e["UID"] == "rel-a.finance@relman"]
    assert str(first["DESCRIPTION"]) == (
        "release rel-a of payments 2.4.0\n"
        "department finance\n"
        "window mon-fri 09:00-17:00 Europe/Berlin\n"
        "gate open: 1 of finance-cab (bob, carol)\n"
        "held by waiting for its window\n"
        "conflicts with rel-b finance (department finance)"
    )


EXPECTED_ICS = """\
BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//relman//change calendar//EN
CALSCALE:GREGORIAN
METHOD:PUBLISH
X-WR-CALNAME:relman change calendar
BEGIN:VEVENT
UID:rel-a.finance@relman
DTSTAMP:20310602T063000Z
DTSTART:20310602T070000Z
DTEND:20310602T150000Z
SUMMARY:payments 2.4.0: wave finance (finance)
DESCRIPTION:release rel-a of payments 2.4.0\\ndepartment finance\\nwindow mon
 -fri 09:00-17:00 Europe/Berlin\\ngate open: 1 of finance-cab (bob\\, carol)
 \\nheld by waiting for its window\\nconflicts with rel-b finance (department
  finance)
CATEGORIES:relman,wave
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:rel-b.finance@relman
DTSTAMP:20310602T063000Z
DTSTART:20310602T070000Z
DTEND:20310602T150000Z
SUMMARY:ledger 2.4.0: wave finance (finance)
DESCRIPTION:release rel-b of ledger 2.4.0\\ndepartment finance\\nwindow mon-f
 ri 09:00-17:00 Europe/Berlin\\ngate passed\\nheld by waiting for its window
 \\nconflicts with rel-a finance (department finance)
CATEGORIES:relman,wave
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:rel-a.operations@relman
DTSTAMP:20310602T063000Z
DTSTART:20310603T020000Z
DTEND:20310603T060000Z
SUMMARY:payments 2.4.0: wave operations (operations)
DESCRIPTION:release rel-a of payments 2.4.0\\ndepartment operations\\nwindow 
 mon-fri 22:00-02:00 America/New_York\\ngate none\\nheld by after finance\\nco
 nflicts with rel-b operations (department operations)
CATEGORIES:relman,wave
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:rel-b.operations@relman
DTSTAMP:20310602T063000Z
DTSTART:20310603T020000Z
DTEND:20310603T060000Z
SUMMARY:ledger 2.4.0: wave operations (operations)
DESCRIPTION:release rel-b of ledger 2.4.0\\ndepartment operations\\nwindow mo
 n-fri 22:00-02:00 America/New_York\\ngate none\\nheld by after finance\\nconf
 licts with rel-a operations (department operations)
CATEGORIES:relman,wave
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:freeze-6498f5b54259dff0@relman
DTSTAMP:20310602T063000Z
DTSTART:20310604T000000Z
DTEND:20310605T000000Z
SUMMARY:Release freeze: billing run
DESCRIPTION:no deployment step starts\\; holds rel-a
CATEGORIES:relman,freeze
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:freeze-a79f4dc93c8560c8@relman
DTSTAMP:20310602T063000Z
DTSTART:20310606T160000Z
DTEND:20310609T060000Z
SUMMARY:Organisation freeze: release train\\, weekend
DESCRIPTION:no deployment step starts\\; holds every release
CATEGORIES:relman,freeze
TRANSP:TRANSPARENT
END:VEVENT
END:VCALENDAR
"""
