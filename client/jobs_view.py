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
        if undo is None:
            undo_text = "no compensation: a rollback stops for an operator"
        elif undo == "none":
            undo_text = "compensation: none"
        else:
            undo_text = f"undone by {undo.name} ({undo.kind})"
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


def status_line(wave: str, job: JobStatus) -> str:
    """``relman status``'s line for one job."""
    text = f"job {wave}/{job.name} ({job.kind}, {job.at}): {job.phase.value}"
    # An outcome_unknown job's error already says why; once undone, its summary does.
    if job.summary and job.phase != JobPhase.UNKNOWN:
        text += f" - {job.summary}"
    if job.error:
        text += f" - {job.error}"
    return text
