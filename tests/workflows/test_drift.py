"""Drift-aware rollback on the time-skipping server against moto: a resource someone else
changed since relman wrote it is never overwritten blindly. The release stops in
``rollback_failed`` naming what relman wrote, what is there now and what it would restore;
the operator forces the restore or skips the target. An unchanged resource is restored
exactly, and a traffic step does not overwrite a change made between steps.
"""

from __future__ import annotations

from typing import Any

from models.messages import OperatorInput, TargetActionInput, WaveActionInput
from models.status import ReleasePhase, TargetPhase, WavePhase
from tests.helpers import (
    events,
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

PARAM, OTHER = "/payments/drift/api", "/payments/drift/flag"


def plan() -> Any:
    """``api`` and ``flag`` set in one wave that bakes for a day."""
    return make_plan(
        [ssm("api", PARAM, "2.4.0"), ssm("flag", OTHER, "on")],
        [wave("canary", ["api", "flag"], bake="24h")],
    )


async def hotfixed_then_aborted(env: Any, aws: Any, queue: str) -> Any:
    """Deploy; while the wave bakes someone hotfixes PARAM by hand; the release is aborted."""
    seed(aws, {PARAM: "2.3.1", OTHER: "off"})
    release = plan()
    handle = await start_release(env.client, release, queue)
    await wait_for(handle, lambda s: s.wave("canary").phase == WavePhase.BAKING)
    seed(aws, {PARAM: "2.4.1-hotfix"})
    await signed_update(
        handle, ReleaseWorkflow.abort, OperatorInput(actor="olga", reason="wrong build")
    )
    status = await wait_for(handle, lambda s: s.phase == ReleasePhase.ROLLBACK_FAILED)
    return handle, release, status


async def test_a_hotfix_made_during_the_release_is_not_overwritten_by_the_rollback(
    time_skipping_env, aws, make_worker, task_queue
):
    async with make_worker(time_skipping_env, aws):
        handle, release, status = await hotfixed_then_aborted(time_skipping_env, aws, task_queue)
        # The hotfix stays; the unchanged target was restored exactly.
        assert ssm_values(aws, [PARAM, OTHER]) == {PARAM: "2.4.1-hotfix", OTHER: "off"}
        api = status.target("api")
        assert api.phase == TargetPhase.ROLLBACK_FAILED
        assert api.error == (
            f"target 'api' (ssm parameter {PARAM}): relman wrote version 2 (2.4.0), it now "
            f"holds version 3 (2.4.1-hotfix); not restoring it to 2.3.1 without --force: "
            f"relman rollback {release.id} --force overwrites it, relman skip-target "
            "--target api leaves it as it is"
        )
        assert status.target("flag").phase == TargetPhase.ROLLED_BACK
        [halted] = events(status, "rollback_halted")
        assert "waits for an operator" in halted.message

        # The operator decides the hotfix stays: the release ends, the skip recorded.
        await signed_update(
            handle,
            ReleaseWorkflow.skip_target,
            TargetActionInput(actor="olga", reason="hotfix stays", target="api"),
        )
        outcome = await handle.result()
        status = await status_of(handle)
    assert outcome.phase == ReleasePhase.CANCELLED
    assert outcome.error == (
        "not restored by relman (an operator skipped their rollback; check them by hand): api"
    )
    assert ssm_values(aws, [PARAM, OTHER]) == {PARAM: "2.4.1-hotfix", OTHER: "off"}
    assert status.target("api").phase == TargetPhase.SKIPPED


async def test_a_forced_rollback_overwrites_the_drifted_resource(
    time_skipping_env, aws, make_worker, task_queue
):
    async with make_worker(time_skipping_env, aws):
        handle, release, _ = await hotfixed_then_aborted(time_skipping_env, aws, task_queue)
        result = await signed_update(
            handle,
            ReleaseWorkflow.rollback,
            WaveActionInput(actor="olga", reason="hotfix superseded", wave="canary", force=True),
        )
        assert result.message == "retrying the rollback (forced)"
        outcome = await handle.result()
        status = await status_of(handle)
    assert outcome.phase == ReleasePhase.CANCELLED
    assert ssm_values(aws, [PARAM, OTHER]) == {PARAM: "2.3.1", OTHER: "off"}
    assert status.target("api").phase == TargetPhase.ROLLED_BACK
    [retry] = events(status, "rollback_retry")
    assert retry.message == "retrying the failed rollback, overwriting api as they are now"
    assert retry.evidence is not None and retry.evidence.payload.details == "force=true"


async def test_retrying_without_force_leaves_the_drifted_resource_alone(
    time_skipping_env, aws, make_worker, task_queue
):
    async with make_worker(time_skipping_env, aws):
        handle, release, _ = await hotfixed_then_aborted(time_skipping_env, aws, task_queue)
        await signed_update(
            handle,
            ReleaseWorkflow.rollback,
            WaveActionInput(actor="olga", reason="try again", wave="canary"),
        )
        status = await wait_for(
            handle,
            lambda s: (
                s.phase == ReleasePhase.ROLLBACK_FAILED and len(events(s, "rollback_halted")) == 2
            ),
        )
        await handle.terminate()
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.4.1-hotfix"}
    assert status.target("api").phase == TargetPhase.ROLLBACK_FAILED
