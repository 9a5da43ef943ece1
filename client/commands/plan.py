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
    aws: Annotated[
        bool,
        typer.Option(
            "--aws",
            help="also check that every resource and alarm exists and is reachable with the "
            "role that will be used (read-only; local AWS configuration)",
        ),
    ] = False,
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
    refuse_never_starting(plan_path, plan, schedule, aws_problems(plan) if aws else [])


def refuse_never_starting(
    plan_path: Path,
    plan: ReleasePlan,
    schedule: list[WaveSchedule],
    also: list[str] | None = None,
) -> None:
    """Bad input: a wave whose window never opens outside the freezes (from now on) would
    fail the release, and roll back every wave before it, once it was reached. ``also``:
    further problems to report with them (the AWS preflight's)."""
    from client.schedule import never_starting
    from common.errors import BadInput

    problems = [*never_starting(plan, schedule), *(also or [])]
    if problems:
        raise BadInput("\n".join(f"{plan_path}: {problem}" for problem in problems))


def aws_problems(plan: ReleasePlan) -> list[str]:
    """The AWS preflight of ``plan``, run here with the local AWS configuration: every
    resource and alarm that is missing or unreachable with the role that will be used.

    The endpoint is ``RELMAN_AWS_ENDPOINT_URL`` or boto3's own configuration; without
    either, the embedded stack's (``relman dev up``) when one is recorded.
    """
    import os

    from activities.aws import ENDPOINT_ENV, AwsClients
    from activities.preflight import PreflightActivities
    from common.stack_state import StackConfig, read_state
    from models.preflight import preflight_input

    configured = any(os.environ.get(v) for v in (ENDPOINT_ENV, "AWS_ENDPOINT_URL", "AWS_PROFILE"))
    state = None if configured else read_state(StackConfig.from_env())
    if state is not None:
        from client.demo import use_local_aws

        clients = use_local_aws(state.aws_endpoint)
    else:
        clients = AwsClients.from_env()
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        result = PreflightActivities(clients).preflight(preflight_input(plan))
    except (BotoCoreError, ClientError) as exc:  # throttled, unreachable: nothing was checked
        return [f"the AWS preflight could not run: {exc}"]
    return [str(problem) for problem in result.problems]


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
