"""Across releases: ``relman calendar`` (what is still to run, freezes, conflicts) and
``relman report`` (DORA figures and approval waits over a period)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from client.commands.common import OutputOption, WorkerWaitOption, run
from client.output import OutputFormat, emit

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo


class CalendarFormat(StrEnum):
    """How ``relman calendar`` prints: for people, scripts, or calendar applications."""

    text = "text"
    json = "json"
    ics = "ics"


ApplicationOption = Annotated[
    str | None, typer.Option("--application", help="only releases of this application")
]
DepartmentOption = Annotated[
    str | None, typer.Option("--department", help="only waves (and gates) of this department")
]


def _zone(name: str | None) -> ZoneInfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from client.change_calendar import local_zone
    from common.errors import BadInput

    if name is None:
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadInput(f"--tz: unknown time zone {name!r}") from None


def calendar(
    days: Annotated[
        int, typer.Option("--days", min=1, max=366, help="how many days the calendar spans")
    ] = 14,
    department: DepartmentOption = None,
    application: ApplicationOption = None,
    tz: Annotated[
        str | None,
        typer.Option(
            "--tz",
            metavar="ZONE",
            help="the time zone to show times and days in, e.g. Europe/Berlin (default: "
            "this machine's, from TZ or /etc/localtime)",
        ),
    ] = None,
    starting: Annotated[
        datetime | None,
        typer.Option(
            "--from",
            help="start the calendar at this time (default: now; without an offset, in --tz)",
        ),
    ] = None,
    wait_for_worker: WorkerWaitOption = None,
    output: Annotated[
        CalendarFormat,
        typer.Option(
            "--output",
            "-o",
            help="text for people, json for scripts, ics for calendar applications",
            case_sensitive=False,
        ),
    ] = CalendarFormat.text,
) -> None:
    """Waves of running releases still to run: their next opening (in the wave's time and
    yours), open gates, the freezes in force (release and organisation) and conflicts
    (waves of two releases that could run at once on a department or application)."""
    from client import portfolio
    from client.change_calendar import build_calendar, to_ics
    from client.identity import readable_policy
    from client.workers import worker_wait
    from common.errors import CliError

    zone = _zone(tz)
    now = datetime.now(UTC)
    if starting is not None:
        now = starting if starting.tzinfo else starting.replace(tzinfo=zone)
    wait = worker_wait(wait_for_worker)
    policy = readable_policy()
    releases, not_read = run(portfolio.running_releases(application, department, wait))
    calendar = build_calendar(
        releases,
        list(policy.freezes) if policy else [],
        now,
        days,
        zone,
        department=department,
        policy=policy.version if policy else None,
        not_read=not_read,
    )
    if output == CalendarFormat.ics:
        sys.stdout.flush()
        sys.stdout.buffer.write(to_ics(calendar, datetime.now(UTC)).encode())
        sys.stdout.buffer.flush()
    else:
        emit(calendar, OutputFormat(output.value))
    if not_read:
        raise CliError(
            f"could not read {len(not_read)} running release(s), left out above: "
            + "; ".join(f"{n.release_id} ({n.reason})" for n in not_read)
        )


def parse_since(text: str, now: datetime) -> datetime:
    """``30d``, ``12h`` (that long before ``now``) or a date or time (UTC without an
    offset); bad input otherwise, or if it is not before ``now``."""
    from common.errors import BadInput
    from models.durations import parse_duration

    value = text.strip()
    try:
        since = now - parse_duration(value.lower())
    except ValueError:
        try:
            since = datetime.fromisoformat(value)
        except ValueError:
            raise BadInput(
                f"--since: invalid value {text!r} (write a duration like 30d or 12h, or a "
                "date like 2026-11-01)"
            ) from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    except OverflowError:
        raise BadInput(f"--since: {text!r} reaches too far back") from None
    if since >= now:
        raise BadInput(f"--since: {text!r} is not in the past")
    return since


def report(
    since: Annotated[
        str,
        typer.Option(
            "--since",
            metavar="DURATION|DATE",
            help="releases that ended since then: a duration back from now (30d, 12h) or a "
            "date (2026-11-01, UTC)",
        ),
    ] = "30d",
    application: ApplicationOption = None,
    department: DepartmentOption = None,
    timelines: Annotated[
        int,
        typer.Option(
            "--timelines",
            min=0,
            help="read the timelines of at most this many of the most recently ended releases "
            "(for lead time from first approval, time to restore, approval waits); 0: none",
        ),
    ] = 200,
    chart: Annotated[
        Path | None,
        typer.Option(
            "--chart",
            metavar="FILE.png|FILE.svg",
            help="also draw the weekly series into this file (needs matplotlib: the "
            "relman[chart] extra)",
        ),
    ] = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """DORA figures over a period: deployment frequency, lead time, change failure rate,
    time to restore; and how long each approver group makes gates wait (p50/p90)."""
    from client import portfolio
    from client.report import CHART_FORMATS, build_report, draw_chart
    from common.errors import BadInput, CliError

    now = datetime.now(UTC)
    start = parse_since(since, now)
    if chart is not None:
        if chart.suffix.lower() not in CHART_FORMATS:
            raise BadInput(f"--chart: name a .png or .svg file (got {str(chart)!r})")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError(
                "--chart needs matplotlib, which is not installed: pip install 'relman[chart]'"
            ) from None
    found = run(portfolio.report_releases(start, application, department, timelines))
    result = build_report(
        found.releases,
        start,
        now,
        application=application,
        department=department,
        timeline_limit=timelines,
        event_limit=portfolio.EVENT_LIMIT,
        not_read=found.not_read,
    )
    if chart is not None:
        try:
            draw_chart(result, chart)
        except OSError as exc:
            raise CliError(f"--chart: cannot write {chart}: {exc.strerror or exc}") from None
        result.chart = str(chart)
    emit(result, output)
