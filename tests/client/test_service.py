"""How CLI commands treat a release that cannot answer for a moment.

After a worker dies holding a release's workflow task, the server refuses the release's
queries and Updates ("Workflow Task in failed state") until another worker runs the task.
A command waits that out instead of failing an approver's ``relman approve``.
"""

from __future__ import annotations

import pytest
from temporalio.service import RPCError, RPCStatusCode

from client import service
from common.errors import BadInput, CliError

NOT_READY = RPCError(
    "Unable to perform workflow execution update due to Workflow Task in failed state.",
    RPCStatusCode.FAILED_PRECONDITION,
    b"",
)


def failing(times: int, error: RPCError, answer: str = "status"):
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return answer

    return call, calls


async def test_a_release_that_is_not_ready_is_asked_again_until_it_answers():
    call, calls = failing(2, NOT_READY)
    assert await service._known("rel-1", call) == "status"
    assert len(calls) == 3


async def test_a_release_that_stays_not_ready_gets_a_clear_error(monkeypatch):
    monkeypatch.setattr(service, "NOT_READY_PATIENCE", 0.5)
    call, calls = failing(1000, NOT_READY)
    with pytest.raises(CliError) as raised:
        await service._known("rel-1", call)
    assert str(raised.value) == (
        "release rel-1: the release is not processing requests: its workflow task keeps "
        "failing (a worker died while running it, or no worker can run it; see the worker's "
        "log). Try again shortly"
    )
    assert 2 <= len(calls) < 10


async def test_other_errors_are_not_retried():
    call, calls = failing(1, RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b""))
    with pytest.raises(BadInput, match="unknown release 'rel-1'"):
        await service._known("rel-1", call)
    assert len(calls) == 1
