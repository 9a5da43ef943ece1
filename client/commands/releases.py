"""Releases: submit, status, list, history."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from client.commands.common import (
    OutputOption,
    WorkerWaitOption,
    current_user,
    read_or_show_known,
    run,
)
from client.identity import KeyOption
from client.output import OutputFormat, emit

if TYPE_CHECKING:
    from models.status import ReleaseStatus

# Latest timeline events `relman status` shows as text (the status query returns no more).
STATUS_EVENTS = 10

ReleaseId = Annotated[str, typer.Argument(metavar="ID", help="the release id")]


def submit(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN", help="the plan's YAML file")],
    as_user: Annotated[
        str | None,
        typer.Option("--as", help="the requester who signs (default: $RELMAN_USER or login)"),
    ] = None,
    key: KeyOption = None,
    answer_timeout: Annotated[
        float,
        typer.Option(
            "--answer-timeout",
            min=0,
            help="seconds to wait for the worker's AWS preflight and resource locks "
            "(0: print the id at once)",
        ),
    ] = 60,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="then follow the release to its end (progress as `status --watch` shows "
            "it) and exit 0 only if it completed, 1 if it ended otherwise",
        ),
    ] = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Start a release from PLAN, signed by its requester, and print its id once the worker
    has checked that every resource and alarm of the plan exists (its AWS preflight);
    with --wait, follow it to its end."""
    from datetime import UTC, datetime

    from client.commands.plan import load, refuse_never_starting
    from client.identity import key_for, readable_policy, submission_problems
    from client.schedule import project
    from common.errors import BadInput

    plan = load(plan_path)  # before importing the Temporal client: a bad plan fails fast
    refuse_never_starting(plan_path, plan, project(plan, datetime.now(UTC)))
    signer = current_user(as_user)
    problems = submission_problems(plan, signer, readable_policy())
    if problems:
        raise BadInput(f"{plan_path}: cannot submit this plan:\n  " + "\n  ".join(problems))
    from client import service
    from client.views import SubmitView

    release_id = run(service.submit(plan, key_for(signer, key)))
    checked = run(service.started(release_id, answer_timeout)) if answer_timeout else None
    refusal = refused(checked)
    if refusal is not None:
        from common.errors import CliError

        # Refused by the preflight: the plan names what is wrong (exit 2); otherwise
        # another release holds a resource (exit 1). Either way, nothing was changed.
        error = BadInput if "the AWS preflight found" in refusal else CliError
        raise error(
            f"{plan_path}: {refusal}\n(release id {release_id} is used up: "
            "give the plan a new id to submit it again)"
        )
    submitted = SubmitView(release_id, checked is not None or not answer_timeout)
    if not wait:
        emit(submitted, output)
        return
    from client.follow import ended_badly, follow, write_json_line

    if output == OutputFormat.json:
        write_json_line(submitted.to_json())  # then one object per event: JSON lines
    else:
        emit(submitted, output)
    # On a terminal the last frame stays on screen; otherwise a last line says how it ended.
    ended_badly(follow(release_id, output, STATUS_EVENTS))


def refused(checked: ReleaseStatus | None) -> str | None:
    """Why a release that has just started was refused, or None."""
    if checked is None or checked.finished_at is None:
        return None
    reason = next((e.message for e in checked.timeline if e.kind == "refused"), None)
    return reason or checked.error


def status(
    release_id: ReleaseId,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="follow until it ends (exit 0 only if it completed); when not a terminal "
            "or with -o json, one line per new event",
        ),
    ] = False,
    events: Annotated[
        int | None,
        typer.Option(
            "--events",
            min=0,
            help="latest timeline events to include (text: 10; JSON: all, fetched in "
            "pages; timeline_total is given when cut); `relman history` pages through all",
        ),
    ] = None,
    wait_for_worker: WorkerWaitOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Phase, waves, targets, pending approvals and recent events of a release (of an
    ended one with no worker; of a running one no worker answers for, what Temporal knows)."""
    from client import service
    from client.views import StatusView
    from client.workers import worker_wait

    tail = events if events is not None or output == OutputFormat.json else STATUS_EVENTS
    if not watch:
        wait = worker_wait(wait_for_worker)
        if output == OutputFormat.json and events is None:
            # The whole timeline, fetched in pages as `relman history` does: one query's
            # answer would exceed the server's size limits for a release of many targets.
            current = read_or_show_known(lambda: run(service.history(release_id, wait)), output)
        else:
            current = read_or_show_known(
                lambda: run(service.status(release_id, tail, wait)), output
            )
        emit(StatusView(current, tail or 0), output)
        return
    from client.follow import ended_badly, follow

    # On a terminal the status is redrawn in place; piped or with -o json, one line per
    # new event and a last line saying how it ended.
    ended_badly(follow(release_id, output, tail or STATUS_EVENTS))


def list_(
    app_name: Annotated[str | None, typer.Option("--app", help="application")] = None,
    phase: Annotated[str | None, typer.Option("--phase", help="release phase")] = None,
    department: Annotated[
        str | None, typer.Option("--department", help="a department with a wave")
    ] = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Releases, filtered through Temporal visibility."""
    from client import service
    from client.views import ListView
    from common.errors import BadInput
    from models.status import ReleasePhase

    if phase is not None and phase not in {p.value for p in ReleasePhase}:
        # A typo must not read as "no release is in that phase".
        raise BadInput(
            f"--phase: unknown release phase {phase!r} (one of: "
            f"{', '.join(p.value for p in ReleasePhase)})"
        )
    emit(ListView(run(service.list_releases(app_name, phase, department))), output)


def history(
    release_id: Annotated[
        str | None,
        typer.Argument(metavar="ID", help="the release id (not with --file)", show_default=False),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="re-verify every signed decision offline")
    ] = False,
    record: Annotated[
        Path | None,
        typer.Option(
            "--file", help="verify an exported `history --verify -o json` record (no Temporal)"
        ),
    ] = None,
    policies: Annotated[
        list[Path] | None,
        typer.Option("--policy", help="a policy version to verify against (repeatable)"),
    ] = None,
    wait_for_worker: WorkerWaitOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """The release's complete audit timeline; --verify re-checks every signature."""
    from client.views import HistoryView
    from client.workers import worker_wait
    from common.errors import BadInput

    if (release_id is None) == (record is None):
        raise BadInput("give a release ID or --file RECORD (one of them)")
    if not verify:
        if record is not None or policies:
            raise BadInput("--file and --policy go with --verify")
        from client import service

        assert release_id is not None
        wait = worker_wait(wait_for_worker)
        whole = read_or_show_known(lambda: run(service.history(release_id, wait)), output)
        emit(HistoryView(whole), output)
        return
    from client.audit import verify_record
    from client.views import VerifiedHistoryView
    from common.errors import CliError
    from models.policy import PolicyError, load_policy

    try:
        given = [load_policy(path) for path in policies or []]
    except PolicyError as exc:
        raise BadInput(str(exc)) from None
    if record is not None:
        status, recorded = VerifiedHistoryView.read(record)
    else:
        from client import service

        assert release_id is not None
        wait = worker_wait(wait_for_worker)
        status = run(service.history(release_id, wait))
        recorded = run(service.policies_of(release_id))
    used = list({p.digest: p for p in [*recorded, *given]}.values())
    verdicts = verify_record(
        status.timeline, used, release_id=status.release_id, plan_digest=status.plan_digest
    )
    view = VerifiedHistoryView(status, used, verdicts)
    emit(view, output)
    if not view.verified:
        failed = sum(1 for v in verdicts if not v.verified)
        raise CliError(
            f"{failed} of {len(verdicts)} decision(s) of {status.release_id} do not verify"
        )
