"""``relman dev up / down / status``: the embedded local stack."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import typer

from client.commands.common import OutputOption
from client.output import OutputFormat, emit

app = typer.Typer(
    help="The embedded local stack: Temporal dev server, local AWS, worker.", no_args_is_help=True
)


def bring_up(say=typer.echo):  # type: ignore[no-untyped-def]
    """Start the stack if needed; the CLI error names the problem (busy port, no binary)."""
    from client.binaries import MissingBinary
    from client.stack import StackError, up
    from common.errors import CliError
    from common.stack_state import StackConfig

    try:
        return up(StackConfig.from_env(), progress=say)
    except (StackError, MissingBinary) as exc:
        raise CliError(str(exc)) from None


@app.command("up")
def dev_up() -> None:
    """Start the Temporal dev server, the local AWS endpoint and a worker, on loopback."""
    state = bring_up()
    typer.echo(f"Temporal:     {state.temporal_address}")
    typer.echo(f"Temporal UI:  {state.ui_url}")
    typer.echo(f"AWS endpoint: {state.aws_endpoint}")
    if state.metrics_address:
        typer.echo(f"Metrics:      http://{state.metrics_address}/metrics")
    if "console" in state.components:
        typer.echo(f"Console:      http://127.0.0.1:{state.components['console'].port}")
    typer.echo("relman is up; stop it with `relman dev down`.")


@app.command("down")
def dev_down() -> None:
    """Stop exactly the processes `relman dev up` started."""
    from client.stack import down
    from common.stack_state import StackConfig

    stopped = down(StackConfig.from_env())
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@dataclass
class DevStatusView:
    """Each component of the stack, and when a worker last polled the stack's task queue
    (``polls``, None while Temporal is down): a worker process can run without polling."""

    components: list[Any]
    ui_url: str | None
    polls: Any = None  # client.workers.TaskQueuePolls

    def to_json(self) -> Any:
        return {
            "ui_url": self.ui_url,
            "components": [asdict(c) for c in self.components],
            "task_queue": self.polls.to_json() if self.polls is not None else None,
        }

    def render(self, console: Any) -> None:
        from rich.table import Table

        table = Table(title="relman dev stack")
        for column in ("component", "state", "pid", "address", "log"):
            table.add_column(column)
        for c in self.components:
            table.add_row(
                c.name,
                "[green]running[/green]" if c.running else "[red]stopped[/red]",
                str(c.pid or "-"),
                c.address or "-",
                c.log or "-",
            )
        console.print(table)
        if self.polls is not None:
            from rich.text import Text

            console.print(Text(self.polls.line(), style="green" if self.polls.polled else "red"))
        if self.ui_url:
            console.print(f"Temporal UI: {self.ui_url}")


@app.command("status")
def dev_status(output: OutputOption = OutputFormat.text) -> None:
    """Report each component of the embedded stack."""
    from client.stack import queue_polls, status
    from common.connection import task_queue
    from common.stack_state import StackConfig

    state, components = status(StackConfig.from_env())
    temporal = next(c for c in components if c.name == "temporal")
    polls = None
    if state is not None and temporal.running:
        polls = queue_polls(state.temporal_address, task_queue())
    emit(DevStatusView(components, state.ui_url if state else None, polls), output)
