"""Following a release to its end: ``relman status --watch`` and ``relman submit --wait``.

On a terminal (text output) the status is redrawn in place as it changes. Anywhere else
(a pipe, a file, a CI log) or with ``-o json``, each new timeline event is printed once, as
one line (JSON: one object per line), and a last line gives how the release ended: a
pipeline's log reads top to bottom and a script can read it line by line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from client.output import JSON_PRINTED, OutputFormat

if TYPE_CHECKING:
    from models.status import ReleaseStatus, TimelineEvent

WATCH_INTERVAL_SECONDS = 2.0
# Latest events asked of the release at each poll; more new events than this between two
# polls (seconds apart) are fetched in pages from the whole timeline instead.
POLL_EVENTS = 200


def event_line(event: TimelineEvent) -> str:
    """One timeline event as one line of text."""
    from client.views import when

    parts = [when(event.at), event.kind]
    if event.wave:
        parts.append(f"wave={event.wave}")
    if event.target:
        parts.append(f"target={event.target}")
    if event.actor:
        parts.append(f"by={event.actor}")
    text = "  ".join(parts) + f"  {event.message}"
    if event.comment:
        text += f' - "{event.comment}"'
    return text


def end_line(status: ReleaseStatus) -> str:
    """How the release ended, one line."""
    text = f"release {status.release_id} {status.phase.value}"
    return text + (f": {status.error}" if status.error else "")


def end_json(status: ReleaseStatus) -> dict[str, Any]:
    """How the release ended, one JSON object (the last line of a JSON follow); finished is
    false for rollback_failed, which waits for an operator."""
    return {
        "release_id": status.release_id,
        "phase": status.phase.value,
        "finished": status.finished,
        "finished_at": status.finished_at.isoformat() if status.finished_at else None,
        "error": status.error,
    }


def write_json_line(data: Any) -> None:
    """One compact JSON object on its own line, flushed at once (a reader may be waiting)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()
    JSON_PRINTED[0] = True


def live_display(output: OutputFormat) -> bool:
    """Whether to redraw the status in place (text on a terminal) or print event lines."""
    return output == OutputFormat.text and sys.stdout.isatty()


class EventPrinter:
    """Prints each timeline event once, as a status poll reveals it."""

    def __init__(self, output: OutputFormat) -> None:
        self.output = output
        self.seen = 0  # events of the timeline printed so far

    def new_events(self, status: ReleaseStatus) -> tuple[int, list[TimelineEvent]]:
        """Events of ``status`` not printed yet (its timeline is the latest ones), after
        how many new ones scrolled out of it between two polls."""
        events = status.timeline
        total = len(events) if status.timeline_total is None else status.timeline_total
        fresh = total - self.seen
        if fresh <= 0:
            return 0, []
        self.seen = total
        missed = max(0, fresh - len(events))
        return missed, events[len(events) - (fresh - missed) :]

    def show(self, status: ReleaseStatus) -> None:
        missed, events = self.new_events(status)
        if missed:
            sys.stderr.write(
                f"{missed} event(s) came too fast to show: "
                f"`relman history {status.release_id}` has them all\n"
            )
        for event in events:
            if self.output == OutputFormat.json:
                write_json_line(event.model_dump(mode="json"))
            else:
                sys.stdout.write(event_line(event) + "\n")
        if self.output != OutputFormat.json:
            sys.stdout.flush()

    def silent(self, reason: str) -> None:
        sys.stderr.write(f"no answer from the release, still watching: {reason}\n")
        sys.stderr.flush()

    def end(self, status: ReleaseStatus) -> None:
        if self.output == OutputFormat.json:
            write_json_line(end_json(status))
        else:
            sys.stdout.write(end_line(status) + "\n")
            sys.stdout.flush()


class _Stopped(Exception):
    """The release stopped where only a person can move it on (rollback_failed)."""

    def __init__(self, status: ReleaseStatus) -> None:
        super().__init__(status.phase.value)
        self.status = status


def _stop_at_rollback_failed(show: Callable[[ReleaseStatus], None]) -> Any:
    """``show``, then stop following a release whose rollback failed: it waits for an
    operator (`relman retry` / `skip-target`), which a pipeline must not wait for."""
    from models.status import ReleasePhase

    def shown(status: ReleaseStatus) -> None:
        show(status)
        if status.phase == ReleasePhase.ROLLBACK_FAILED:
            raise _Stopped(status)

    return shown


def _watch(
    release_id: str,
    show: Callable[[ReleaseStatus], None],
    interval: float,
    tail: int,
    silent: Callable[[str], None],
) -> ReleaseStatus:
    from client import service
    from client.commands.common import run

    try:
        return run(
            service.watch(release_id, _stop_at_rollback_failed(show), interval, tail, silent)
        )
    except _Stopped as stopped:
        return stopped.status


def follow(
    release_id: str, output: OutputFormat, tail: int, interval: float = WATCH_INTERVAL_SECONDS
) -> ReleaseStatus:
    """Follow the release until it ends (or its rollback failed), showing its progress;
    its last status."""
    if not live_display(output):
        printer = EventPrinter(output)
        final = _watch(release_id, printer.show, interval, POLL_EVENTS, printer.silent)
        printer.end(final)
        return final
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    from client.output import console
    from client.views import StatusView

    shown: list[Any] = []

    class _Capture:
        def __init__(self) -> None:
            self.items: list[Any] = []

        def print(self, *items: Any, **_: object) -> None:
            self.items.extend(items)

    with Live(console=console(), auto_refresh=False) as live:

        def show(st: ReleaseStatus) -> None:
            capture = _Capture()
            StatusView(st, tail).render(capture)
            shown[:] = capture.items
            live.update(Group(*capture.items), refresh=True)

        def silent(reason: str) -> None:
            note = Text(f"no answer from the release, still watching: {reason}", style="yellow")
            live.update(Group(*shown, note), refresh=True)

        return _watch(release_id, show, interval, tail, silent)


def ended_badly(final: ReleaseStatus) -> None:
    """Exit 1 (CliError) unless the release completed: scripts learn how it went."""
    from common.errors import CliError
    from models.status import ReleasePhase

    if final.phase == ReleasePhase.ROLLBACK_FAILED:
        raise CliError(
            f"release {final.release_id} stopped rollback_failed"
            + (f": {final.error}" if final.error else "")
            + " (it waits for an operator: relman retry or skip-target)"
        )
    if final.phase != ReleasePhase.COMPLETED:
        raise CliError(
            f"release {final.release_id} ended {final.phase.value}"
            + (f": {final.error}" if final.error else "")
        )
