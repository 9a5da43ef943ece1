"""Decisions about a wave's job steps that need no Temporal API: which jobs run at which
point of the traffic steps, their status, and the order the rollback undoes them in.

Used by ``WaveWorkflow`` (running jobs), ``ReleaseWorkflow`` (the saga) and ``plan check``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from models.jobs import (
    LAMBDA_MAX_TIMEOUT,
    JobPhase,
    JobSpec,
    JobStatus,
    LambdaJobSpec,
    WaveJob,
    placement_text,
)
from models.messages import Change
from models.status import TimelineEvent

# A job heartbeats every poll (a few seconds) and while it invokes; its activity's attempt
# lasts the job's own timeout and this margin. Its status is polled at most this often.
JOB_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
JOB_MARGIN = timedelta(minutes=2)
JOB_POLL = timedelta(seconds=5)

# A point of a wave's deployment at which jobs run: before its first step, after the step
# with this index has baked, or after its last.
Point = Literal["before", "after"] | int


def jobs_at(jobs: Sequence[WaveJob], traffic: Sequence[int], point: Point) -> list[WaveJob]:
    """The jobs placed at ``point``, in the plan's order. A job ``at`` a percent runs after
    the first step that shifts to it."""
    if isinstance(point, str):
        return [j for j in jobs if j.at == point]
    percent = traffic[point]
    if traffic.index(percent) != point:
        return []
    return [j for j in jobs if not isinstance(j.at, str) and j.at == percent]


def in_wave_order(jobs: Sequence[WaveJob], traffic: Sequence[int]) -> list[tuple[str, WaveJob]]:
    """Every job with where it runs, in the order the wave runs them (``plan check``)."""
    points: list[Point] = ["before", *range(len(traffic)), "after"]
    return [(placement_text(j.at), j) for p in points for j in jobs_at(jobs, traffic, p)]


def resolved(
    spec: JobSpec, region: str | None, role_arn: str | None, external_id: str | None
) -> JobSpec:
    """``spec`` with its department's region, role and external id where it names none
    (as targets inherit them; ``models.iam.job_where`` grants the same)."""
    return spec.model_copy(
        update={
            "region": spec.region or region,
            "role_arn": spec.role_arn or role_arn,
            "external_id": spec.external_id or external_id,
        }
    )


def attempt_timeout(spec: JobSpec, check: bool = False) -> timedelta:
    """How long one attempt of a job's activity may last: the job's timeout, or for an
    asynchronous Lambda job (its invoke and each completion check) Lambda's own limit."""
    if isinstance(spec, LambdaJobSpec) and (check or spec.invocation == "async"):
        return min(spec.timeout, LAMBDA_MAX_TIMEOUT) + JOB_MARGIN
    return spec.timeout + JOB_MARGIN


def check_interval(spec: JobSpec) -> timedelta:
    """How often an asynchronous job's completion is checked."""
    if isinstance(spec, LambdaJobSpec) and spec.completion is not None:
        return spec.completion.interval
    return JOB_POLL


def poll_seconds(bake_interval: timedelta) -> float:
    """How often a job's activity polls its status: the wave's bake interval, at most
    ``JOB_POLL``."""
    return min(JOB_POLL, bake_interval).total_seconds()


def job_key(wave_workflow_id: str, job: str) -> str:
    """The idempotency key of one attempt of one job: the wave's child workflow id names
    the release, the wave and the attempt."""
    return f"{wave_workflow_id}:{job}"


def initial_status(job: WaveJob, done: bool) -> JobStatus:
    compensation = job.compensation
    return JobStatus(
        name=job.name,
        kind=job.run.kind,
        at=placement_text(job.at),
        phase=JobPhase.SUCCEEDED if done else JobPhase.PENDING,
        compensation=compensation if isinstance(compensation, str | None) else compensation.name,
    )


def merge_jobs(current: list[JobStatus], reported: list[JobStatus]) -> list[JobStatus]:
    """A wave's report of its jobs taken into the release's status of them: a job the
    saga has compensated (or failed to) keeps that phase."""
    kept = {
        j.name: j
        for j in current
        if j.phase in (JobPhase.COMPENSATING, JobPhase.COMPENSATED, JobPhase.ROLLBACK_FAILED)
    }
    return [kept.get(j.name, j) for j in reported]


def to_compensate(statuses: Sequence[JobStatus]) -> list[JobStatus]:
    """Jobs the rollback must undo: those that succeeded or may have (their outcome is
    unknown), and those whose undo failed before."""
    return [
        j
        for j in statuses
        if j.phase in (JobPhase.SUCCEEDED, JobPhase.UNKNOWN, JobPhase.ROLLBACK_FAILED)
    ]


def unknown_message(job: str, reason: str) -> str:
    """Status's and the timeline's words for a job whose outcome is unknown."""
    return (
        f"job {job}: outcome unknown ({reason}); it may have run, so a rollback treats it "
        "as applied"
    )


def left_running(statuses: Sequence[JobStatus], now: datetime, reason: str) -> list[JobStatus]:
    """Jobs still ``running`` when their wave's workflow ended without saying how they
    ended (terminated, timed out): marked outcome unknown, and returned."""
    unknown = [j for j in statuses if j.phase == JobPhase.RUNNING]
    for job in unknown:
        job.phase, job.finished_at, job.outcome_unknown = JobPhase.UNKNOWN, now, True
        job.summary = f"outcome unknown: {reason}"
        job.error = unknown_message(job.name, reason)
    return unknown


RollbackItem = list[Change] | tuple[str, JobStatus]  # a group of targets, or (wave, job)


def rollback_order(
    groups: list[list[Change]],
    timeline: Sequence[TimelineEvent],
    jobs: Sequence[tuple[str, JobStatus]],
) -> list[RollbackItem]:
    """Target groups (already newest first) and jobs ``(wave, job)`` merged newest first.

    A group's time is when its targets were last applied; a job's when it finished. Jobs
    go before target groups applied at the same instant or earlier."""
    never = datetime.min.replace(tzinfo=UTC)
    applied: dict[str, datetime] = {}
    for event in timeline:
        if event.kind in ("target_applied", "target_failed") and event.target is not None:
            applied[event.target] = event.at
    ranked_jobs = sorted(jobs, key=lambda wj: wj[1].finished_at or never, reverse=True)
    merged: list[RollbackItem] = []
    for group in groups:
        at = applied.get(group[0].target.name, never)
        while ranked_jobs and (ranked_jobs[0][1].finished_at or never) >= at:
            merged.append(ranked_jobs.pop(0))
        merged.append(group)
    merged.extend(ranked_jobs)
    return merged
