"""Activity failures that fit Temporal's limits and say what went wrong in one line.

An exception escaping an activity becomes a Temporal failure with its message, its stack
trace and its chain of causes. botocore's errors during an AWS outage carry long chains
(urllib3 → botocore → the handler), and a failure over the server's size limit is replaced
by "Failure exceeds size limit." — the cause is lost from the release's timeline. Every
activity failure is therefore one ``ApplicationError``: the exception's type, a summary
(for AWS, the operation and error code) cut to ``MESSAGE_LIMIT``, retryable as before; the
full traceback stays in the worker's log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

# Characters of a failure's message: far below the server's limits, long enough for a
# summary of every target of a batch.
MESSAGE_LIMIT = 4000

log = logging.getLogger(__name__)


def shortened(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """``message`` cut to ``limit`` characters, saying how much was left out."""
    if len(message) <= limit:
        return message
    note = f"… (cut from {len(message)} characters; the worker's log has all of it)"
    return message[: limit - len(note)] + note


def summary(exc: BaseException) -> str:
    """One line about ``exc``: an AWS error's operation, code and message; otherwise the
    exception's type and text."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, text = error.get("Code", "Unknown"), error.get("Message", "")
        return f"{exc.operation_name}: {code}" + (f": {text}" if text else "")
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class CompactFailures(Interceptor):
    """Worker interceptor: activity failures as described in the module docstring."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CompactInbound(super().intercept_activity(next))


class _CompactInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except (CancelledError, asyncio.CancelledError):
            raise
        except ApplicationError as exc:
            if len(exc.message) <= MESSAGE_LIMIT and exc.__cause__ is None:
                raise
            raise ApplicationError(
                shortened(exc.message),
                *exc.details,
                type=exc.type,
                non_retryable=exc.non_retryable,
                next_retry_delay=exc.next_retry_delay,
            ) from None
        except Exception as exc:
            log.warning("activity %s failed", activity.info().activity_type, exc_info=True)
            raise ApplicationError(shortened(summary(exc)), type=type(exc).__name__) from None
