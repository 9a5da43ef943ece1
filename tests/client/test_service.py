"""How CLI commands treat a release that cannot answer for a moment.

After a worker dies holding a release's workflow task, the server refuses the release's
queries and Updates ("Workflow Task in failed state") until another worker runs the task.
A command waits that out instead of failing an approver's ``relman approve``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from temporalio.service import RPCError, RPCStatusCode

from client import service
from client.workers import TaskQueuePolls
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


async def test_watching_rides_out_a_release_that_cannot_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import contextlib
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from models.status import ReleasePhase, ReleaseStatus

    def status(phase: ReleasePhase, ended: bool) -> ReleaseStatus:
        return ReleaseStatus(
            release_id="rel-1", application="payments", version="2.4.0", requested_by="alice",
            phase=phase, finished_at=datetime(2026, 12, 4, tzinfo=UTC) if ended else None,
        )  # fmt: skip

    silence = service.NoWorker("rel-1", "no worker has polled task queue 'q' for 12 s", None)  # type: ignore[arg-type]
    answers: list[ReleaseStatus | CliError] = [
        status(ReleasePhase.DEPLOYING, False),
        silence,  # its workers restart
        silence,
        status(ReleasePhase.ROLLED_BACK, True),
    ]
    ended = [False]

    async def asked(client, described, call, wait):  # type: ignore[no-untyped-def]
        answer = answers.pop(0)
        if isinstance(answer, CliError):
            raise answer
        return answer

    async def progress(client, current):  # type: ignore[no-untyped-def]
        return current

    async def described(handle):  # type: ignore[no-untyped-def]
        return SimpleNamespace(ended=ended[0])

    @contextlib.asynccontextmanager
    async def connection():  # type: ignore[no-untyped-def]
        yield None

    monkeypatch.setattr(service, "_asked", asked)
    monkeypatch.setattr(service, "_described", described)
    monkeypatch.setattr(service, "_has_ended", lambda d: d.ended)
    monkeypatch.setattr(service, "with_running_progress", progress)
    monkeypatch.setattr(service, "temporal", connection)
    monkeypatch.setattr(service, "_handle", lambda client, release_id: None)
    seen: list[str] = []
    silences: list[str] = []
    final = await service.watch(
        "rel-1", lambda s: seen.append(s.phase.value), 0.0, None, silences.append
    )
    assert final.phase == ReleasePhase.ROLLED_BACK
    assert seen == ["deploying", "rolled_back"]
    assert silences == ["no worker has polled task queue 'q' for 12 s"] * 2

    # An ended release is read from its history at once, without asking a worker.
    ended[0] = True

    async def replayed(client, described, wait):  # type: ignore[no-untyped-def]
        return status(ReleasePhase.COMPLETED, True)

    monkeypatch.setattr(service, "_ended", replayed)
    final = await service.watch("rel-1", lambda s: seen.append(s.phase.value), 0.0)
    assert final.phase == ReleasePhase.COMPLETED and seen[-1] == "completed"


async def test_a_query_the_rpc_deadline_cut_short_is_asked_again_before_a_decision(monkeypatch):
    """A worker just restarted replays the release before it answers a Query; when the
    client's own RPC deadline ends the Query first (CANCELLED, "Timeout expired"), the
    command asks again within its wait instead of refusing the decision."""

    async def polls(client, queue):
        return TaskQueuePolls(queue, datetime.now(UTC), datetime.now(UTC))

    query, calls = failing(2, RPCError("Timeout expired", RPCStatusCode.CANCELLED, b""))
    monkeypatch.setattr(service, "task_queue_polls", polls)
    monkeypatch.setattr(service, "WORKER_CHECK_INTERVAL", 0.01)
    monkeypatch.setattr(service, "_status_query", lambda handle, tail: query())

    await service._worker_answers(None, None, "relman", 5.0, "cannot approve")

    assert len(calls) == 3
