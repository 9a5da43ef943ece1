"""Options shared by commands and the bridge from sync CLI code to async work."""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Coroutine
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
