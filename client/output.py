"""Every data command returns a result that renders as text (rich) or ``--output json``."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Any, Protocol


class OutputFormat(StrEnum):
    """How a command prints its result."""

    text = "text"
    json = "json"


class Renderable(Protocol):
    """A command's result: JSON-able data plus a way to show it to a person."""

    def to_json(self) -> Any: ...

    def render(self, console: Any) -> None: ...


def console(stderr: bool = False) -> Any:
    """A rich console; plain when output is not a terminal."""
    from rich.console import Console

    # Wide enough for resource names when printing to a file or pipe.
    width = None if sys.stdout.isatty() else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


# Whether this process printed a JSON document: a command that fails after printing its
# (partial) result does not add an error document after it (cli.main).
JSON_PRINTED = [False]


def emit(result: Renderable, output: OutputFormat) -> None:
    """Print ``result`` in the requested format."""
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, default=str) + "\n")
        JSON_PRINTED[0] = True
    else:
        result.render(console())
