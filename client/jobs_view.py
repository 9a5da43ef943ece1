"""How ``plan check`` and ``relman status`` show a wave's job steps."""

from __future__ import annotations

from models.durations import format_duration
from models.jobs import JobPhase, JobStatus
from models.plan import Wave
from workflows.jobs import in_wave_order


def plan_lines(wave: Wave) -> list[str]:
    """One line per job of ``wave``, in the order the wave runs them."""
    lines = []
    for where, job in in_wave_order(wave.jobs, wave.traffic):
        undo = job.compensation
        if isinstance(undo, str | None):
            undo_text = compensation_text(undo)
        else:
            undo_text = f"{compensation_text(undo.name)} ({undo.kind})"
        lines.append(
            f"job {job.name} ({job.run.kind}, {job.run.resource}, timeout "
            f"{format_duration(job.run.timeout)}) {where}; {undo_text}"
        )
    return lines


def plan_json(wave: Wave) -> list[dict[str, object]]:
    """``plan check -o json``'s jobs of ``wave``, in the order the wave runs them."""
    return [
        {
            "name": job.name,
            "kind": job.run.kind,
            "at": job.at,
            "compensation": job.compensation
            if isinstance(job.compensation, str | None)
            else job.compensation.name,
        }
        for _, job in in_wave_order(wave.jobs, wave.traffic)
    ]


def compensation_text(compensation: str | None) -> str:
    """What undoes a job: its compensating job's name, ``"none"``, or None (no job given)."""
    if compensation is None:
        return "no compensation: a rollback stops for an operator"
    if compensation == "none":
        return "compensation: none"
    return f"undone by {compensation}"


def outcome(job: JobStatus) -> str:
    """What a job ended with: its summary, then its error (``""`` while it has neither)."""
    # An outcome_unknown job's error already says why; once undone, its summary does.
    parts = [job.summary] if job.summary and job.phase != JobPhase.UNKNOWN else []
    return " - ".join(parts + ([job.error] if job.error else []))


def status_line(wave: str, job: JobStatus) -> str:
    """``relman status``'s line for one job."""
    text = f"job {wave}/{job.name} ({job.kind}, {job.at}): {job.phase.value}"
    said = outcome(job)
    return f"{text} - {said}" if said else text
