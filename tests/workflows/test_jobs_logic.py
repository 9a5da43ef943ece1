"""Pure decisions about job steps: where each runs, the plan's problems, the saga's order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.jobs import JobPhase, JobStatus, WaveJob
from models.loader import PlanError, parse_plan
from models.status import TimelineEvent
from tests.helpers import make_plan, ssm, wave
from workflows.jobs import in_wave_order, jobs_at, left_running, rollback_order, to_compensate

T0 = datetime(2026, 12, 5, tzinfo=UTC)


def job(name: str, at: object, compensation: object = None) -> dict[str, object]:
    data = {"at": at, "run": {"name": name, "kind": "lambda_job", "function": "f"}}
    return data | ({"compensation": compensation} if compensation is not None else {})


def jobs(*items: dict[str, object]) -> list[WaveJob]:
    return [WaveJob.model_validate(i) for i in items]


def test_jobs_run_before_at_their_step_and_after_in_plan_order() -> None:
    planned = jobs(job("backfill", "after"), job("warm", 50), job("migrate", "before"))
    traffic = [10, 50, 100]
    assert [j.name for j in jobs_at(planned, traffic, "before")] == ["migrate"]
    assert [j.name for j in jobs_at(planned, traffic, 1)] == ["warm"]
    assert jobs_at(planned, traffic, 0) == []
    assert [(where, j.name) for where, j in in_wave_order(planned, traffic)] == [
        ("before the first traffic step", "migrate"),
        ("after the 50% step has baked", "warm"),
        ("after the last traffic step", "backfill"),
    ]


def bad(**wave_fields: object) -> str:
    with pytest.raises(PlanError) as raised:
        make_plan([ssm("p", "/p", "1")], [wave("w", ["p"], **wave_fields)])
    return str(raised.value)


def test_plan_problems_name_the_job_field() -> None:
    assert "waves[0].jobs[0].at: 50 is not one of the wave's traffic steps [10, 100]" in bad(
        traffic=[10, 100], jobs=[job("m", 50)]
    )
    assert "waves[0].jobs[1].run.name: name 'm' is already used in the plan" in bad(
        jobs=[job("m", "before"), job("m", "after")]
    )
    assert "waves[0].jobs[0].run.name: name 'p' is already used in the plan" in bad(
        jobs=[job("p", "before")]
    )
    text = bad(
        jobs=[
            {
                "at": "after",
                "run": {"name": "b", "kind": "lambda_job", "function": "f", "assert_path": "$[["},
            }
        ]
    )
    assert "waves[0].jobs[0].run.assert_path: not a JSONPath" in text


def test_a_plan_with_jobs_parses_and_none_is_explicit() -> None:
    plan = parse_plan(
        {
            "id": "r",
            "application": "a",
            "version": "1",
            "requested_by": "x",
            "targets": [ssm("p", "/p", "1")],
            "waves": [wave("w", ["p"], jobs=[job("m", "before", "none")])],
        }
    )
    assert plan.waves[0].jobs[0].compensation == "none"


def test_the_saga_undoes_jobs_and_target_groups_newest_first() -> None:
    from models.messages import Change, Snapshot
    from models.plan import SsmParameterTarget

    target = SsmParameterTarget(name="p", kind="ssm_parameter", parameter="/p", value="2")
    change = Change(
        wave="w", target=target, snapshot=Snapshot(resource="ssm /p", exists=True, display="1")
    )
    applied = TimelineEvent(
        at=T0 + timedelta(minutes=5), kind="target_applied", message="", target="p"
    )
    before = JobStatus(
        name="migrate", kind="lambda_job", at="before", phase=JobPhase.SUCCEEDED, finished_at=T0
    )
    after = JobStatus(
        name="backfill",
        kind="lambda_job",
        at="after",
        phase=JobPhase.SUCCEEDED,
        finished_at=T0 + timedelta(minutes=9),
    )
    order = rollback_order([[change]], [applied], [("w", before), ("w", after)])
    assert [i[1].name if isinstance(i, tuple) else "targets" for i in order] == [
        "backfill",
        "targets",
        "migrate",
    ]


def test_jobs_left_running_by_an_ended_wave_have_an_unknown_outcome_and_are_undone() -> None:
    def status(name: str, phase: JobPhase) -> JobStatus:
        return JobStatus(name=name, kind="ecs_task", at="before", phase=phase)

    statuses = [
        status("migrate", JobPhase.SUCCEEDED),
        status("reindex", JobPhase.RUNNING),
        status("warm", JobPhase.PENDING),
        status("verify", JobPhase.FAILED),
    ]
    (left,) = left_running(statuses, T0, "wave db's workflow ended while it ran")
    assert (left.name, left.phase, left.outcome_unknown, left.finished_at) == (
        "reindex",
        JobPhase.UNKNOWN,
        True,
        T0,
    )
    assert left.error == (
        "job reindex: outcome unknown (wave db's workflow ended while it ran); it may have "
        "run, so a rollback treats it as applied"
    )
    # What may have run is undone; what failed or never started is not.
    assert [j.name for j in to_compensate(statuses)] == ["migrate", "reindex"]
