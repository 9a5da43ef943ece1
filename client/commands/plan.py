"""``relman plan``: check a plan, print the IAM policies it needs, print its JSON Schema."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from client.commands.common import OutputOption
from client.output import OutputFormat, emit

if TYPE_CHECKING:
    from activities.aws import AwsClients
    from client.schedule import WaveSchedule
    from models.iam import TaskDefinitionRoles, TrustPolicy
    from models.plan import EcsServiceTarget, ReleasePlan

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
    from temporalio.exceptions import ApplicationError

    from activities.notify import WEBHOOK_URL_ENV
    from activities.webhook_addresses import allowed_networks, allowed_networks_from_env

    # Webhooks are checked as the worker would: with its allowed networks (the embedded
    # stack's worker also allows this machine) and its own default webhook trusted.
    try:
        networks = allowed_networks_from_env()
    except ValueError as exc:
        from common.errors import BadInput

        raise BadInput(str(exc)) from None
    if state is not None:
        from client.stack import DEV_WEBHOOK_NETWORKS

        networks += allowed_networks(DEV_WEBHOOK_NETWORKS)
    own = [url] if (url := os.environ.get(WEBHOOK_URL_ENV)) else []
    try:
        result = PreflightActivities(clients, networks, own).preflight(preflight_input(plan))
    except (BotoCoreError, ClientError, ApplicationError) as exc:
        # throttled, unreachable, DNS not answering: nothing was checked
        return [f"the AWS preflight could not run: {getattr(exc, 'message', None) or exc}"]
    return [str(problem) for problem in result.problems]


# Where `relman plan iam --worker-role` comes from when the option is not given.
WORKER_ROLE_ENV = "RELMAN_WORKER_ROLE_ARN"
# Why a target's iam:PassRole keeps a wildcard when `relman plan iam` reads nothing.
OFFLINE_REASON = "its task definitions were not read (--offline)"


@app.command("iam")
def iam(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN", help="the plan's YAML file")],
    worker_role: Annotated[
        str | None,
        typer.Option(
            "--worker-role",
            envvar=WORKER_ROLE_ENV,
            metavar="ARN",
            help="the IAM role the worker runs as: the principal of each role's trust policy",
        ),
    ] = None,
    trust: Annotated[
        bool,
        typer.Option(
            "--trust/--no-trust",
            help="also print each assumed role's trust policy (needs --worker-role)",
        ),
    ] = True,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="do not read ECS task definitions from AWS (iam:PassRole keeps a wildcard)",
        ),
    ] = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Print the least-privilege IAM policies a worker needs for PLAN, per account and role,
    and the trust policy of each role it assumes; iam:PassRole for ECS services is narrowed
    to their task definitions' roles, read from AWS with the target's role."""
    from client.views import PlanIamView
    from common.errors import BadInput
    from models.iam import (
        NOTHING_READ,
        FromAws,
        TrustConflict,
        assumed_roles,
        check_worker_role,
        plan_policies,
        trust_policies,
    )

    plan = load(plan_path)
    if worker_role is not None:
        try:
            check_worker_role(worker_role)
        except ValueError as exc:
            raise BadInput(f"--worker-role: {exc}") from None
    trusts: list[TrustPolicy] = []
    roles = assumed_roles(plan)
    if trust and roles:
        if worker_role is None:
            raise BadInput(
                f"{plan_path}: the trust policies of the {len(roles)} "
                f"role{'s' if len(roles) > 1 else ''} the plan assumes name the worker's "
                f"role, which relman cannot guess: give --worker-role ARN (or "
                f"{WORKER_ROLE_ENV}), or --no-trust to print the permission policies only"
            )
        try:
            trusts = trust_policies(plan, worker_role)
        except TrustConflict as exc:
            raise BadInput("\n".join(f"{plan_path}: {p}" for p in exc.problems)) from None
    if offline:
        aws = FromAws(unread_because=OFFLINE_REASON)
    elif any(t.kind == "ecs_service" for t in plan.targets):
        aws = FromAws(task_definitions=read_task_definitions(plan))
    else:
        aws = NOTHING_READ
    emit(PlanIamView(str(plan_path), plan.id, plan_policies(plan, aws, trusts)), output)


def read_task_definitions(plan: ReleasePlan) -> dict[str, TaskDefinitionRoles]:
    """Per ``ecs_service`` target, the roles its UpdateService passes to ECS: those of the
    plan's task definition and of the service's current one (what a rollback restores),
    read with the target's region, role and external id; or why they could not be read.

    Roles are assumed in the name of the plan's release, as its worker will (the trust
    policies ``plan iam`` prints require that): only credentials the roles trust, the
    worker's, read anything.
    """
    import boto3

    from activities.aws import acting_for
    from models.iam import TaskDefinitionRoles, task_definition_roles
    from models.plan import EcsServiceTarget
    from models.resources import resolved_targets

    clients = local_aws_clients().for_purpose("plan-iam")
    targets = [t for t in resolved_targets(plan) if isinstance(t, EcsServiceTarget)]
    # Checked first: an assumed-role session built on no credentials fails with an
    # AttributeError inside botocore rather than NoCredentialsError.
    if boto3.Session().get_credentials() is None:
        unknown = TaskDefinitionRoles(
            unknown_because="no AWS credentials to read its task definitions with"
        )
        return dict.fromkeys((t.name for t in targets), unknown)
    found: dict[str, TaskDefinitionRoles] = {}
    with acting_for(plan.id, plan.application):
        for target in targets:
            ecs = clients.client("ecs", target.region, target.role_arn, target.external_id)
            try:
                definitions = [_task_definition(ecs, target.task_definition)]
                current = _current_task_definition(ecs, target)
                if current != definitions[0]["taskDefinitionArn"]:
                    definitions.append(_task_definition(ecs, current))
            except _Unread as exc:
                found[target.name] = TaskDefinitionRoles(unknown_because=str(exc))
                continue
            roles = [role for d in definitions for role in task_definition_roles(d)]
            found[target.name] = TaskDefinitionRoles(roles=tuple(dict.fromkeys(roles)))
    return found


class _Unread(Exception):
    """What ``plan iam`` could not read from AWS, and why."""


def _aws_read(what: str, call: Callable[[], Any]) -> Any:
    """``call()``; an AWS error (access denied, not found, no credentials, unreachable)
    becomes ``_Unread`` naming ``what``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise _Unread(
            f"{what} could not be read ({error.get('Code')}: {error.get('Message')})"
        ) from None
    except BotoCoreError as exc:
        raise _Unread(f"{what} could not be read ({exc})") from None


def _task_definition(ecs: Any, name: str) -> dict[str, Any]:
    return dict(
        _aws_read(
            f"task definition {name}",
            lambda: ecs.describe_task_definition(taskDefinition=name)["taskDefinition"],
        )
    )


def _current_task_definition(ecs: Any, target: EcsServiceTarget) -> str:
    """The task definition the service runs now: the one a rollback switches back to."""
    what = f"ecs service {target.service} in cluster {target.cluster}"
    services = _aws_read(
        what,
        lambda: ecs.describe_services(cluster=target.cluster, services=[target.service])[
            "services"
        ],
    )
    active = [s for s in services if s.get("status") == "ACTIVE"]
    if not active:
        raise _Unread(
            f"{what} does not exist, so the task definition a rollback restores is unknown"
        )
    return str(active[0]["taskDefinition"])


def local_aws_clients() -> AwsClients:
    """AWS clients as ``plan check --aws`` makes them: ``RELMAN_AWS_ENDPOINT_URL`` or boto3's
    own configuration; without either, the embedded stack's (``relman dev up``) when one is
    recorded."""
    import os

    from activities.aws import ENDPOINT_ENV, AwsClients
    from common.stack_state import StackConfig, read_state

    configured = any(os.environ.get(v) for v in (ENDPOINT_ENV, "AWS_ENDPOINT_URL", "AWS_PROFILE"))
    state = None if configured else read_state(StackConfig.from_env())
    if state is None:
        return AwsClients.from_env()
    from client.demo import use_local_aws

    clients: AwsClients = use_local_aws(state.aws_endpoint)
    return clients


@app.command("schema")
def schema(output: OutputOption = OutputFormat.json) -> None:
    """Print the plan's JSON Schema (for editors); it is JSON whatever ``-o`` says."""
    from models.plan import ReleasePlan

    typer.echo(json.dumps(ReleasePlan.model_json_schema(), indent=2))
