"""Job steps end to end: time-skipping Temporal, the real worker, moto over HTTP.

A wave runs its jobs where the plan places them; a rollback undoes the jobs that succeeded
with their compensating jobs, newest first with the targets, and stops for an operator at a
job that has none.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from rich.console import Console
from temporalio.client import WorkflowHandle

from client.views import StatusView
from models.jobs import JobPhase
from models.messages import TargetActionInput
from models.status import ReleasePhase, ReleaseStatus
from tests.activities.test_jobs import lambda_job
from tests.activities.test_ssm_commands import launch
from tests.helpers import (
    assert_replays,
    make_plan,
    seed,
    signed_update,
    ssm,
    ssm_values,
    start_release,
    status_of,
    wait_for,
    wave,
)
from workflows.release import ReleaseWorkflow

PARAM = "/payments/api/version"
TAGS = {"app": "payments", "role": "db-host"}


def command(name: str, script: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "ssm_command",
        "document": "AWS-RunShellScript",
        "parameters": {"commands": [script]},
        "instance_tags": TAGS,
    }


def sent_scripts(aws: Any) -> list[tuple[str, str]]:
    """(comment, script) of every command sent, oldest first."""
    commands = sorted(
        aws.client("ssm").list_commands()["Commands"], key=lambda c: c["RequestedDateTime"]
    )
    return [(c["Comment"], c["Parameters"]["commands"][0]) for c in commands]


def kinds(status: ReleaseStatus, *wanted: str) -> list[tuple[str, str]]:
    return [(e.kind, e.message) for e in status.timeline if e.kind in wanted]


def render(view: StatusView) -> str:
    console = Console(record=True, width=400)
    view.render(console)
    return console.export_text()


def setup(aws: Any, moto_endpoint: str) -> None:
    launch(aws, 2, TAGS)
    seed(aws, {PARAM: "2.3.1"})
    lambda_job(aws, moto_endpoint)  # creates the function "backfill"


async def test_jobs_run_before_and_after_the_traffic_steps_and_status_shows_them(
    time_skipping_env, aws, moto_endpoint, make_worker, task_queue
):
    setup(aws, moto_endpoint)
    plan = make_plan(
        [ssm("api-version", PARAM, "2.4.0")],
        [
            wave(
                "db",
                ["api-version"],
                jobs=[
                    {
                        "at": "before",
                        "run": command("migrate", "migrate up"),
                        "compensation": command("migrate-down", "migrate down"),
                    },
                    {
                        "at": "after",
                        "run": {
                            "name": "backfill",
                            "kind": "lambda_job",
                            "function": "backfill",
                            "payload": {"rows": 12},
                            "assert_path": "$.rows",
                        },
                        "compensation": "none",
                    },
                ],
            )
        ],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        result = await handle.result()
        status = await status_of(handle)
        await assert_replays(handle)

    assert result.phase == ReleasePhase.COMPLETED, status.error
    jobs = status.wave("db").jobs
    assert [(j.name, j.phase) for j in jobs] == [
        ("migrate", JobPhase.SUCCEEDED),
        ("backfill", JobPhase.SUCCEEDED),
    ]
    assert jobs[1].summary == 'lambda function backfill returned {"rows": 12}'
    assert [script for _, script in sent_scripts(aws)] == ["migrate up"]
    assert [k for k, _ in kinds(status, "job_succeeded", "target_applied")] == [
        "job_succeeded",
        "target_applied",
        "job_succeeded",
    ]
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.4.0"}
    text = render(StatusView(status))
    assert "job db/migrate (ssm_command, before the first traffic step): succeeded" in text
    assert "job db/backfill (lambda_job, after the last traffic step): succeeded - lambda" in text


async def test_a_failed_job_rolls_back_targets_then_runs_the_down_migration(
    time_skipping_env, aws, moto_endpoint, make_worker, task_queue
):
    setup(aws, moto_endpoint)
    plan = make_plan(
        [ssm("api-version", PARAM, "2.4.0")],
        [
            wave(
                "db",
                ["api-version"],
                traffic=[100],
                jobs=[
                    {
                        "at": "before",
                        "run": command("migrate", "migrate up"),
                        "compensation": command("migrate-down", "migrate down"),
                    },
                    {
                        "at": 100,
                        "run": {
                            "name": "verify",
                            "kind": "lambda_job",
                            "function": "backfill",
                            "payload": {"status": "partial"},
                            "assert_path": "$.status",
                            "expect": "done",
                        },
                    },
                ],
            )
        ],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        result = await handle.result()
        status = await status_of(handle)

    assert result.phase == ReleasePhase.ROLLED_BACK
    assert status.error == (
        "wave db: job verify failed: lambda function backfill returned a result that fails its "
        "assertion: $.status is 'partial', expected 'done'"
    )
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.3.1"}
    # The down-migration ran once, after the parameter was restored (newest first).
    scripts = sent_scripts(aws)
    assert [s for _, s in scripts] == ["migrate up", "migrate down"]
    assert scripts[1][0].endswith(":undo1:migrate-down")
    assert [k for k, _ in kinds(status, "target_restored", "job_compensated")] == [
        "target_restored",
        "job_compensated",
    ]
    assert [(j.name, j.phase) for j in status.wave("db").jobs] == [
        ("migrate", JobPhase.COMPENSATED),
        ("verify", JobPhase.FAILED),
    ]


async def test_a_job_without_compensation_stops_the_rollback_for_an_operator(
    time_skipping_env, aws, moto_endpoint, make_worker, task_queue
):
    setup(aws, moto_endpoint)
    plan = make_plan(
        [ssm("api-version", PARAM, "2.4.0"), ssm("bad", "/aws/reserved", "x")],
        [
            wave(
                "db",
                ["api-version"],
                jobs=[{"at": "before", "run": command("migrate", "migrate up")}],
            ),
            wave("edge", ["bad"], after=["db"]),
        ],
    )
    async with make_worker(time_skipping_env, aws):
        handle: WorkflowHandle[Any, Any] = await start_release(
            time_skipping_env.client, plan, task_queue
        )
        status = await wait_for(handle, lambda s: s.phase == ReleasePhase.ROLLBACK_FAILED)
        job = status.wave("db").jobs[0]
        assert job.phase == JobPhase.ROLLBACK_FAILED
        assert status.error == "rollback of 1 resource(s) failed; see targets and jobs"
        assert (
            "rollback_failed",
            f"job migrate: it has no compensating job: undo it by hand, then relman "
            f"skip-target {plan.id} --target migrate",
        ) in kinds(status, "rollback_failed")
        # The parameter was restored meanwhile; the migration waits for a person.
        assert ssm_values(aws, [PARAM]) == {PARAM: "2.3.1"}
        reply = await signed_update(
            handle,
            ReleaseWorkflow.skip_target,
            TargetActionInput(actor="alice", target="migrate", reason="down-migrated by hand"),
        )
        assert reply.message == "rollback of job migrate skipped"
        result = await handle.result()

    assert result.phase == ReleasePhase.ROLLED_BACK_WITH_SKIPS
    assert [s for _, s in sent_scripts(aws)] == ["migrate up"]


def async_backfill(completion_payload: dict[str, Any], timeout: str) -> dict[str, Any]:
    return {
        "at": "before",
        "run": {
            "name": "backfill",
            "kind": "lambda_job",
            "function": "backfill",
            "invocation": "async",
            "payload": {"rows": "all"},
            "timeout": timeout,
            "completion": {
                "function": "backfill",
                "payload": completion_payload,
                "done_path": "$.state",
                "failed_path": "$.error",
                "interval": "10m",
            },
        },
        "compensation": "none",
    }


async def test_an_async_lambda_job_is_checked_on_durable_timers_until_it_finishes(
    time_skipping_env, aws, moto_endpoint, make_worker, task_queue
):
    setup(aws, moto_endpoint)
    plan = make_plan(
        [ssm("api-version", PARAM, "2.4.0")],
        [wave("db", ["api-version"], jobs=[async_backfill({"state": "done"}, "2h")])],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        result = await handle.result()
        status = await status_of(handle)

    assert result.phase == ReleasePhase.COMPLETED, status.error
    started, finished = (
        e.at for e in status.timeline if e.kind in ("job_started", "job_succeeded")
    )
    assert finished - started >= timedelta(minutes=10)  # one interval, skipped
    assert status.wave("db").jobs[0].summary == (
        'lambda function backfill finished: {"state": "done"}'
    )


async def test_an_async_lambda_job_not_finished_at_its_timeout_has_an_unknown_outcome(
    time_skipping_env, aws, moto_endpoint, make_worker, task_queue
):
    setup(aws, moto_endpoint)
    plan = make_plan(
        [ssm("api-version", PARAM, "2.4.0")],
        [wave("db", ["api-version"], jobs=[async_backfill({"progress": 0.4}, "1h")])],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        result = await handle.result()
        status = await status_of(handle)

    # The backfill was started and may still finish: it is not a plain failure.
    assert result.phase == ReleasePhase.ROLLED_BACK
    assert status.error == (
        "wave db: job backfill outcome unknown: lambda function backfill did not finish within 1h"
    )
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.3.1"}
    assert kinds(status, "job_outcome_unknown", "job_kept") == [
        (
            "job_outcome_unknown",
            "job backfill: outcome unknown (lambda function backfill did not finish within 1h); "
            "it may have run, so a rollback treats it as applied",
        ),
        ("job_kept", "job backfill: outcome unknown, compensation none, left as it is"),
    ]
    (job,) = status.wave("db").jobs
    assert (job.phase, job.outcome_unknown) == (JobPhase.COMPENSATED, True)
    assert job.summary == "outcome unknown: lambda function backfill did not finish within 1h"
