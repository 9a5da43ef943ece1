"""Failures of relman's commands (CLI and worker) and the exit codes PRODUCT.md promises:
0 ok, 1 failed, 2 bad input."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class CliError(Exception):
    """A command failed; ``exit_code`` says whether the input was bad or the operation failed."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


class BadInput(CliError):
    """The plan, an argument or a release id was wrong; nothing was changed."""

    def __init__(self, message: str):
        super().__init__(message, EXIT_BAD_INPUT)
