"""Operator controls: pause, resume, abort, freezes, window overrides, guided failures."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

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

ReleaseId = Annotated[str, typer.Argument(metavar="ID", help="the release id")]
Reason = Annotated[str, typer.Option("--reason", help="why (recorded in the timeline)")]
AsUser = Annotated[
    str | None, typer.Option("--as", help="who acts (default: $RELMAN_USER or login)")
]

freeze_app = typer.Typer(help="Freeze periods of a running release.", no_args_is_help=True)


class OperationView:
    """What an operator action did."""

    def __init__(self, release_id: str, message: str):
        self.release_id, self.message = release_id, message

    def to_json(self) -> Any:
        return {"release_id": self.release_id, "message": self.message}

    def render(self, console: Any) -> None:
        console.print(f"{self.release_id}: {self.message}", markup=False)


def _operate(
    release_id: str,
    operation: str,
    output: OutputFormat,
    wait_for_worker: str | None,
    queue_until_worker: bool,
    **fields: Any,
) -> None:
    from client import service
    from client.views import QueuedView
    from client.workers import worker_wait
    from models import messages

    model = {
        "add_freeze": messages.FreezeInput,
        "override_window": messages.OverrideInput,
        "retry": messages.WaveActionInput,
        "rollback": messages.WaveActionInput,
        "skip_target": messages.TargetActionInput,
    }.get(operation, messages.OperatorInput)
    from client.identity import key_for

    actor = fields["actor"] = current_user(fields.pop("as_user"))
    key = key_for(actor, fields.pop("key"))
    wait = worker_wait(wait_for_worker)
    result = run(
        service.operate(
            release_id, operation, model(**fields), key,
            wait=wait, queue_until_worker=queue_until_worker,
        )
    )  # fmt: skip
    if isinstance(result, service.Queued):
        emit(QueuedView(release_id, result.message), output)
    else:
        emit(OperationView(release_id, result.message), output)


def pause(
    release_id: ReleaseId, reason: Reason, as_user: AsUser = None,
    key: KeyOption = None,
    wait_for_worker: WorkerWaitOption = None,
    queue_until_worker: QueueUntilWorkerOption = False,
    output: OutputOption = OutputFormat.text,
) -> None:  # fmt: skip
    """Pause a release at its next safe point (between target steps)."""
    _operate(
        release_id,
        "pause",
        output,
        reason=reason,
        as_user=as_user,
        key=key,
        wait_for_worker=wait_for_worker,
        queue_until_worker=queue_until_worker,
    )


def resume(
    release_id: ReleaseId, reason: Reason, as_user: AsUser = None,
    key: KeyOption = None,
    wait_for_worker: WorkerWaitOption = None,
    queue_until_worker: QueueUntilWorkerOption = False,
    output: OutputOption = OutputFormat.text,
) -> None:  # fmt: skip
    """Resume a paused release."""
    _operate(
        release_id,
        "resume",
        output,
        reason=reason,
        as_user=as_user,
        key=key,
        wait_for_worker=wait_for_worker,
        queue_until_worker=queue_until_worker,
    )


def abort(
    release_id: ReleaseId, reason: Reason, as_user: AsUser = None,
    key: KeyOption = None,
    wait_for_worker: WorkerWaitOption = None,
    queue_until_worker: QueueUntilWorkerOption = False,
    output: OutputOption = OutputFormat.text,
) -> None:  # fmt: skip
    """Abort a release: roll back everything it changed; it ends cancelled."""
    _operate(
        release_id,
        "abort",
        output,
        reason=reason,
        as_user=as_user,
        key=key,
        wait_for_worker=wait_for_worker,
        queue_until_worker=queue_until_worker,
    )


def _aware(value: str, option: str) -> datetime:
    from common.errors import BadInput

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{option}: invalid date-time {value!r} (use ISO 8601)") from None
    if parsed.tzinfo is None:
        raise BadInput(f"{option}: {value!r} needs a time zone offset, e.g. {value}Z")
    return parsed


@freeze_app.command("add")
def freeze_add(
    release_id: ReleaseId,
    start: Annotated[str, typer.Option("--start", help="ISO 8601 with offset")],
    end: Annotated[str, typer.Option("--end", help="ISO 8601 with offset")],
    reason: Reason,
    as_user: AsUser = None,
    key: KeyOption = None,
    wait_for_worker: WorkerWaitOption = None,
    queue_until_worker: QueueUntilWorkerOption = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Add a freeze to a running release; waits in progress respect it."""
    from pydantic import ValidationError

    from common.errors import BadInput
    from models.plan import Freeze

    try:
        freeze = Freeze(start=_aware(start, "--start"), end=_aware(end, "--end"), reason=reason)
    except ValidationError as exc:
        raise BadInput(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    _operate(
        release_id,
        "add_freeze",
        output,
        freeze=freeze,
        reason=reason,
        as_user=as_user,
        key=key,
        wait_for_worker=wait_for_worker,
        queue_until_worker=queue_until_worker,
    )


def override_window(
    release_id: ReleaseId,
    wave: Annotated[str, typer.Option("--wave", help="the wave to start")],
    reason: Reason,
    include_freeze: Annotated[
        bool, typer.Option("--include-freeze", help="also override freezes (recorded)")
    ] = False,
    as_user: AsUser = None,
    key: KeyOption = None,
    wait_for_worker: WorkerWaitOption = None,
    queue_until_worker: QueueUntilWorkerOption = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Let a wave start outside its rollout window (on-call emergency)."""
    _operate(
        release_id, "override_window", output,
        wave=wave, include_freeze=include_freeze, reason=reason, as_user=as_user, key=key,
        wait_for_worker=wait_for_worker, queue_until_worker=queue_until_worker,
    )  # fmt: skip


def retry(
    release_id: ReleaseId,
    wave: Annotated[str, typer.Option("--wave", help="the wave paused on failure")],
    reason: Reason,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="run again a job whose outcome is unknown (it may have run): after checking it",
        ),
    ] = False,
    as_user: AsUser = None,
    key: KeyOption = None,
    wait_for_worker: WorkerWaitOption = None,
    queue_until_worker: QueueUntilWorkerOption = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Retry a wave paused on failure, from the step that failed."""
    _operate(
        release_id,
        "retry",
        output,
        wave=wave,
        reason=reason,
        force=force,
        as_user=as_user,
        key=key,
        wait_for_worker=wait_for_worker,
        queue_until_worker=queue_until_worker,
    )


def rollback(
    release_id: ReleaseId,
    reason: Reason,
    wave: Annotated[
        str,
        typer.Option(
            "--wave", help="the wave paused on failure (not needed to retry a failed rollback)"
        ),
    ] = "",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="retrying a failed rollback: overwrite resources someone else changed since "
            "relman wrote them",
        ),
    ] = False,
    as_user: AsUser = None,
    key: KeyOption = None,
    wait_for_worker: WorkerWaitOption = None,
    queue_until_worker: QueueUntilWorkerOption = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Roll the release back (a wave paused on failure), or retry a failed rollback."""
    _operate(
        release_id,
        "rollback",
        output,
        wave=wave,
        reason=reason,
        force=force,
        as_user=as_user,
        key=key,
        wait_for_worker=wait_for_worker,
        queue_until_worker=queue_until_worker,
    )


def skip_target(
    release_id: ReleaseId,
    target: Annotated[str, typer.Option("--target", help="the target to skip")],
    reason: Reason,
    as_user: AsUser = None,
    key: KeyOption = None,
    wait_for_worker: WorkerWaitOption = None,
    queue_until_worker: QueueUntilWorkerOption = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Skip a failed target (its wave goes on), or a rollback that cannot succeed."""
    _operate(
        release_id,
        "skip_target",
        output,
        target=target,
        reason=reason,
        as_user=as_user,
        key=key,
        wait_for_worker=wait_for_worker,
        queue_until_worker=queue_until_worker,
    )
