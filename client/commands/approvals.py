"""Approval gates: what waits for me, approve, reject."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from client.commands.common import (
    OutputOption,
    QueueUntilWorkerOption,
    WorkerWaitOption,
    current_user,
    run,
)
from client.identity import KeyOption
from client.output import OutputFormat, emit

AsUser = Annotated[
    str | None, typer.Option("--as", help="who decides (default: $RELMAN_USER or login)")
]


def approvals(
    as_user: AsUser = None,
    wait_for_worker: WorkerWaitOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Gates waiting for this user, across running releases."""
    from client import service
    from client.views import ApprovalsView
    from client.workers import worker_wait
    from common.errors import CliError

    user = current_user(as_user)
    found, unreadable = run(service.approvals_for(user, worker_wait(wait_for_worker)))
    emit(ApprovalsView(user, found, unreadable), output)
    if unreadable:
        raise CliError(
            f"could not read {len(unreadable)} release(s) that list {user} as a pending "
            "approver: " + "; ".join(f"{u.release_id} ({u.reason})" for u in unreadable)
        )


def _decide(
    release_id: str,
    wave: str,
    as_user: str | None,
    comment: str,
    approve: bool,
    key: Path | None,
    wait_for_worker: str | None,
    queue_until_worker: bool,
    output: OutputFormat,
) -> None:
    from client import service
    from client.identity import key_for
    from client.views import DecisionView, QueuedView
    from client.workers import worker_wait

    user = current_user(as_user)
    result = run(
        service.decide(
            release_id, wave, user, comment, approve, key_for(user, key),
            wait=worker_wait(wait_for_worker), queue_until_worker=queue_until_worker,
        )
    )  # fmt: skip
    if isinstance(result, service.Queued):
        emit(QueuedView(release_id, result.message), output)
    else:
        emit(DecisionView(release_id, result), output)


def approve(
    release_id: Annotated[str, typer.Argument(metavar="ID")],
    wave: Annotated[str, typer.Option("--wave", help="the wave whose gate to approve")],
    as_user: AsUser = None,
    comment: Annotated[str, typer.Option("--comment", help="recorded with the decision")] = "",
    key: KeyOption = None,
    wait_for_worker: WorkerWaitOption = None,
    queue_until_worker: QueueUntilWorkerOption = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Approve a wave's gate."""
    _decide(
        release_id, wave, as_user, comment, True, key, wait_for_worker, queue_until_worker, output
    )


def reject(
    release_id: Annotated[str, typer.Argument(metavar="ID")],
    wave: Annotated[str, typer.Option("--wave", help="the wave whose gate to reject")],
    as_user: AsUser = None,
    comment: Annotated[str, typer.Option("--comment", help="recorded with the decision")] = "",
    key: KeyOption = None,
    wait_for_worker: WorkerWaitOption = None,
    queue_until_worker: QueueUntilWorkerOption = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Reject a wave: the release stops and rolls back what it changed."""
    _decide(
        release_id, wave, as_user, comment, False, key, wait_for_worker, queue_until_worker, output
    )
