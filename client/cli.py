"""The ``relman`` command line: parsing here, work in client.service and friends."""

from __future__ import annotations

import gc
import json
import sys

import typer

from client.commands import approvals, operations, overview, plan, policy, releases
from client.output import JSON_PRINTED
from common.errors import EXIT_BAD_INPUT, CliError

app = typer.Typer(
    name="relman",
    help="Application release management on Temporal: durable multi-day releases with "
    "approvals, rollout windows and compensating rollback on AWS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(plan.app, name="plan")
app.add_typer(policy.app, name="policy")
app.command("submit")(releases.submit)
app.command("status")(releases.status)
app.command("list")(releases.list_)
app.command("history")(releases.history)
app.command("approvals")(approvals.approvals)
app.command("approve")(approvals.approve)
app.command("reject")(approvals.reject)
app.command("pause")(operations.pause)
app.command("resume")(operations.resume)
app.command("abort")(operations.abort)
app.add_typer(operations.freeze_app, name="freeze")
app.command("override-window")(operations.override_window)
app.command("retry")(operations.retry)
app.command("rollback")(operations.rollback)
app.command("skip-target")(operations.skip_target)
app.command("calendar")(overview.calendar)
app.command("report")(overview.report)


def _register_late() -> None:
    # Imported here so their heavier imports stay out of `relman --help`'s path where possible.
    from client.commands import codec, console, demo, dev, worker

    app.add_typer(dev.app, name="dev")
    app.command("worker")(worker.worker)
    app.command("demo")(demo.demo)
    app.command("codec-server")(codec.codec_server)
    app.command("console")(console.console)


_register_late()


def _json_output(argv: list[str]) -> bool:
    """Whether the command line asks for JSON output (``-o json``, ``--output=json``...)."""
    for i, arg in enumerate(argv):
        if arg in ("-o", "--output") and i + 1 < len(argv):
            if argv[i + 1] == "json":
                return True
        elif arg in ("-ojson", "--output=json"):
            return True
    return False


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command, turn errors into messages and exit codes."""
    failure: tuple[str, int] | None = None
    try:
        app(args=argv, standalone_mode=False)
    except CliError as exc:
        failure = (str(exc), exc.exit_code)
    except typer.Abort:
        failure = ("aborted", 1)
    except typer.TyperException as exc:  # usage errors: missing or invalid arguments
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        sys.exit(EXIT_BAD_INPUT)
    if failure is not None:
        # Report outside the except block: the exception's traceback holds the Temporal
        # client, which must be released before the interpreter shuts down.
        gc.collect()
        typer.secho(f"error: {failure[0]}", fg=typer.colors.RED, err=True)
        if _json_output(sys.argv[1:] if argv is None else argv) and not JSON_PRINTED[0]:
            # A script reading JSON from stdout gets the refusal as JSON too (unless the
            # command already printed its result, which says what it could not read).
            typer.echo(json.dumps({"error": failure[0], "exit_code": failure[1]}))
        sys.exit(failure[1])
    gc.collect()
    sys.exit(0)


if __name__ == "__main__":
    main()
