"""The release plan: what a release manager writes in YAML, validated field by field.

Cross-field rules (references, cycles, unique names) live in :mod:`models.validation` so the
error for each names the exact field path; :mod:`models.loader` runs both.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from models import arns
from models.checks import Check
from models.durations import Duration
from models.jobs import WaveJob
from models.secrets import SecretSource

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
RELEASE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class PlanModel(BaseModel):
    """Base for plan sections: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- small field types -----------------------------------------------------------------


def _check_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    # A region name such as "Europe" is a directory of the tz database: OSError, not a miss.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


TimeZoneName = Annotated[
    str,
    AfterValidator(_check_time_zone),
    WithJsonSchema({"type": "string", "examples": ["Europe/Berlin", "America/New_York"]}),
]

_LOCAL_TIME_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _parse_local_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    match = _LOCAL_TIME_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"invalid local time {value!r} (write it as HH:MM, 00:00 to 23:59)")
    return time(int(match.group(1)), int(match.group(2)))


LocalTime = Annotated[
    time,
    BeforeValidator(_parse_local_time),
    PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^([01]?\d|2[0-3]):[0-5]\d$"}),
]


def _parse_days(value: Any) -> Any:
    """Accept a list of weekdays or a range such as ``mon-fri``."""
    if isinstance(value, str):
        if "-" in value:
            first, _, last = value.partition("-")
            if first not in WEEKDAYS or last not in WEEKDAYS:
                raise ValueError(f"invalid day range {value!r} (write it like mon-fri)")
            i, j = WEEKDAYS.index(first), WEEKDAYS.index(last)
            span = j - i if j >= i else j + 7 - i
            return [WEEKDAYS[(i + k) % 7] for k in range(span + 1)]
        return [value]
    return value


Region = Annotated[
    str,
    AfterValidator(arns.check_region),
    WithJsonSchema({"type": "string", "examples": ["us-east-1", "eu-west-1"]}),
]
RoleArn = Annotated[str, AfterValidator(arns.check_role_arn)]

# AWS resource names and ARNs, each checked against its service and resource type.
SsmParameterName = Annotated[
    str, Field(min_length=1, max_length=2048), AfterValidator(arns.check_ssm_parameter)
]
LambdaFunction = Annotated[str, Field(min_length=1), AfterValidator(arns.check_lambda_function)]
ListenerArn = Annotated[str, Field(min_length=1), AfterValidator(arns.check_listener_arn)]
TargetGroupArn = Annotated[str, Field(min_length=1), AfterValidator(arns.check_target_group_arn)]
HostedZoneId = Annotated[str, Field(min_length=1), AfterValidator(arns.check_hosted_zone_id)]
EcsCluster = Annotated[str, Field(min_length=1), AfterValidator(arns.check_ecs_cluster)]
EcsService = Annotated[str, Field(min_length=1), AfterValidator(arns.check_ecs_service)]
TaskDefinition = Annotated[str, Field(min_length=1), AfterValidator(arns.check_task_definition)]
BucketName = Annotated[str, Field(min_length=3), AfterValidator(arns.check_bucket_name)]


# --- plan sections -----------------------------------------------------------------------


class Department(PlanModel):
    """Where a department's resources live; waves of the department inherit it."""

    region: Region | None = None
    role_arn: RoleArn | None = None
    external_id: str | None = None


FREEZE_YEARS = (1970, 9000)


class Freeze(PlanModel):
    """A period in which no deployment step starts."""

    name: str | None = None
    start: AwareDatetime
    end: AwareDatetime
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _end_after_start(self) -> Freeze:
        if self.end <= self.start:
            raise ValueError("freeze end must be after its start")
        # Window arithmetic adds days to these instants: keep clear of datetime's limits.
        for instant in (self.start, self.end):
            if not FREEZE_YEARS[0] <= instant.year <= FREEZE_YEARS[1]:
                raise ValueError(
                    f"freeze times must lie between the years {FREEZE_YEARS[0]} and "
                    f"{FREEZE_YEARS[1]} (got {instant.isoformat()})"
                )
        return self


class Window(PlanModel):
    """A recurring local-time rollout window; ``end`` before ``start`` crosses midnight."""

    timezone: TimeZoneName
    days: Annotated[list[Weekday], BeforeValidator(_parse_days)] = Field(
        default_factory=lambda: list(WEEKDAYS), min_length=1
    )
    start: LocalTime
    end: LocalTime
    from_date: date | None = None
    until_date: date | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Window:
        repeated = sorted({d for d in self.days if self.days.count(d) > 1}, key=WEEKDAYS.index)
        if repeated:
            raise ValueError(f"window lists {', '.join(repeated)} more than once")
        if self.start == self.end:
            raise ValueError("window start and end must differ")
        if self.from_date and self.until_date and self.until_date < self.from_date:
            raise ValueError("window until_date must not be before from_date")
        return self


class Approval(PlanModel):
    """An approval gate: a minimum number of approvals from each named group."""

    groups: dict[str, Annotated[int, Field(ge=1)]] = Field(min_length=1)
    timeout: Duration | None = None
    on_timeout: Literal["reject", "escalate"] = "reject"
    escalate_to: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    escalation_timeout: Duration | None = None

    @model_validator(mode="after")
    def _escalation(self) -> Approval:
        if self.timeout is not None and self.timeout <= timedelta(0):
            raise ValueError("approval timeout must be positive")
        if self.on_timeout == "escalate":
            if self.timeout is None:
                raise ValueError("on_timeout: escalate needs a timeout")
            if not self.escalate_to:
                raise ValueError("on_timeout: escalate needs escalate_to groups")
        return self


class TargetBase(PlanModel):
    """Fields every target kind has: where it lives and which account it is in."""

    name: Name
    region: Region | None = None
    role_arn: RoleArn | None = None
    external_id: str | None = None


class ValueFrom(SecretSource):
    """Where a secret value lives, so the plan (and Temporal's history) never holds it:
    a Secrets Manager secret's ARN, or an SSM parameter's name (SecureString, decrypted).
    The worker reads it with the target's role when it applies the target."""

    FIELD = "value_from"


class SsmParameterTarget(TargetBase):
    """An SSM parameter whose value becomes the release's value: ``value`` written in the
    plan, or ``value_from`` a secret the worker reads when it applies the target."""

    kind: Literal["ssm_parameter"]
    parameter: SsmParameterName
    value: str | None = Field(default=None, min_length=1)
    value_from: ValueFrom | None = None
    type: Literal["String", "SecureString"] = "String"

    @model_validator(mode="after")
    def _one_value(self) -> SsmParameterTarget:
        if (self.value is None) == (self.value_from is None):
            raise ValueError("an ssm_parameter target has exactly one of value or value_from")
        return self

    @property
    def secret(self) -> bool:
        """Whether the value must never be shown, logged or kept: a SecureString, or a
        value read from a secret."""
        return self.type == "SecureString" or self.value_from is not None

    @property
    def resource(self) -> str:
        """The AWS resource this target changes, as status and errors name it."""
        return f"ssm parameter {self.parameter}"


class LambdaAliasTarget(TargetBase):
    """A Lambda alias moved to a version through weighted routing."""

    kind: Literal["lambda_alias"]
    function: LambdaFunction
    alias: str = Field(min_length=1)
    version: str = Field(pattern=r"^\d+$")

    @property
    def resource(self) -> str:
        """The AWS resource this target changes, as status and errors name it."""
        return f"lambda alias {self.function}:{self.alias}"


class Elbv2WeightsTarget(TargetBase):
    """A listener's weighted forward action shifted from blue to green target group."""

    kind: Literal["elbv2_weights"]
    listener_arn: ListenerArn
    blue_target_group_arn: TargetGroupArn
    green_target_group_arn: TargetGroupArn

    @property
    def resource(self) -> str:
        """The AWS resource this target changes, as status and errors name it."""
        return f"elbv2 listener {self.listener_arn}"


class Route53WeightedTarget(TargetBase):
    """Two weighted records of one name; weight moves from blue to green."""

    kind: Literal["route53_weighted"]
    hosted_zone_id: HostedZoneId
    record_name: str = Field(min_length=1)
    record_type: Literal["A", "AAAA", "CNAME"] = "CNAME"
    blue_set_identifier: str = Field(min_length=1)
    green_set_identifier: str = Field(min_length=1)

    @property
    def resource(self) -> str:
        """The AWS resource this target changes, as status and errors name it."""
        return f"route53 record {self.record_name} in {self.hosted_zone_id}"


class EcsServiceTarget(TargetBase):
    """An ECS service switched to a task-definition revision (and desired count)."""

    kind: Literal["ecs_service"]
    cluster: EcsCluster
    service: EcsService
    task_definition: TaskDefinition
    desired_count: int | None = Field(default=None, ge=0)

    @property
    def resource(self) -> str:
        """The AWS resource this target changes, as status and errors name it."""
        return f"ecs service {self.cluster}/{self.service}"


class S3ArtifactTarget(TargetBase):
    """A version of a versioned S3 object promoted to the release key."""

    kind: Literal["s3_artifact"]
    bucket: BucketName
    key: str = Field(min_length=1)
    source_key: str = Field(min_length=1)
    source_version_id: str = Field(min_length=1)

    @property
    def resource(self) -> str:
        """The AWS resource this target changes, as status and errors name it."""
        return f"s3 object s3://{self.bucket}/{self.key}"


# The SSM document that deploys with shell commands; its ``commands`` parameter holds them.
RUN_SHELL_SCRIPT = "AWS-RunShellScript"
FLEET_BATCH_PATTERN = re.compile(r"^([1-9]\d?|100)%$")


class FleetInstances(PlanModel):
    """Which instances a fleet is: the running ones carrying every tag of ``tags``, or the
    members of an Auto Scaling group (both: the group's members carrying the tags)."""

    tags: dict[str, str] = Field(default_factory=dict)
    auto_scaling_group: str | None = Field(default=None, min_length=1, max_length=255)

    @model_validator(mode="after")
    def _chosen(self) -> FleetInstances:
        if not self.tags and self.auto_scaling_group is None:
            raise ValueError("instances need tags, an auto_scaling_group or both")
        return self

    def __str__(self) -> str:
        parts = []
        if self.auto_scaling_group:
            parts.append(f"in auto scaling group {self.auto_scaling_group}")
        if self.tags:
            parts.append("tagged " + ", ".join(f"{k}={v}" for k, v in sorted(self.tags.items())))
        return " ".join(parts)


class FleetCommand(PlanModel):
    """An SSM document run on a batch of instances: ``AWS-RunShellScript`` with
    ``commands``, ``AWS-RunPatchBaseline`` (``parameters: {Operation: [Install]}``), or any
    named document with its parameters. ``timeout`` bounds how long the batch waits for
    every instance's invocation."""

    document: str = Field(default=RUN_SHELL_SCRIPT, min_length=1, max_length=128)
    document_version: str | None = None
    commands: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    parameters: dict[str, list[str]] = Field(default_factory=dict)
    timeout: Duration = timedelta(minutes=30)

    @model_validator(mode="after")
    def _commands_for_shell_scripts(self) -> FleetCommand:
        if self.commands is not None and "commands" in self.parameters:
            raise ValueError("give the shell commands once: commands or parameters.commands")
        if self.document == RUN_SHELL_SCRIPT and not (self.commands or self.parameters):
            raise ValueError(f"{RUN_SHELL_SCRIPT} needs commands")
        if self.timeout <= timedelta(0) or self.timeout > timedelta(hours=12):
            raise ValueError("timeout must be positive and at most 12h")
        return self

    @property
    def ssm_parameters(self) -> dict[str, list[str]]:
        """The document's parameters as SendCommand takes them."""
        if self.commands is None:
            return dict(self.parameters)
        return {**self.parameters, "commands": list(self.commands)}

    @property
    def text(self) -> str:
        """The command for people: ``AWS-RunPatchBaseline (Operation=Install)``."""
        shown = self.ssm_parameters
        if list(shown) == ["commands"]:
            return f"{self.document}: " + "; ".join(shown["commands"])
        args = ", ".join(f"{k}={','.join(v)}" for k, v in sorted(shown.items()))
        return self.document + (f" ({args})" if args else "")


def _parse_batch_size(value: Any) -> Any:
    if isinstance(value, str) and not value.endswith("%") and value.isdigit():
        return int(value)
    if isinstance(value, str) and not FLEET_BATCH_PATTERN.match(value):
        raise ValueError(f"invalid batch_size {value!r} (a count such as 3, or 1% to 100%)")
    return value


def _rollback_shape(value: Any) -> Any:
    if not isinstance(value, dict | FleetCommand) and value != "none":
        raise ValueError(
            "rollback is a command ({commands: [...]} or {document: ..., parameters: ...}) "
            "or none (nothing undoes the command)"
        )
    return value


class Ec2FleetTarget(TargetBase):
    """EC2 instances updated or patched in place through SSM Run Command, batch by batch:
    each batch leaves its target groups (and drains), runs ``command``, is verified, and
    comes back once healthy, while at least ``min_healthy_percent`` of the fleet serves.
    A rollback runs ``rollback`` on the instances that changed (``none``: nothing undoes
    the command, the instances are only put back in service)."""

    kind: Literal["ec2_fleet"]
    instances: FleetInstances
    batch_size: Annotated[int | str, BeforeValidator(_parse_batch_size)] = Field(
        default=1, description="instances per batch: a count, or a percentage such as 10%"
    )
    min_healthy_percent: int = Field(default=0, ge=0, le=99)
    target_groups: list[TargetGroupArn] = Field(default_factory=list)
    command: FleetCommand
    rollback: Annotated[FleetCommand | Literal["none"], BeforeValidator(_rollback_shape)]
    # How long a batch may take to leave its target groups, and to be healthy again.
    drain_timeout: Duration = timedelta(minutes=10)
    healthy_timeout: Duration = timedelta(minutes=10)

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("batch_size must be at least 1")
        return value

    @field_validator("target_groups")
    @classmethod
    def _unique_groups(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("target_groups lists a target group twice")
        return value

    @field_validator("drain_timeout", "healthy_timeout")
    @classmethod
    def _positive_wait(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0) or value > timedelta(hours=6):
            raise ValueError("must be positive and at most 6h")
        return value

    @property
    def resource(self) -> str:
        """The AWS resource this target changes, as status and errors name it."""
        return f"ec2 fleet {self.instances}"


Target = Annotated[
    SsmParameterTarget
    | LambdaAliasTarget
    | Elbv2WeightsTarget
    | Route53WeightedTarget
    | EcsServiceTarget
    | S3ArtifactTarget
    | Ec2FleetTarget,
    Field(discriminator="kind"),
]
# Kinds that shift traffic in the wave's steps; the others apply fully at the first step.
TRAFFIC_KINDS = frozenset({"lambda_alias", "elbv2_weights", "route53_weighted"})
TARGET_KINDS = (
    "ssm_parameter",
    "lambda_alias",
    "elbv2_weights",
    "route53_weighted",
    "ecs_service",
    "s3_artifact",
    "ec2_fleet",
)


# A bake step fails once its alarms went unread this long in all (Wave.bake_unread_limit).
DEFAULT_BAKE_UNREAD_LIMIT = timedelta(minutes=5)


class Wave(PlanModel):
    """Targets rolled out together by one department, behind one gate and window."""

    name: Name
    department: str = Field(min_length=1)
    targets: list[str] = Field(min_length=1)
    after: list[str] = Field(default_factory=list)
    approval: Approval | None = None
    window: Window | None = None
    traffic: list[Annotated[int, Field(ge=1, le=100)]] = Field(default_factory=lambda: [100])
    bake: Duration = timedelta(0)
    alarms: list[str] = Field(default_factory=list)
    # How often a bake polls the wave's alarms (the bake activity heartbeats each poll).
    bake_interval: Duration = timedelta(seconds=10)
    # A bake counts only watched time: alarms unread for longer than a few intervals (AWS
    # unreachable, no worker) extend it, and more than this unread time fails the step.
    bake_unread_limit: Duration = Field(
        default=DEFAULT_BAKE_UNREAD_LIMIT,
        description="unread alarm time a bake step may make up for before it fails",
    )
    on_failure: Literal["rollback_release", "rollback_wave", "pause"] = "rollback_release"
    on_window_close: Literal["pause", "finish_wave"] = "pause"
    # One-off work run at a point of the traffic steps (models.jobs).
    jobs: list[WaveJob] = Field(default_factory=list)
    # Probes run before the first step and during every bake (models.checks).
    checks: list[Check] = Field(default_factory=list)

    @field_validator("checks")
    @classmethod
    def _unique_check_names(cls, value: list[Check]) -> list[Check]:
        names = [c.name for c in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"check names must be unique in a wave: {', '.join(twice)}")
        return value

    @field_validator("bake_interval")
    @classmethod
    def _positive_bake_interval(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("bake_interval must be positive")
        return value


# --- notifications -----------------------------------------------------------------------

NotificationEvent = Literal[
    "approval_needed",
    "wave_started",
    "wave_completed",
    "rollback_started",
    "rollback_finished",
    "rollback_failed",
    "release_finished",
]
NOTIFICATION_EVENTS: tuple[NotificationEvent, ...] = (
    "approval_needed",
    "wave_started",
    "wave_completed",
    "rollback_started",
    "rollback_finished",
    "rollback_failed",
    "release_finished",
)
check_sns_topic_arn = arns.arn_checker(arns.SNS_TOPIC)


def check_webhook_url(value: str) -> str:
    """``value`` if it is an http(s) URL with a host, else a clear error."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("webhook_url must be an http:// or https:// URL with a host")
    return value


class Notifications(PlanModel):
    """Where a release's notifications go (SNS topic, webhook or both) and which events."""

    sns_topic_arn: Annotated[str, AfterValidator(check_sns_topic_arn)] | None = None
    webhook_url: Annotated[str, AfterValidator(check_webhook_url)] | None = None
    events: list[NotificationEvent] = Field(
        default_factory=lambda: list(NOTIFICATION_EVENTS), min_length=1
    )
    # Where the topic is published from; the region defaults to the topic ARN's.
    region: Region | None = None
    role_arn: RoleArn | None = None
    external_id: str | None = None

    @model_validator(mode="after")
    def _has_destination(self) -> Notifications:
        if not self.sns_topic_arn and not self.webhook_url:
            raise ValueError("notifications need an sns_topic_arn, a webhook_url or both")
        return self

    @property
    def topic_region(self) -> str | None:
        """The region to publish in: ``region``, else the topic ARN's."""
        if self.region or not self.sns_topic_arn:
            return self.region
        return self.sns_topic_arn.split(":")[3]


class ReleasePlan(PlanModel):
    """One release of one application version across waves of targets."""

    id: str = Field(pattern=RELEASE_ID_PATTERN)
    application: Name
    version: str = Field(min_length=1, max_length=128)
    requested_by: str = Field(min_length=1)
    description: str = ""
    allow_self_approval: bool = False
    on_rejection: Literal["rollback", "keep"] = "rollback"
    # When another running release deploys one of this plan's targets: refuse the
    # submission (default), or queue this release behind it.
    queue: bool = False
    approver_groups: dict[str, list[str]] = Field(default_factory=dict)
    # Members of these groups (and the requester) may pause, resume, abort, add freezes and
    # decide guided failures; only they may override a rollout window.
    operator_groups: list[str] = Field(default_factory=list)
    departments: dict[str, Department] = Field(default_factory=dict)
    freezes: list[Freeze] = Field(default_factory=list)
    targets: list[Target] = Field(min_length=1)
    waves: list[Wave] = Field(min_length=1)
    notifications: Notifications | None = None

    def target(self, name: str) -> Target:
        """The target named ``name`` (the plan was validated, so it exists)."""
        return next(t for t in self.targets if t.name == name)

    def wave(self, name: str) -> Wave:
        """The wave named ``name``."""
        return next(w for w in self.waves if w.name == name)
