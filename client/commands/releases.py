"""Releases: submit, status, list, history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from client.commands.common import OutputOption, run
from client.output import OutputFormat, emit

WATCH_INTERVAL_SECONDS = 2.0
# Latest timeline events `relman status` shows as text (the status query returns no more).
STATUS_EVENTS = 10

ReleaseId = Annotated[str, typer.Argument(metavar="ID", help="the release id")]


def submit(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN", help="the plan's YAML file")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Start a release from PLAN and print its id."""
    from datetime import UTC, datetime

    from client.commands.plan import load, refuse_never_starting
    from client.schedule import project

    plan = load(plan_path)  # before importing the Temporal client: a bad plan fails fast
    refuse_never_starting(plan_path, plan, project(plan, datetime.now(UTC)))
    from client import service
    from client.views import SubmitView

    emit(SubmitView(run(service.submit(plan))), output)


def status(
    release_id: ReleaseId,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="follow until it ends")] = False,
    events: Annotated[
        int | None,
        typer.Option(
            "--events",
            min=0,
            help="latest timeline events to include (text: 10; JSON: all, fetched in "
            "pages; timeline_total is given when cut); `relman history` pages through all",
        ),
    ] = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Phase, waves, targets, pending approvals and recent events of a release."""
    from client import service
    from client.views import StatusView

    tail = events if events is not None or output == OutputFormat.json else STATUS_EVENTS
    if not watch or output == OutputFormat.json:
        if output == OutputFormat.json and events is None:
            # The whole timeline, fetched in pages as `relman history` does: one query's
            # answer would exceed the server's size limits for a release of many targets.
            current = run(service.history(release_id))
        else:
            current = run(service.status(release_id, tail))
        emit(StatusView(current, tail or 0), output)
        return
    from rich.live import Live

    from client.output import console

    with Live(console=console(), auto_refresh=False) as live:

        def show(st):  # type: ignore[no-untyped-def]
            from rich.console import Group

            class _Capture:
                def __init__(self) -> None:
                    self.items: list[object] = []

                def print(self, *items: object, **_: object) -> None:
                    self.items.extend(items)

            capture = _Capture()
            StatusView(st, tail or 0).render(capture)
            live.update(Group(*capture.items), refresh=True)

        run(service.watch(release_id, show, WATCH_INTERVAL_SECONDS, tail))


def list_(
    app_name: Annotated[str | None, typer.Option("--app", help="application")] = None,
    phase: Annotated[str | None, typer.Option("--phase", help="release phase")] = None,
    department: Annotated[
        str | None, typer.Option("--department", help="a department with a wave")
    ] = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Releases, filtered through Temporal visibility."""
    from client import service
    from client.views import ListView

    emit(ListView(run(service.list_releases(app_name, phase, department))), output)


def history(release_id: ReleaseId, output: OutputOption = OutputFormat.text) -> None:
    """The release's complete audit timeline."""
    from client import service
    from client.views import HistoryView

    emit(HistoryView(run(service.history(release_id))), output)
