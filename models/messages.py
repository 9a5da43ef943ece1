"""Inputs and results of the workflow, its updates and its activities: one model each."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from models.plan import ReleasePlan, Target
from models.status import ReleasePhase


class ReleaseInput(BaseModel):
    """Start a release of ``plan``."""

    plan: ReleasePlan


class ReleaseResult(BaseModel):
    """How a release ended."""

    release_id: str
    phase: ReleasePhase
    error: str | None = None


class DecisionInput(BaseModel):
    """An approver's decision on a wave's gate (approve or reject)."""

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
    """

    release_id: str
    target: Target
    snapshot: Snapshot
    percent: int = Field(default=100, ge=0, le=100)


class ApplyResult(BaseModel):
    """What the resource is now, and whether this call changed it (False on a re-run)."""

    resource: str
    changed: bool
    display: str | None = None


class CompensateInput(BaseModel):
    """Restore a target's resource to its snapshot."""

    release_id: str
    target: Target
    snapshot: Snapshot


class CompensateResult(BaseModel):
    """What the resource was restored to, and whether this call changed it."""

    resource: str
    changed: bool
    display: str | None = None


# Activity names: the workflow refers to activities by name so it never imports boto3.
SNAPSHOT_TARGET = "snapshot_target"
APPLY_TARGET = "apply_target"
COMPENSATE_TARGET = "compensate_target"
