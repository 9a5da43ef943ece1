"""AWS preflight: the inputs and result of checking, before anything changes, that every
resource a release touches exists and is reachable with the role that will be used (and
that the plan's webhook resolves to an address webhooks may reach)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from models.checks import LambdaInvokeCheck
from models.jobs import JobSpec, job_specs
from models.plan import ReleasePlan, Target
from models.resources import resolved_targets

PREFLIGHT = "preflight"
WEBHOOK_PATH = "notifications.webhook_url"


class PreflightTarget(BaseModel):
    """A target resolved to its region, role and external id, and where the plan has it."""

    path: str  # targets[2]
    target: Target


class PreflightAlarms(BaseModel):
    """A wave's alarms, read in its department's region and account."""

    path: str  # waves[1].alarms
    wave: str
    alarms: list[str]
    region: str | None = None
    role_arn: str | None = None
    external_id: str | None = None


class PreflightFunction(BaseModel):
    """A Lambda function a wave's ``lambda_invoke`` check invokes (models.checks)."""

    path: str  # waves[1].checks[0]
    wave: str
    function: str
    qualifier: str | None = None
    region: str | None = None
    role_arn: str | None = None
    external_id: str | None = None


class PreflightJob(BaseModel):
    """A job step (or its compensating job) whose task definition, function or document
    must exist; ``job`` carries its department's region and role where it names none."""

    path: str  # waves[1].jobs[0].run
    wave: str
    job: JobSpec


class PreflightInput(BaseModel):
    """What to check: targets and alarms (of a whole plan, or of one wave), and the plan's
    webhook (of a whole plan)."""

    targets: list[PreflightTarget] = Field(default_factory=list)
    alarms: list[PreflightAlarms] = Field(default_factory=list)
    webhook_url: str | None = None
    functions: list[PreflightFunction] = Field(default_factory=list)
    jobs: list[PreflightJob] = Field(default_factory=list)
    # Whose release: roles are assumed in its name and checked against its application's.
    release_id: str | None = None
    application: str | None = None


class PreflightProblem(BaseModel):
    """One thing missing or unreachable, named by its plan field and target or wave."""

    path: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.path} ({self.name}): {self.message}"


class PreflightResult(BaseModel):
    """Every problem found (none: the release may change AWS)."""

    problems: list[PreflightProblem] = Field(default_factory=list)
    checked: int = 0  # targets and alarm sets checked

    @property
    def ok(self) -> bool:
        """True when nothing is missing or unreachable."""
        return not self.problems


def preflight_input(plan: ReleasePlan, waves: list[str] | None = None) -> PreflightInput:
    """The preflight of ``plan`` (or only of the named ``waves``), in plan order; the whole
    plan's includes its webhook."""
    chosen = [w for w in plan.waves if waves is None or w.name in waves]
    in_chosen = {name for w in chosen for name in w.targets}
    targets = [
        PreflightTarget(path=f"targets[{i}]", target=target)
        for i, target in enumerate(resolved_targets(plan))
        if target.name in in_chosen
    ]
    alarms = []
    for wave in chosen:
        if not wave.alarms:
            continue
        department = plan.departments.get(wave.department)
        alarms.append(
            PreflightAlarms(
                path=f"waves[{plan.waves.index(wave)}].alarms",
                wave=wave.name,
                alarms=list(wave.alarms),
                region=department.region if department else None,
                role_arn=department.role_arn if department else None,
                external_id=department.external_id if department else None,
            )
        )
    functions = [
        PreflightFunction(
            path=f"waves[{plan.waves.index(wave)}].checks[{i}]",
            wave=wave.name,
            function=check.function,
            qualifier=check.qualifier,
            region=check.region or (department.region if department else None),
            role_arn=check.role_arn or (department.role_arn if department else None),
            external_id=check.external_id
            if check.role_arn
            else (department.external_id if department else None),
        )
        for wave in chosen
        for department in [plan.departments.get(wave.department)]
        for i, check in enumerate(wave.checks)
        if isinstance(check, LambdaInvokeCheck)
    ]
    webhook = plan.notifications.webhook_url if plan.notifications and waves is None else None
    jobs = [
        PreflightJob(path=f"waves[{plan.waves.index(wave)}].jobs{path}", wave=wave.name, job=spec)
        for wave in chosen
        for department in [plan.departments.get(wave.department)]
        for path, spec in job_specs(
            wave.jobs,
            department.region if department else None,
            department.role_arn if department else None,
            department.external_id if department else None,
        )
    ]
    return PreflightInput(
        targets=targets,
        alarms=alarms,
        functions=functions,
        jobs=jobs,
        release_id=plan.id,
        application=plan.application,
        webhook_url=webhook,
    )
