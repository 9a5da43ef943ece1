"""Inputs and results of the workflow, its updates and its activities: one model each."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from models.checks import CheckResult
from models.fleet import InstanceStatus
from models.jobs import JobStatus
from models.plan import (
    DEFAULT_BAKE_UNREAD_LIMIT,
    Freeze,
    NotificationEvent,
    Notifications,
    ReleasePlan,
    Target,
    Wave,
)
from models.policy import Policy
from models.preflight import PreflightInput
from models.signing import (
    DecisionAction,
    DecisionPayload,
    DecisionRefused,
    SignedDecision,
    verify_decision,
)
from models.status import ReleasePhase, TargetStatus, TimelineEvent, WavePhase


class ReleaseInput(BaseModel):
    """Start a release of ``plan``."""

    plan: ReleasePlan
    # The requester's signed submission (action ``submit``): the release verifies it
    # against the organisation policy before anything else, and the signer is the requester.
    submission: SignedDecision | None = None


class ReleaseResult(BaseModel):
    """How a release ended."""

    release_id: str
    phase: ReleasePhase
    error: str | None = None


class Signature(BaseModel):
    """A decision's signature: the payload its actor signed (:func:`decision_payload`) and
    the armored SSH signature of its canonical bytes (see ``models.signing``)."""

    signed: SignedDecision | None = None


class DecisionInput(Signature):
    """An approver's decision on a wave's gate (approve or reject), signed by the approver."""

    wave: str
    approver: str = Field(min_length=1)
    comment: str = ""


class DecisionResult(BaseModel):
    """What the gate looks like after the decision."""

    wave: str
    accepted: bool
    satisfied: bool
    missing: dict[str, int]
    message: str


class TargetInput(BaseModel):
    """A target of a release, resolved to its region and account (from its department)."""

    release_id: str
    # The release's application: the organisation policy's roles for it are checked again
    # before one is assumed (None in inputs written before relman sent it).
    application: str | None = None
    target: Target


class Snapshot(BaseModel):
    """A resource's state before the release touched it; compensation restores it.

    ``state`` is kind-specific and never holds a secret value (a SecureString is restored
    from its previous parameter version). ``display`` is what status shows as *before*.
    """

    resource: str
    exists: bool
    state: dict[str, Any] = Field(default_factory=dict)
    display: str | None = None


class ApplyInput(BaseModel):
    """Apply the release's new version of a target at ``percent`` of traffic.

    Kinds without traffic (see ``models.plan.TRAFFIC_KINDS``) apply fully at any percent.
    ``written`` is the previous step's ``ApplyResult.written`` (None for the first step):
    if the resource no longer holds it, someone else changed it between the steps and the
    step is refused with a ``ResourceDrifted`` error instead of overwriting their change.
    """

    release_id: str
    # The release's application: the organisation policy's roles for it are checked again
    # before one is assumed (None in inputs written before relman sent it).
    application: str | None = None
    target: Target
    snapshot: Snapshot
    percent: int = Field(default=100, ge=0, le=100)
    written: dict[str, Any] | None = None


class ApplyResult(BaseModel):
    """What the resource is now, and whether this call changed it (False on a re-run).

    ``written`` is what the resource holds after this call, read back from AWS, in a compact
    kind-specific form (never a secret value) that the next step and compensation compare
    the resource with: an SSM parameter's version and type, a Lambda alias's version,
    routing weights and revision id, an ELB listener's forward weights, both Route 53
    records' identifiers, weights, TTLs and values, an ECS service's task definition (and
    desired count when the release sets it), an S3 object's version id.
    ``written_display`` is the same for people, as drift errors name it.
    """

    resource: str
    changed: bool
    display: str | None = None
    written: dict[str, Any] = Field(default_factory=dict)
    written_display: str | None = None


class CompensateInput(BaseModel):
    """Restore a target's resource to its snapshot.

    ``written`` is what relman last wrote (the last ``ApplyResult.written``): when the
    resource no longer holds it, someone else changed it since, and compensation refuses
    with a ``ResourceDrifted`` error rather than overwrite their change, unless ``force``.
    None skips the check (nothing recorded).
    """

    release_id: str
    # The release's application: the organisation policy's roles for it are checked again
    # before one is assumed (None in inputs written before relman sent it).
    application: str | None = None
    target: Target
    snapshot: Snapshot
    written: dict[str, Any] | None = None
    force: bool = False


class CompensateResult(BaseModel):
    """What the resource was restored to, and whether this call changed it."""

    resource: str
    changed: bool
    display: str | None = None


# A batch activity works on this many targets at a time; its attempt's timeout grows with
# every further such share of targets.
BATCH_FAN_OUT = 32


class TargetsInput(BaseModel):
    """Snapshot several targets of a wave in one activity.

    ``final_attempt``: the attempt on which a target's transient failure is reported as a
    failure of that target instead of retrying the batch.
    """

    release_id: str
    # The release's application: the organisation policy's roles for it are checked again
    # before one is assumed (None in inputs written before relman sent it).
    application: str | None = None
    targets: list[Target]
    final_attempt: int = 1


class SnapshotsResult(BaseModel):
    """Each target's snapshot, or why it could not be taken (by target name)."""

    snapshots: dict[str, Snapshot] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)


class ApplyStepInput(BaseModel):
    """Apply one traffic step to several targets of a wave in one activity."""

    items: list[ApplyInput]
    final_attempt: int = 1


class BatchProgress(BaseModel):
    """Heartbeat details of a snapshot or apply batch: the targets done so far.

    ``results`` holds, by target name, each finished target's ``Snapshot`` or
    ``ApplyResult`` as JSON (in the order they finished). A retried attempt (the worker
    died, the batch failed transiently) reports these without calling AWS again; the CLI
    reads them from the wave's pending activity to show targets as they finish.
    ``percent`` is the traffic step an apply batch applies (None for a snapshot batch).
    """

    what: Literal["apply", "snapshot"]
    total: int
    percent: int | None = None
    results: dict[str, dict[str, Any]] = Field(default_factory=dict)


class ApplyStepResult(BaseModel):
    """Each target's result, or why it failed (by target name).

    Every failed target is in ``errors`` (its message). A target that someone else changed
    since relman's previous step (error type ``ResourceDrifted``) is also in ``drifted``,
    with the error's details: ``target``, ``resource``, ``written``, ``current``,
    ``snapshot`` and ``wanted`` (display strings), so the workflow can tell a drift from
    other failures without parsing messages.
    """

    results: dict[str, ApplyResult] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
    drifted: dict[str, dict[str, Any]] = Field(default_factory=dict)


# The actor of the entries relman writes into a release's timeline itself.
SYSTEM_ACTOR = "relman"
# The wave child's workflow type, and the signals it sends its release: the release starts
# the child by name, so its module is not loaded into every release's sandbox.
WAVE_WORKFLOW = "WaveWorkflow"
# Separates a wave workflow's id parts. Release ids and wave names may not contain it
# (models.plan's patterns), so no two releases' wave workflows can share an id.
WAVE_ID_SEPARATOR = "/"
WAVE_PROGRESS_SIGNAL = "wave_progress"
RECORD_SNAPSHOTS_SIGNAL = "record_snapshots"


def wave_workflow_id(release_id: str, wave: str, attempt: int) -> str:
    """The workflow id of a wave's ``attempt``-th deployment, e.g. ``rel-42/finance/1``."""
    return WAVE_ID_SEPARATOR.join((release_id, wave, str(attempt)))


# Activity names: the workflow refers to activities by name so it never imports boto3.
SNAPSHOT_TARGET = "snapshot_target"
APPLY_TARGET = "apply_target"
COMPENSATE_TARGET = "compensate_target"
# One activity per wave step for all its targets.
SNAPSHOT_TARGETS = "snapshot_targets"
APPLY_TARGETS = "apply_targets"
CHECK_ALARMS = "check_alarms"
WATCH_ALARMS = "watch_alarms"


# --- health: a wave's CloudWatch alarms -----------------------------------------------------

# Bake polls CloudWatch this often unless the input says otherwise.
DEFAULT_BAKE_INTERVAL = timedelta(seconds=10)


class AlarmCheckInput(BaseModel):
    """A wave's CloudWatch alarms, in its department's region and account."""

    release_id: str
    # The release's application: the organisation policy's roles for it are checked again
    # before one is assumed (None in inputs written before relman sent it).
    application: str | None = None
    wave: str
    alarms: list[str]
    region: str | None = None
    role_arn: str | None = None
    external_id: str | None = None


class FiringAlarm(BaseModel):
    """An alarm in state ALARM, with CloudWatch's reason and when it entered the state."""

    name: str
    reason: str
    since: datetime | None = None


class AlarmCheckResult(BaseModel):
    """Which of the wave's alarms are firing right now (none: the wave may start)."""

    firing: list[FiringAlarm] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no alarm is in ALARM."""
        return not self.firing


# Time between two successful reads of the alarms counts as watched only when the reads are
# at most this many intervals apart; a longer gap is unread time and extends the bake.
BAKE_GAP_INTERVALS = 3


class BakeInput(AlarmCheckInput):
    """Watch a wave's alarms for ``duration`` of watched time, polling every ``interval``.

    Time counts only while the alarms are read: a gap between successful reads longer than
    ``BAKE_GAP_INTERVALS`` intervals is unread time, which extends the bake; more than
    ``unread_limit`` of it in all fails the bake. ``percent`` is the step baked (for the
    messages; None from waves started before relman sent it).
    """

    duration: timedelta = Field(ge=timedelta(0))
    interval: timedelta = Field(default=DEFAULT_BAKE_INTERVAL, gt=timedelta(0))
    unread_limit: timedelta = Field(default=DEFAULT_BAKE_UNREAD_LIMIT, ge=timedelta(0))
    percent: int | None = None


class BakeGap(BaseModel):
    """A stretch of a bake in which the alarms went unread: from the last successful read
    to the next one, and the last error meanwhile (None: no worker was polling)."""

    start: datetime
    end: datetime
    error: str | None = None

    @property
    def seconds(self) -> float:
        """How long the alarms went unread."""
        return (self.end - self.start).total_seconds()


class BakeProgress(BaseModel):
    """Heartbeat details of a bake: a retried attempt resumes from these.

    ``watched_seconds`` is the observed healthy time so far and ``last_read_at`` the time
    of the last successful read (wall-clock UTC), so a worker that resumes the bake counts
    the time nobody watched as a gap. ``deadline`` is when the bake would end with no gap
    (read by relman before it counted watched time; kept for it). Details heartbeated by
    that relman lack the newer fields: their elapsed time counts as watched.
    """

    started_at: datetime
    deadline: datetime
    elapsed_seconds: float
    polls: int
    watched_seconds: float | None = None
    last_read_at: datetime | None = None
    unread_seconds: float = 0.0
    gaps: list[BakeGap] = Field(default_factory=list)
    # The last read's error while the alarms are unread (None once a read succeeds).
    last_error: str | None = None


class BakeResult(BaseModel):
    """How a bake ended: quiet for its whole watched duration, or cut short by firing
    alarms; ``gaps`` are the stretches its alarms went unread (each extended the bake)."""

    firing: list[FiringAlarm] = Field(default_factory=list)
    polls: int
    elapsed_seconds: float
    watched_seconds: float | None = None
    gaps: list[BakeGap] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the bake ran its full duration with no alarm in ALARM."""
        return not self.firing


# --- a wave's deployment (child workflow) ---------------------------------------------------


class Change(BaseModel):
    """A target the release may have changed, and the snapshot that undoes it."""

    wave: str
    target: Target
    snapshot: Snapshot


class OperatorInput(Signature):
    """Who asks for an operator action, and why (recorded in the timeline); signed."""

    actor: str = Field(min_length=1)
    reason: str = ""


class FreezeInput(OperatorInput):
    """Add a freeze to a running release."""

    freeze: Freeze


class OverrideInput(OperatorInput):
    """Let a wave start outside its window; a freeze is overridden only if asked for."""

    wave: str
    include_freeze: bool = False


class WaveActionInput(OperatorInput):
    """An operator decision about a wave paused on failure (retry or roll back).

    ``force``: retrying a failed rollback overwrites resources someone else changed since
    relman wrote them (drift), instead of leaving them for an operator.
    """

    wave: str
    force: bool = False


class TargetActionInput(OperatorInput):
    """Skip one target: of a wave paused on failure, or of a rollback that cannot succeed."""

    target: str


class OperatorResult(BaseModel):
    """What an operator action did."""

    message: str


class WaveInput(BaseModel):
    """Deploy one wave's targets through its traffic steps, from ``start_step`` on.

    ``snapshots`` holds the targets already snapshotted by an earlier attempt of the wave:
    they are not snapshotted again (the resource may already hold the new version).
    """

    release_id: str
    # The release's application: the organisation policy's roles for it are checked again
    # before one is assumed (None in inputs written before relman sent it).
    application: str | None = None
    parent_id: str
    wave: Wave
    targets: list[Target]
    skipped: list[str] = Field(default_factory=list)
    freezes: list[Freeze] = Field(default_factory=list)
    snapshots: dict[str, Snapshot] = Field(default_factory=dict)
    start_step: int = 0
    paused: bool = False
    override_window: bool = False
    override_freeze: bool = False
    alarm_region: str | None = None
    alarm_role_arn: str | None = None
    alarm_external_id: str | None = None
    bake_interval: timedelta = DEFAULT_BAKE_INTERVAL
    # The wave's AWS preflight, run when it starts changing AWS (None: none, as for waves
    # started by relman before it had one).
    preflight: PreflightInput | None = None
    # Job steps that succeeded in an earlier attempt of the wave: not run again.
    jobs_done: list[str] = Field(default_factory=list)
    # Each fleet's instances that an earlier attempt of the wave finished (phase done), by
    # target: a batch all of whose instances are here is not run again.
    fleet_done: dict[str, list[InstanceStatus]] = Field(default_factory=dict)


class WaveOutcome(BaseModel):
    """How a wave's deployment attempt ended."""

    outcome: str  # completed | failed | stopped
    failed_step: int | None = None
    error: str | None = None
    targets: list[TargetStatus] = Field(default_factory=list)
    jobs: list[JobStatus] = Field(default_factory=list)
    events: list[TimelineEvent] = Field(default_factory=list)


class WaveProgress(BaseModel):
    """Live view of a wave's deployment, for ``relman status``."""

    phase: WavePhase
    step: int
    percent: int
    next_start: datetime | None = None
    waiting_for: str | None = None
    targets: list[TargetStatus] = Field(default_factory=list)
    jobs: list[JobStatus] = Field(default_factory=list)
    # Each check's last probe (models.checks).
    checks: list[CheckResult] = Field(default_factory=list)


class WaveReport(BaseModel):
    """Signal from a wave to its release: where it stands and what happened since."""

    wave: str
    progress: WaveProgress
    events: list[TimelineEvent] = Field(default_factory=list)


class SnapshotsRecorded(BaseModel):
    """Signal from a wave to its release: these changes must be undone on rollback."""

    changes: list[Change]


# --- notifications --------------------------------------------------------------------------

NOTIFY = "notify"
NOTIFY_DESTINATIONS = "notification_destinations"


class ApprovalRequest(BaseModel):
    """What an ``approval_needed`` notification asks for, of whom, and how to answer."""

    groups: dict[str, int]  # approvals the gate still needs, per group
    eligible_approvers: list[str]
    command: str


class Notification(BaseModel):
    """The JSON message every destination receives (SNS message body, webhook POST body).

    ``id`` is stable across retries and ``sequence`` counts the release's notifications, so
    a receiver can drop duplicates (delivery is at least once) and restore their order.
    """

    id: str
    sequence: int
    release_id: str
    application: str
    version: str
    event: NotificationEvent
    wave: str | None = None
    message: str
    actor: str | None = None
    time: datetime
    approval: ApprovalRequest | None = None
    # How the release ended (release_finished), and why it stopped (also rollback_started).
    outcome: ReleasePhase | None = None
    error: str | None = None


class NotifyInput(BaseModel):
    """Send ``notification`` to the plan's destinations; None: the worker's defaults."""

    notification: Notification
    destinations: Notifications | None = None


class NotifyResult(BaseModel):
    """Where the notification went (webhook URLs without path or query)."""

    delivered: list[str] = Field(default_factory=list)


class NotifyDestinationsInput(BaseModel):
    """Ask the worker whether it has notification destinations of its own."""

    release_id: str


class NotifyDestinationsResult(BaseModel):
    """Whether the worker's configuration sends notifications when a plan names none."""

    configured: bool


# --- signed decisions ------------------------------------------------------------------------

# The Update (or start) each signed action is, and the input it carries.
DecisionMessage = DecisionInput | OperatorInput


def decision_payload(
    action: DecisionAction,
    input: DecisionMessage,
    *,
    release_id: str,
    plan_digest: str,
    issued_at: datetime,
) -> DecisionPayload:
    """What the actor of ``input`` signs for ``action`` on a release: the CLI signs these
    bytes, and the workflow checks that the payload signed is exactly this one."""
    wave = target = None
    details = ""
    if isinstance(input, DecisionInput):
        actor, comment, wave = input.approver, input.comment, input.wave
    else:
        actor, comment = input.actor, input.reason
        if isinstance(input, (WaveActionInput, OverrideInput)):
            wave = input.wave
        if isinstance(input, TargetActionInput):
            target = input.target
        if isinstance(input, OverrideInput):
            details = f"include_freeze={str(input.include_freeze).lower()}"
        if isinstance(input, FreezeInput):
            details = input.freeze.model_dump_json()
        if isinstance(input, WaveActionInput) and input.force:
            details = "force=true"
    return DecisionPayload(
        release_id=release_id,
        plan_digest=plan_digest,
        action=action,
        wave=wave,
        target=target,
        comment=comment,
        details=details,
        actor=actor,
        issued_at=issued_at,
    )


def check_decision(
    action: DecisionAction,
    input: DecisionMessage,
    policy: Policy,
    *,
    release_id: str,
    plan_digest: str,
    now: datetime,
) -> SignedDecision:
    """The signed decision ``input`` carries, verified for exactly this ``action`` on this
    release and plan, by the actor the input names, at ``now``; else ``DecisionRefused``
    naming why (unsigned, unknown actor or key, bad signature, a payload for another
    release, plan, action, wave, target, actor or comment, or signed too long ago)."""
    signed = input.signed
    if signed is None or not signed.signature.strip():
        raise DecisionRefused("unsigned decision: relman accepts only signed decisions")
    expected = decision_payload(
        action,
        input,
        release_id=release_id,
        plan_digest=plan_digest,
        issued_at=signed.payload.issued_at,
    )
    for field in ("release_id", "plan_digest", "action", "wave", "target", "actor"):
        got, want = getattr(signed.payload, field), getattr(expected, field)
        if got != want:
            what = field.removesuffix("_id").replace("_digest", "")
            raise DecisionRefused(f"signed for {what} {got!r}, not {want!r}")
    # Who vouched for the actor (an attester, after single sign-on) is not part of the input:
    # verify_decision checks it against the policy.
    attested = {f: getattr(signed.payload, f) for f in ("via", "oidc_issuer", "oidc_subject")}
    if signed.payload != expected.model_copy(update=attested):
        raise DecisionRefused(
            "the signed comment or details differ from the decision sent: it was altered"
        )
    verify_decision(
        signed,
        policy,
        release_id=release_id,
        plan_digest=plan_digest,
        action=action,
        wave=expected.wave,
        target=expected.target,
        now=now,
    )
    return signed
