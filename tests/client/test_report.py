"""``relman report``'s figures: what a timeline tells, percentiles, the weekly series, the
text, JSON and chart a release manager gets (exact), and how ``--since`` is read."""

# ruff: noqa: E501 (the expected report holds full-width tables, as relman prints it)

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from client.commands.overview import parse_since
from client.output import console
from client.report import (
    GateWait,
    ReleaseFacts,
    TimelineFacts,
    build_report,
    draw_chart,
    percentile,
    short,
    timeline_facts,
)
from common.errors import BadInput
from models.status import (
    ApprovalRecord,
    ReleasePhase,
    ReleaseStatus,
    TimelineEvent,
    WaveStatus,
)

T = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def event(kind: str, after: timedelta, wave: str | None = None) -> TimelineEvent:
    return TimelineEvent(at=T + after, kind=kind, message=kind, wave=wave)


def approval(who: str, groups: list[str], after: timedelta, decision: str = "approved"):
    return ApprovalRecord(approver=who, decision=decision, groups=groups, at=T + after)


def status(phase: ReleasePhase, waves: list[WaveStatus], timeline: list[TimelineEvent]):
    return ReleaseStatus(
        release_id="rel-1",
        application="payments",
        version="2.4.0",
        requested_by="alice",
        phase=phase,
        started_at=T,
        finished_at=T + timedelta(hours=6),
        waves=waves,
        timeline=timeline,
    )


# --- what a timeline tells -------------------------------------------------------------------


def test_each_group_waits_until_it_gave_the_approvals_it_owed():
    finance = WaveStatus(
        name="finance",
        department="finance",
        required_approvals={"finance-cab": 2, "ops-leads": 1},
        approvals=[
            approval("bob", ["finance-cab"], minutes(10)),
            approval("dave", ["ops-leads"], minutes(20)),
            approval("carol", ["finance-cab", "security"], minutes(50)),
        ],
    )
    operations = WaveStatus(
        name="operations",
        department="operations",
        required_approvals={"ops-leads": 1},
        approvals=[approval("erin", ["ops-leads"], minutes(180), "rejected")],
    )
    facts = timeline_facts(
        status(
            ReleasePhase.REJECTED,
            [finance, operations],
            [
                event("wave_awaiting_approval", minutes(0), "finance"),
                event("approved", minutes(10), "finance"),
                event("wave_awaiting_approval", minutes(120), "operations"),
            ],
        )
    )
    assert facts == TimelineFacts(
        first_approval=T + minutes(10),
        restore=None,  # rejected: nothing broke
        gate_waits=(
            GateWait("finance-cab", "finance", minutes(50)),  # its second approval
            GateWait("ops-leads", "finance", minutes(20)),
            GateWait("ops-leads", "operations", None),  # rejected before ops-leads approved
        ),
    )


def test_time_to_restore_runs_from_the_alarm_to_the_end_of_the_rollback():
    timeline = [
        event("alarm", minutes(30), "edge"),
        event("wave_failed", minutes(31), "edge"),
        event("rollback_started", minutes(31)),
        event("rollback_finished", minutes(42)),
        event("finished", minutes(42)),
    ]
    assert timeline_facts(status(ReleasePhase.ROLLED_BACK, [], timeline)).restore == minutes(12)
    # an alarm checked before the wave started fails it without an alarm event
    assert timeline_facts(
        status(ReleasePhase.ROLLED_BACK_WITH_SKIPS, [], timeline[1:])
    ).restore == minutes(11)
    # a release aborted by its operator broke nothing: there was nothing to restore
    aborted = [event("aborted", minutes(5)), *timeline[2:]]
    assert timeline_facts(status(ReleasePhase.ROLLED_BACK, [], aborted)).restore is None


def test_percentiles_are_nearest_rank():
    values = [timedelta(seconds=s) for s in (10, 1, 9, 2, 8, 3, 7, 4, 6, 5)]
    assert percentile(values, 0.5) == timedelta(seconds=5)
    assert percentile(values, 0.9) == timedelta(seconds=9)
    assert percentile(values[:2], 0.5) == timedelta(seconds=1)
    assert percentile(values[:2], 0.9) == timedelta(seconds=10)
    assert percentile([], 0.5) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.9, "0s"),
        (40, "40s"),
        (725, "12m 5s"),
        (3600, "1h"),
        (5 * 3600 + 12 * 60 + 30, "5h 12m"),
        (2 * 86400 + 3 * 3600 + 59, "2d 3h"),
        (2 * 86400 + 5 * 60, "2d"),
    ],
)
def test_durations_read_as_their_two_largest_units(seconds: float, text: str):
    assert short(timedelta(seconds=seconds)) == text


# --- the report ------------------------------------------------------------------------------


def releases() -> list[ReleaseFacts]:
    hour, day = timedelta(hours=1), timedelta(days=1)
    return [
        ReleaseFacts(
            "r1", "payments", ["finance"], "completed", T, T + 5 * hour,
            timeline=TimelineFacts(
                T + hour, None, (GateWait("finance-cab", "finance", minutes(50)),)
            ),
        ),
        ReleaseFacts(
            "r2", "payments", ["finance", "operations"], "completed", T + 7 * day,
            T + 8 * day + 2 * hour,
            timeline=TimelineFacts(
                T + 7 * day + 3 * hour,
                None,
                (
                    GateWait("finance-cab", "finance", 2 * hour),
                    GateWait("ops-leads", "operations", None),
                ),
            ),
        ),
        ReleaseFacts(
            "r3", "payments", ["finance"], "rolled_back", T + 8 * day, T + 8 * day + hour,
            timeline=TimelineFacts(None, minutes(12)),
        ),
        ReleaseFacts("r4", "payments", ["finance"], "rejected", T + 9 * day, T + 9 * day + hour),
    ]  # fmt: skip


def report(department: str | None = None):
    return build_report(
        releases(),
        T - timedelta(days=1),
        T + timedelta(days=14),
        application="payments",
        department=department,
        timeline_limit=200,
        event_limit=5000,
    )


def test_the_report_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    report().render(console())
    lines = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert lines == EXPECTED_TEXT.splitlines()


EXPECTED_TEXT = """\
Release report: 2026-11-01 09:00 to 2026-11-16 09:00 UTC (15d), application payments
4 release(s): 2 completed, 1 rejected, 1 rolled_back
                                     DORA figures
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ figure                                 ┃ value                      ┃ from          ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ deployment frequency                   │ 0.9 per week (2 completed) │ visibility    │
│ lead time, submitted -> completed      │ p50 5h, p90 1d 2h (2)      │ visibility    │
│ lead time, first approval -> completed │ p50 4h, p90 23h (2)        │ timelines (3) │
│ change failure rate                    │ 33.3% (1 of 3 deployments) │ visibility    │
│ time to restore, alarm -> rolled back  │ p50 12m, p90 12m (1)       │ timelines (3) │
└────────────────────────────────────────┴────────────────────────────┴───────────────┘
Approval wait per group, from the gate's opening
┏━━━━━━━━━━━━━┳━━━━━━━┳━━━━━┳━━━━━┳━━━━━━━━━━━━┓
┃ group       ┃ gates ┃ p50 ┃ p90 ┃ unanswered ┃
┡━━━━━━━━━━━━━╇━━━━━━━╇━━━━━╇━━━━━╇━━━━━━━━━━━━┩
│ finance-cab │ 2     │ 50m │ 2h  │ 0          │
│ ops-leads   │ 0     │ -   │ -   │ 1          │
└─────────────┴───────┴─────┴─────┴────────────┘
                                     Weekly
┏━━━━━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━┓
┃ week of    ┃ completed ┃ failed ┃ failure rate ┃ lead time p50 ┃ restore p50 ┃
┡━━━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━┩
│ 2026-10-26 │ 0         │ 0      │ -            │ -             │ -           │
│ 2026-11-02 │ 1         │ 0      │ 0%           │ 5h            │ -           │
│ 2026-11-09 │ 1         │ 1      │ 50%          │ 1d 2h         │ 12m         │
│ 2026-11-16 │ 0         │ 0      │ -            │ -             │ -           │
└────────────┴───────────┴────────┴──────────────┴───────────────┴─────────────┘
timelines read: 3 of 4 (at most the 200 most recently ended, histories of at most 5000 events)
"""


def test_the_report_as_json() -> None:
    assert report().to_json() == {
        "since": "2026-11-01T09:00:00+00:00",
        "until": "2026-11-16T09:00:00+00:00",
        "application": "payments",
        "department": None,
        "releases": 4,
        "outcomes": {"completed": 2, "rejected": 1, "rolled_back": 1},
        "deployment_frequency": {"completed": 2, "per_week": 0.93, "per_day": 0.13},
        "lead_time": {
            "submitted_to_completed": {"count": 2, "p50_seconds": 18000.0, "p90_seconds": 93600.0},
            "first_approval_to_completed": {
                "count": 2,
                "p50_seconds": 14400.0,
                "p90_seconds": 82800.0,
            },
        },
        "change_failure_rate": {"failures": 1, "deployments": 3, "rate": 0.3333},
        "time_to_restore": {"count": 1, "p50_seconds": 720.0, "p90_seconds": 720.0},
        "approval_wait": [
            {
                "group": "finance-cab",
                "count": 2,
                "p50_seconds": 3000.0,
                "p90_seconds": 7200.0,
                "unanswered": 0,
            },
            {
                "group": "ops-leads",
                "count": 0,
                "p50_seconds": None,
                "p90_seconds": None,
                "unanswered": 1,
            },
        ],
        "weekly": [
            {
                "week": "2026-10-26",
                "completed": 0,
                "failures": 0,
                "change_failure_rate": None,
                "lead_time_p50_seconds": None,
                "time_to_restore_p50_seconds": None,
            },
            {
                "week": "2026-11-02",
                "completed": 1,
                "failures": 0,
                "change_failure_rate": 0.0,
                "lead_time_p50_seconds": 18000.0,
                "time_to_restore_p50_seconds": None,
            },
            {
                "week": "2026-11-09",
                "completed": 1,
                "failures": 1,
                "change_failure_rate": 0.5,
                "lead_time_p50_seconds": 93600.0,
                "time_to_restore_p50_seconds": 720.0,
            },
            {
                "week": "2026-11-16",
                "completed": 0,
                "failures": 0,
                "change_failure_rate": None,
                "lead_time_p50_seconds": None,
                "time_to_restore_p50_seconds": None,
            },
        ],
        "chart": None,
        "timelines": {"read": 3, "of": 4, "limit": 200, "event_limit": 5000, "not_read": []},
    }


def test_with_a_department_only_its_gates_count():
    assert [(g.group, g.waits.count, g.unanswered) for g in report("finance").approval_waits] == [
        ("finance-cab", 2, 0)
    ]


# --- --since ---------------------------------------------------------------------------------

NOW = datetime(2026, 12, 4, 18, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "since"),
    [
        ("30d", NOW - timedelta(days=30)),
        ("12h", NOW - timedelta(hours=12)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T10:00+02:00", datetime(2026, 11, 1, 8, tzinfo=UTC)),
    ],
)
def test_since_is_a_duration_back_or_a_date(text: str, since: datetime):
    assert parse_since(text, NOW) == since


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "last month",
            "--since: invalid value 'last month' (write a duration like 30d or 12h, or a date "
            "like 2026-11-01)",
        ),
        ("0s", "--since: '0s' is not in the past"),
        ("2027-01-01", "--since: '2027-01-01' is not in the past"),
    ],
)
def test_a_since_that_is_no_time_in_the_past_is_bad_input(text: str, error: str):
    with pytest.raises(BadInput) as refused:
        parse_since(text, NOW)
    assert str(refused.value) == error


# --- the chart -------------------------------------------------------------------------------


def test_the_weekly_series_as_png(tmp_path: Path) -> None:
    path = tmp_path / "weekly.png"
    draw_chart(report(), path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (900, 600)


def test_the_weekly_series_as_svg_keeps_its_text_and_draws_the_same_every_time(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "a.svg", tmp_path / "b.svg"
    draw_chart(report(), first)
    draw_chart(report(), second)
    svg = first.read_text()
    assert svg.startswith("<?xml")
    for text in (
        "relman releases 2026-11-01 to 2026-11-16 (payments)",
        "completed",
        "failed",
        "lead time p50",
        "time to restore p50",
        "10-26",
        "11-16",
        "week of (UTC)",
    ):
        assert f">{text}</text>" in svg, text
    assert first.read_bytes() == second.read_bytes()
