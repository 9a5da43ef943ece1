"""``relman plan``: check a plan, print the IAM policies it needs, print its JSON Schema."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from client.commands.common import OutputOption
from client.output import OutputFormat, emit

if TYPE_CHECKING:
    from client.schedule import WaveSchedule
    from models.plan import ReleasePlan

app = typer.Typer(
    help="Validate release plans, print their IAM policies and schema.", no_args_is_help=True
)


def load(path: Path):  # type: ignore[no-untyped-def]
    """The validated plan at ``path``, or a bad-input error listing every problem."""
    from common.errors import BadInput
    from models.loader import PlanError, load_plan

    try:
        return load_plan(path)
    except PlanError as exc:
        raise BadInput(str(exc)) from None


@app.command("check")
def check(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN", help="the plan's YAML file")],
    starting: Annotated[
        datetime | None,
        typer.Option("--from", help="project the schedule from this time (default: now)"),
    ] = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Validate PLAN and print its waves, gates, windows and schedule."""
    from datetime import UTC, datetime

    from client.schedule import project
    from client.views import PlanCheckView
    from models.validation import wave_order

    plan = load(plan_path)
    now = starting or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    schedule = project(plan, now)
    emit(PlanCheckView(str(plan_path), plan, wave_order(plan), schedule, now), output)
    refuse_never_starting(plan_path, plan, schedule)


def refuse_never_starting(plan_path: Path, plan: ReleasePlan, schedule: list[WaveSchedule]) -> None:
    """Bad input: a wave whose window never opens outside the freezes (from now on) would
    fail the release, and roll back every wave before it, once it was reached."""
    from client.schedule import never_starting
    from common.errors import BadInput

    problems = never_starting(plan, schedule)
    if problems:
        raise BadInput("\n".join(f"{plan_path}: {problem}" for problem in problems))


@app.command("iam")
def iam(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN", help="the plan's YAML file")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Print the least-privilege IAM policy a worker needs for PLAN, per account and role."""
    from client.views import PlanIamView
    from models.iam import plan_policies

    plan = load(plan_path)
    emit(PlanIamView(str(plan_path), plan.id, plan_policies(plan)), output)


@app.command("schema")
def schema() -> None:
    """Print the plan's JSON Schema (for editors)."""
    from models.plan import ReleasePlan

    typer.echo(json.dumps(ReleasePlan.model_json_schema(), indent=2))
