"""Options shared by commands and the bridge from sync CLI code to async work."""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer

from client.output import OutputFormat

T = TypeVar("T")

OutputOption = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="text for people, json for scripts", case_sensitive=False),
]
USER_ENV = "RELMAN_USER"


def current_user(explicit: str | None) -> str:
    """``--as``, else ``RELMAN_USER``, else the login name."""
    return explicit or os.environ.get(USER_ENV) or getpass.getuser()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run async work from a command."""
    return asyncio.run(coro)


WorkerWaitOption = Annotated[
    str | None,
    typer.Option(
        "--wait-for-worker",
        metavar="DURATION",
        help="how long to wait for a worker to answer for the release, e.g. 30s, 2m, 0 "
        "(default: $RELMAN_WORKER_WAIT, else 30s)",
    ),
]
QueueUntilWorkerOption = Annotated[
    bool,
    typer.Option(
        "--queue-until-worker",
        help="send the decision even if no worker answers: Temporal holds it, in memory, for "
        "the next worker (applied if one comes within 10 minutes of signing; lost if the "
        "Temporal server restarts first)",
    ),
]


def read_or_show_known(read: Callable[[], T], output: OutputFormat) -> T:
    """``read()``; when no worker answers for a running release, print what Temporal knows
    of it (its search attributes, when its task queue was last polled), then fail (exit 1)."""
    from client.output import emit
    from client.service import NoWorker

    try:
        return read()
    except NoWorker as exc:
        from client.views import KnownReleaseView

        emit(KnownReleaseView(exc.release), output)
        raise
