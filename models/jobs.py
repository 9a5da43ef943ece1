"""Job steps of a wave: one-off work (a schema migration, a backfill) run at a point of the
wave's traffic steps, each with an optional compensating job the rollback runs.

A job is placed ``before`` the wave's first traffic step, ``after`` its last, or ``at`` a
traffic percent (after that step has baked). Its kind says what runs:

- ``ecs_task``: an ECS task (RunTask), success = every essential container exited 0;
- ``lambda_job``: a synchronous Lambda invoke, success = no function error and, when
  given, a JSONPath assertion on the result;
- ``ssm_command``: an SSM document on the instances carrying the given tags, success =
  every invocation ``Success``.

This module holds the plan's job sections and the job activity's input and result; it
imports nothing but ``models`` so the plan, the workflows and the CLI share it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from models import arns
from models.durations import Duration

JOB_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
# A job's own timeout when the plan gives none; its activity's attempt lasts this long.
DEFAULT_JOB_TIMEOUT = timedelta(minutes=30)
MAX_JOB_TIMEOUT = timedelta(hours=12)
# A synchronous Lambda invoke lasts at most as long as a function may run.
LAMBDA_MAX_TIMEOUT = timedelta(minutes=15)
# Environment names that look like they hold a secret: their values belong in the task
# definition's ``secrets`` (by reference), never in the plan or Temporal's history.
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|PRIVATE_KEY|API_KEY|CREDENTIAL)", re.I)

Placement = Literal["before", "after"] | Annotated[int, Field(ge=1, le=100)]


class JobModel(BaseModel):
    """Base for job sections: unknown keys are errors (like every plan section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_job_timeout(value: timedelta) -> timedelta:
    if value <= timedelta(0) or value > MAX_JOB_TIMEOUT:
        raise ValueError("timeout must be positive and at most 12h")
    return value


class JobBase(JobModel):
    """What every job kind has: its name, where it runs, how long it may take."""

    name: Annotated[str, Field(pattern=JOB_NAME_PATTERN)]
    region: Annotated[str, AfterValidator(arns.check_region)] | None = None
    role_arn: Annotated[str, AfterValidator(arns.check_role_arn)] | None = None
    external_id: str | None = None
    timeout: Annotated[Duration, AfterValidator(_check_job_timeout)] = DEFAULT_JOB_TIMEOUT


class NetworkConfig(JobModel):
    """An awsvpc task's subnets and security groups."""

    subnets: list[str] = Field(min_length=1)
    security_groups: list[str] = Field(default_factory=list)
    assign_public_ip: bool = False


class EcsTaskSpec(JobBase):
    """Run a task definition once and wait for it to stop."""

    kind: Literal["ecs_task"]
    cluster: Annotated[str, Field(min_length=1), AfterValidator(arns.check_ecs_cluster)]
    task_definition: Annotated[str, Field(min_length=1), AfterValidator(arns.check_task_definition)]
    launch_type: Literal["FARGATE", "EC2"] = "FARGATE"
    network: NetworkConfig | None = None
    # The container the command and environment override (the task's only one if omitted).
    container: str | None = None
    command: list[str] | None = None
    environment: dict[str, str] = Field(default_factory=dict)

    @field_validator("environment")
    @classmethod
    def _no_secret_values(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if SECRET_NAME.search(name):
                raise ValueError(
                    f"environment {name} looks like a secret: declare it in the task "
                    "definition's secrets (a Secrets Manager or SSM reference), not in the plan"
                )
        return value

    @model_validator(mode="after")
    def _overrides_name_a_container(self) -> EcsTaskSpec:
        if (self.command is not None or self.environment) and not self.container:
            raise ValueError("command and environment overrides need container: <name>")
        if self.launch_type == "FARGATE" and self.network is None:
            raise ValueError("a FARGATE task needs network: {subnets: [...]}")
        return self

    @property
    def resource(self) -> str:
        return f"ecs task {self.task_definition} on cluster {self.cluster}"


class CompletionCheck(JobModel):
    """How an asynchronous ``lambda_job`` is known to have finished: a function invoked
    synchronously every ``interval`` whose result says so (``done_path`` matches something
    truthy; ``failed_path``, when it matches something truthy, fails the job)."""

    function: Annotated[str, Field(min_length=1), AfterValidator(arns.check_lambda_function)]
    qualifier: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    done_path: str = Field(min_length=1)
    failed_path: str | None = None
    interval: Duration = timedelta(minutes=1)

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("interval must be positive")
        return value


class LambdaJobSpec(JobBase):
    """Invoke a function with a payload: synchronously (at most 15 minutes), or
    asynchronously with a completion check for longer jobs."""

    kind: Literal["lambda_job"]
    function: Annotated[str, Field(min_length=1), AfterValidator(arns.check_lambda_function)]
    qualifier: str | None = None
    timeout: Annotated[Duration, AfterValidator(_check_job_timeout)] = LAMBDA_MAX_TIMEOUT
    payload: dict[str, Any] = Field(default_factory=dict)
    # JSONPath into the function's result and the value it must have (``expect``), or, with
    # no ``expect``, that it matches something truthy.
    assert_path: str | None = None
    expect: Any = None
    invocation: Literal["sync", "async"] = "sync"
    completion: CompletionCheck | None = None

    @model_validator(mode="after")
    def _lambda_timeout(self) -> LambdaJobSpec:
        if self.invocation == "async":
            if self.completion is None:
                raise ValueError("an async lambda_job needs completion: {function, done_path}")
            return self
        if self.completion is not None:
            raise ValueError("completion is for invocation: async")
        if self.timeout > LAMBDA_MAX_TIMEOUT:
            raise ValueError(
                "a synchronous lambda_job runs at most 15m (Lambda's own limit); "
                "use invocation: async with a completion check"
            )
        return self

    @property
    def resource(self) -> str:
        return f"lambda function {self.function}" + (f":{self.qualifier}" if self.qualifier else "")


class SsmCommandSpec(JobBase):
    """Run an SSM document on the running instances carrying all of ``instance_tags``."""

    kind: Literal["ssm_command"]
    document: str = Field(min_length=1)
    document_version: str | None = None
    parameters: dict[str, list[str]] = Field(default_factory=dict)
    instance_tags: dict[str, str] = Field(min_length=1)

    @property
    def resource(self) -> str:
        tags = ", ".join(f"{k}={v}" for k, v in sorted(self.instance_tags.items()))
        return f"ssm document {self.document} on instances tagged {tags}"


JobSpec = Annotated[EcsTaskSpec | LambdaJobSpec | SsmCommandSpec, Field(discriminator="kind")]
JOB_KINDS = ("ecs_task", "lambda_job", "ssm_command")


class WaveJob(JobModel):
    """A job step of a wave: where it runs, what runs, and what undoes it."""

    at: Placement
    run: JobSpec
    # The job the rollback runs if the release rolls back after this one succeeded, or
    # ``none`` to say explicitly that nothing needs undoing. Without either the rollback
    # stops for an operator at this job: a migration must never be silently left applied.
    compensation: JobSpec | Literal["none"] | None = None

    @property
    def name(self) -> str:
        return self.run.name

    @model_validator(mode="after")
    def _compensation_named_apart(self) -> WaveJob:
        if not isinstance(self.compensation, str | None) and self.compensation.name == self.name:
            raise ValueError("compensation needs a name of its own")
        return self


def placement_text(at: Placement) -> str:
    """How plan check and status name a job's place in its wave."""
    if at == "before":
        return "before the first traffic step"
    if at == "after":
        return "after the last traffic step"
    return f"after the {at}% step has baked"


# --- the job activity's input and result, and its status --------------------------------

RUN_JOB = "run_job"
# The type of the job activity's error when it knows the job never started (AWS refused to
# start it, or no instance matched, before any attempt could have started it): the job
# failed. Any other error leaves the job's outcome unknown.
JOB_NOT_STARTED = "JobNotStarted"


class JobPhase(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # It may have run: its activity gave up, timed out or was cancelled, or the job was
    # interrupted (an SSM invocation timed out, an ECS container stopped without an exit
    # code). The rollback treats it as applied.
    UNKNOWN = "outcome_unknown"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    ROLLBACK_FAILED = "rollback_failed"


class JobInput(BaseModel):
    """One attempt of one job; ``key`` names it so the job starts at most once per key."""

    release_id: str
    application: str | None = None
    wave: str
    job: JobSpec
    key: str
    poll_seconds: float = 5.0
    # True: check whether an asynchronous job started earlier has finished.
    check: bool = False


class JobResult(BaseModel):
    """What a job did: success, the resource it ran (task ARN, command id, request id) and
    details for the timeline (exit codes, stopped reason, log link, output excerpt)."""

    succeeded: bool
    # False: an asynchronous job still running (check again after its interval).
    done: bool = True
    # With ``succeeded=False``: the job was interrupted and may have done part or all of
    # its work (the rollback treats it as applied).
    outcome_unknown: bool = False
    reference: str = ""
    summary: str = ""
    details: dict[str, str] = Field(default_factory=dict)


class JobStatus(BaseModel):
    """A job step as status shows it."""

    name: str
    kind: str
    at: str
    phase: JobPhase = JobPhase.PENDING
    reference: str = ""
    summary: str = ""
    compensation: str | None = None  # the compensating job's name, "none", or None
    # Its outcome was unknown when it ended (it may have run): kept through the rollback.
    outcome_unknown: bool = False
    finished_at: datetime | None = None
    error: str | None = None


def job_problems(
    waves: list[tuple[list[WaveJob], list[int]]], target_names: set[str]
) -> list[tuple[str, str]]:
    """``(path, message)`` for each job placed at a percent its wave never shifts to,
    each job name used twice in the plan or also a target's (``skip-target`` names either),
    and each assertion that is no JSONPath. ``waves`` holds each wave's jobs and traffic."""
    from jsonpath_ng.ext import parse  # lazy: not needed to decode a plan in a workflow

    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, (jobs, traffic) in enumerate(waves):
        for j, job in enumerate(jobs):
            where = f"waves[{i}].jobs[{j}]"
            if isinstance(job.at, int) and job.at not in traffic:
                problems.append(
                    (f"{where}.at", f"{job.at} is not one of the wave's traffic steps {traffic}")
                )
            specs: list[tuple[str, EcsTaskSpec | LambdaJobSpec | SsmCommandSpec]] = [
                ("run", job.run)
            ]
            if not isinstance(job.compensation, str | None):
                specs.append(("compensation", job.compensation))
            for field, spec in specs:
                if spec.name in seen or spec.name in target_names:
                    problems.append(
                        (f"{where}.{field}.name", f"name {spec.name!r} is already used in the plan")
                    )
                seen.add(spec.name)
                if not isinstance(spec, LambdaJobSpec):
                    continue
                if field == "compensation" and spec.invocation == "async":
                    problems.append(
                        (
                            f"{where}.compensation.invocation",
                            "a compensating job runs synchronously",
                        )
                    )
                paths = {"assert_path": spec.assert_path}
                if spec.completion is not None:
                    paths["completion.done_path"] = spec.completion.done_path
                    paths["completion.failed_path"] = spec.completion.failed_path
                for name, path in paths.items():
                    if path is None:
                        continue
                    try:
                        parse(path)
                    except Exception as exc:  # jsonpath-ng raises several types
                        problems.append((f"{where}.{field}.{name}", f"not a JSONPath: {exc}"))
    return problems


def job_specs(
    jobs: list[WaveJob], region: str | None, role_arn: str | None, external_id: str | None
) -> list[tuple[str, JobSpec]]:
    """Every job of a wave and compensating job, as ``([i].run | [i].compensation, spec)``,
    with the department's region, role and external id where the job names none."""
    found: list[tuple[str, JobSpec]] = []
    for i, job in enumerate(jobs):
        found.append((f"[{i}].run", job.run))
        if not isinstance(job.compensation, str | None):
            found.append((f"[{i}].compensation", job.compensation))
    return [
        (
            path,
            spec.model_copy(
                update={
                    "region": spec.region or region,
                    "role_arn": spec.role_arn or role_arn,
                    "external_id": spec.external_id or external_id,
                }
            ),
        )
        for path, spec in found
    ]
