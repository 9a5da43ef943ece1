"""What a release reports about itself: phases, waves, targets, approvals and its timeline."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, computed_field

from models.checks import CheckResult
from models.fleet import InstanceStatus
from models.jobs import JobPhase, JobStatus
from models.plan import Freeze
from models.signing import SignedDecision


class ReleasePhase(StrEnum):
    """Where a release stands. ``rollback_failed`` is not an end: it waits for an operator."""

    PENDING = "pending"
    WAITING_FOR_WINDOW = "waiting_for_window"
    AWAITING_APPROVAL = "awaiting_approval"
    DEPLOYING = "deploying"
    BAKING = "baking"
    PAUSED = "paused"
    ROLLING_BACK = "rolling_back"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    # Rolled back, except targets an operator skipped (relman skip-target): those were not
    # restored by relman and need a person's attention.
    ROLLED_BACK_WITH_SKIPS = "rolled_back_with_skips"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLBACK_FAILED = "rollback_failed"


FINAL_PHASES = frozenset(
    {
        ReleasePhase.COMPLETED,
        ReleasePhase.ROLLED_BACK,
        ReleasePhase.ROLLED_BACK_WITH_SKIPS,
        ReleasePhase.REJECTED,
        ReleasePhase.FAILED,
        ReleasePhase.CANCELLED,
    }
)


class WavePhase(StrEnum):
    """Where one wave stands."""

    PENDING = "pending"
    WAITING_FOR_WINDOW = "waiting_for_window"
    AWAITING_APPROVAL = "awaiting_approval"
    DEPLOYING = "deploying"
    BAKING = "baking"
    PAUSED = "paused"
    COMPLETED = "completed"
    REJECTED = "rejected"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


# A wave in one of these has ended: nothing left to do or wait for.
WAVE_END_PHASES = frozenset(
    {
        WavePhase.COMPLETED,
        WavePhase.REJECTED,
        WavePhase.FAILED,
        WavePhase.ROLLED_BACK,
        WavePhase.SKIPPED,
        WavePhase.CANCELLED,
    }
)


class TargetPhase(StrEnum):
    """Where one target stands."""

    PENDING = "pending"
    APPLYING = "applying"
    APPLIED = "applied"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    SKIPPED = "skipped"


class TimelineEvent(BaseModel):
    """One auditable thing that happened: when, what, who, where, and why."""

    at: datetime
    kind: str
    message: str
    actor: str | None = None
    wave: str | None = None
    target: str | None = None
    comment: str | None = None
    # For a person's decision: what they signed, and the policy it was verified against,
    # so anyone can verify it again later (``relman history --verify``).
    evidence: SignedDecision | None = None
    policy_digest: str | None = None


class PolicyInfo(BaseModel):
    """The organisation policy a release runs under now."""

    source: str
    version: str
    digest: str
    dev: bool = False


class ApprovalRecord(BaseModel):
    """One approver's decision on a wave's gate."""

    approver: str
    decision: str  # "approved" | "rejected"
    groups: list[str]
    at: datetime
    comment: str = ""


class TargetStatus(BaseModel):
    """A target's phase and what its resource was before and is after (secrets masked)."""

    name: str
    kind: str
    resource: str
    phase: TargetPhase = TargetPhase.PENDING
    percent: int = 0
    before: str | None = None
    after: str | None = None
    error: str | None = None
    # What relman last wrote to the resource, as the apply read it back (never a secret):
    # the next step and the rollback check that the resource still holds it. None when
    # unknown (nothing applied yet, or the last apply failed part way).
    written: dict[str, Any] | None = None
    # An ec2_fleet's instances, batch by batch (empty for every other kind).
    instances: list[InstanceStatus] = Field(default_factory=list)


class WaveStatus(BaseModel):
    """A wave's phase, gate, and targets."""

    name: str
    department: str
    after: list[str] = Field(default_factory=list)
    phase: WavePhase = WavePhase.PENDING
    required_approvals: dict[str, int] = Field(default_factory=dict)
    # After an escalation the gate is also satisfied by these groups' approvals.
    escalated_to: dict[str, int] = Field(default_factory=dict)
    approval_deadline: datetime | None = None
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    targets: list[TargetStatus] = Field(default_factory=list)
    jobs: list[JobStatus] = Field(default_factory=list)
    # Each check's last probe (models.checks).
    checks: list[CheckResult] = Field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    step: int = 0
    percent: int = 0
    next_start: datetime | None = None
    waiting_for: str | None = None
    # The wave's rollout window as the plan gives it, and its time zone: status shows the
    # times it waits for in that zone beside UTC.
    window: str | None = None
    timezone: str | None = None
    error: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def targets_note(self) -> str | None:
        """What became of a failed wave's targets, beside its cause (``error``): a wave
        that failed keeps the phase ``failed`` while the release rolls its targets back,
        and status says so rather than leave ``failed`` beside ``rolled_back`` unexplained.
        """
        if self.phase != WavePhase.FAILED:
            return None
        changed = [t for t in self.targets if t.phase != TargetPhase.SKIPPED]
        restored = [t.name for t in changed if t.phase == TargetPhase.ROLLED_BACK]
        if restored and len(restored) == len(changed):
            return "its targets were rolled back"
        if restored:
            return f"{', '.join(restored)} rolled back"
        # Not even snapshotted (the saga records a "before" ahead of any change), no job run.
        untouched = all(t.phase == TargetPhase.PENDING and t.before is None for t in changed)
        if untouched and all(j.phase == JobPhase.PENDING for j in self.jobs):
            return "nothing was changed"
        return None


class PendingApproval(BaseModel):
    """A gate waiting for decisions: which groups still need how many, and who may decide."""

    wave: str
    missing: dict[str, int]
    eligible_approvers: list[str]
    waiting_since: datetime | None = None
    deadline: datetime | None = None


class ReleaseStatus(BaseModel):
    """Everything ``relman status`` shows, as returned by the workflow's status query."""

    release_id: str
    application: str
    version: str
    requested_by: str
    phase: ReleasePhase = ReleasePhase.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    waves: list[WaveStatus] = Field(default_factory=list)
    pending_approvals: list[PendingApproval] = Field(default_factory=list)
    paused: bool = False
    freezes: list[Freeze] = Field(default_factory=list)
    timeline: list[TimelineEvent] = Field(default_factory=list)
    error: str | None = None
    # What every decision on this release signs, and the policy in force.
    plan_digest: str | None = None
    policy: PolicyInfo | None = None
    # Set when ``timeline`` holds only the latest events: how many there are in all.
    timeline_total: int | None = None

    @property
    def finished(self) -> bool:
        """True once the release reached an end phase."""
        return self.phase in FINAL_PHASES

    def wave(self, name: str) -> WaveStatus:
        """The status of wave ``name``."""
        return next(w for w in self.waves if w.name == name)

    def target(self, name: str) -> TargetStatus:
        """The status of target ``name``, whichever wave holds it."""
        return next(t for w in self.waves for t in w.targets if t.name == name)

    def summary(self) -> dict[str, Any]:
        """A compact view for lists."""
        return {
            "release_id": self.release_id,
            "application": self.application,
            "version": self.version,
            "phase": self.phase.value,
        }


class StatusRequest(BaseModel):
    """What the status query may leave out: ``timeline_tail`` keeps the latest events only
    (a release of thousands of targets has a timeline of megabytes)."""

    timeline_tail: int | None = Field(default=None, ge=0)


class TimelineRequest(BaseModel):
    """A page of the timeline: ``limit`` events from ``offset`` (oldest first)."""

    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=500, gt=0, le=5000)


class TimelinePage(BaseModel):
    """Events of the timeline, and how many it holds in all."""

    events: list[TimelineEvent]
    total: int
