"""A release's status as plain functions: initial status, phases, pending approvals, targets,
the resources it claims, and the order its saga undoes changes.

No Temporal here; the workflow calls these with ``workflow.now()`` and its own state.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import workflows.windows as windows
from models.jobs import JobPhase
from models.messages import Change
from models.plan import ReleasePlan, Target, Wave
from models.status import (
    FINAL_PHASES,
    WAVE_END_PHASES,
    PendingApproval,
    ReleasePhase,
    ReleaseStatus,
    TargetPhase,
    TargetStatus,
    TimelineEvent,
    WavePhase,
    WaveStatus,
)
from workflows import fleet as fleet_logic
from workflows import gates
from workflows import jobs as jobs_logic

WAVE_ENDS = WAVE_END_PHASES
# The release shows the most active thing any of its waves is doing.
_PHASE_PRIORITY = (
    (WavePhase.DEPLOYING, ReleasePhase.DEPLOYING),
    (WavePhase.BAKING, ReleasePhase.BAKING),
    (WavePhase.PAUSED, ReleasePhase.PAUSED),
    (WavePhase.AWAITING_APPROVAL, ReleasePhase.AWAITING_APPROVAL),
    (WavePhase.WAITING_FOR_WINDOW, ReleasePhase.WAITING_FOR_WINDOW),
)


def initial_status(plan: ReleasePlan) -> ReleaseStatus:
    """Every wave and target pending."""
    return ReleaseStatus(
        release_id=plan.id,
        application=plan.application,
        version=plan.version,
        requested_by=plan.requested_by,
        freezes=list(plan.freezes),
        waves=[
            WaveStatus(
                name=w.name,
                department=w.department,
                after=list(w.after),
                required_approvals=dict(w.approval.groups) if w.approval else {},
                window=windows.describe_window(w.window) if w.window else None,
                timezone=w.window.timezone if w.window else None,
                targets=[
                    TargetStatus(name=t, kind=plan.target(t).kind, resource=plan.target(t).resource)
                    for t in w.targets
                ],
                jobs=[jobs_logic.initial_status(j, done=False) for j in w.jobs],
            )
            for w in plan.waves
        ],
    )


def active_phase(status: ReleaseStatus, paused: bool) -> ReleasePhase:
    """The phase of a release still in progress, from what its waves are doing."""
    phases = {w.phase for w in status.waves}
    phase = next((rp for wp, rp in _PHASE_PRIORITY if wp in phases), ReleasePhase.PENDING)
    if paused and phase not in (ReleasePhase.DEPLOYING, ReleasePhase.BAKING):
        return ReleasePhase.PAUSED
    return phase


def final_phase(status: ReleaseStatus, stopping: ReleasePhase | None) -> ReleasePhase:
    """How a release whose waves have all ended ends: where it was heading if it stopped,
    ``completed`` if every wave completed, else ``failed``."""
    if stopping is not None:
        return stopping
    if all(w.phase == WavePhase.COMPLETED for w in status.waves):
        return ReleasePhase.COMPLETED
    return ReleasePhase.FAILED


def changed_nothing(status: ReleaseStatus, saga: list[Change]) -> bool:
    """True when the release changed nothing in AWS: no target was snapshotted to be
    changed (a wave records its snapshots before its first change) and no job started."""
    return not saga and all(j.phase == JobPhase.PENDING for w in status.waves for j in w.jobs)


# Temporal's Web UI shows "current details" as markdown; keep the ended release's cause short.
DETAILS_ERROR_LIMIT = 500


def current_details(status: ReleaseStatus) -> str:
    """The release workflow's "current details" in the Temporal Web UI: who it waits for,
    else its phase (and, once it ended other than completed, why)."""
    if status.phase in FINAL_PHASES:
        error = status.error or ""
        if len(error) > DETAILS_ERROR_LIMIT:
            error = error[: DETAILS_ERROR_LIMIT - 1] + "…"
        return f"release {status.phase.value}" + (f": {error}" if error else "")
    waiting = "; ".join(
        f"waiting for {', '.join(f'{n} more from {g}' for g, n in p.missing.items())} "
        f"on wave {p.wave}"
        for p in status.pending_approvals
    )
    return waiting or f"release {status.phase.value}"


def merge_targets(wave: WaveStatus, reported: list[TargetStatus]) -> None:
    """Take a wave's report of its targets into the release's status of them.

    A target the release has already rolled back (or failed to) keeps that phase, and a
    target reported skipped keeps the phase it reached before it was skipped."""
    for target in reported:
        current = next(t for t in wave.targets if t.name == target.name)
        if current.phase in (TargetPhase.ROLLED_BACK, TargetPhase.ROLLBACK_FAILED):
            continue
        if target.phase == TargetPhase.SKIPPED and current.phase != TargetPhase.PENDING:
            continue
        current.phase, current.percent = target.phase, target.percent
        current.before = target.before or current.before
        current.after, current.error = target.after, target.error
        current.written = target.written
        if current.kind == "ec2_fleet":
            # A retried wave runs the batches an earlier attempt did not finish: what
            # that attempt changed stays in the record, for the rollback.
            current.written = fleet_logic.merged_record(current.written, target.written)
        current.instances = target.instances


def wave_of_target(status: ReleaseStatus, target: str) -> WaveStatus | None:
    """The wave that deploys ``target``, or None if the release has no such target."""
    return next((w for w in status.waves if any(t.name == target for t in w.targets)), None)


def newest_applied_first(
    changes: list[Change], timeline: list[TimelineEvent]
) -> list[list[Change]]:
    """The saga's changes newest first by when each target was last applied, across waves.

    An apply that failed counts as applied when it failed: it may have changed the resource.
    Targets applied at the same instant (one traffic step of one wave) form one group,
    restored side by side; groups go newest first. A target recorded but never applied
    changed nothing and goes last. Within a group the saga's order, newest first.
    """
    applied: dict[str, datetime] = {}
    for event in timeline:
        if event.kind in ("target_applied", "target_failed") and event.target is not None:
            applied[event.target] = event.at
    order = {id(c): i for i, c in enumerate(changes)}
    never = datetime.min.replace(tzinfo=UTC)
    ranked = sorted(
        changes,
        key=lambda c: (applied.get(c.target.name, never), order[id(c)]),
        reverse=True,
    )
    groups: list[list[Change]] = []
    for change in ranked:
        at = applied.get(change.target.name, never)
        if groups and applied.get(groups[-1][0].target.name, never) == at:
            groups[-1].append(change)
        else:
            groups.append([change])
    return groups


def pending_approvals(roster: gates.Roster, status: ReleaseStatus) -> list[PendingApproval]:
    """Gates waiting for decisions, with who may still decide."""
    return [
        PendingApproval(
            wave=w.name,
            missing=gates.gate_missing(w),
            eligible_approvers=gates.eligible_approvers(roster, w),
            waiting_since=w.started_at,
            deadline=w.approval_deadline,
        )
        for w in status.waves
        if w.phase == WavePhase.AWAITING_APPROVAL
    ]


def resolved_target(plan: ReleasePlan, wave: Wave, target: Target) -> Target:
    """The target with region and account inherited from its wave's department."""
    dept = plan.departments.get(wave.department)
    if dept is None:
        return target
    return target.model_copy(
        update={
            "region": target.region or dept.region,
            "role_arn": target.role_arn or dept.role_arn,
            "external_id": target.external_id or dept.external_id,
        }
    )


# Temporal limits a search attribute value to 2 KB (dev server and cluster defaults): at
# about 11 bytes a digest in the encoded list, 150 digests fit with room to spare.
MAX_TARGET_KEYS = 150
TARGET_DIGEST_CHARS = 8


def application_key(application: str) -> str:
    """The key of a release too large to list its resources: it claims its application."""
    return f"app:{application}"


def target_keys(plan: ReleasePlan) -> list[str]:
    """Short, stable digests of the resources the plan deploys (account, region, resource).

    Two releases that share a key deploy the same resource. A plan with more resources than
    fit in a search attribute claims its whole application instead: it then overlaps every
    release of that application, which errs on the safe side.
    """
    keys = set()
    for wave in plan.waves:
        for name in wave.targets:
            target = resolved_target(plan, wave, plan.target(name))
            identity = f"{target.role_arn or ''}|{target.region or ''}|{target.resource}"
            keys.add(hashlib.sha256(identity.encode()).hexdigest()[:TARGET_DIGEST_CHARS])
    if len(keys) > MAX_TARGET_KEYS:
        return [application_key(plan.application)]
    return sorted(keys)


def overlap_queries(
    plan: ReleasePlan, application_attribute: str, targets_attribute: str
) -> list[str]:
    """Visibility queries for running releases that deploy one of the plan's resources.

    A plan too large to list its resources claims its whole application, and a running
    release that claims the whole application overlaps every plan of it. Visibility queries
    have a size limit: keys go in batches of 50.
    """
    keys = target_keys(plan)
    app_key = application_key(plan.application)
    running = "WorkflowType = 'ReleaseWorkflow' AND ExecutionStatus = 'Running'"
    if keys == [app_key]:
        return [f"{running} AND {application_attribute} = '{plan.application}'"]
    keys = [*keys, app_key]
    return [
        f"{running} AND {targets_attribute} IN ({', '.join(repr(k) for k in keys[i : i + 50])})"
        for i in range(0, len(keys), 50)
    ]
