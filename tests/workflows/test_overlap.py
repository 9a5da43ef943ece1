"""Two releases of the same resources submitted at once: the later one does not deploy.

``relman submit`` looks for overlapping running releases through visibility, which is
eventually consistent: two submissions within a second can both pass it. So a release also
looks for itself once it is visible, and of two overlapping releases the one that started
later fails without changing anything, or queues behind the other with ``queue: true``.
Runs on the dev server (the time-skipping server has no visibility).
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.aws import AwsClients
from client.service import start_search_attributes
from models.messages import OperatorInput
from models.plan import ReleasePlan
from models.status import ReleasePhase
from tests import trust
from tests.helpers import (
    assert_replays,
    events,
    make_plan,
    seed,
    signed_update,
    ssm,
    ssm_values,
    wait_for,
    wave,
)
from workflows.release import ReleaseWorkflow

PARAM = "/payments/overlap/version"


def gated_plan(**fields: Any) -> ReleasePlan:
    """One gated wave deploying PARAM: the release stays running until approved."""
    return make_plan(
        [ssm("api", PARAM, "2.4.0")],
        [wave("finance", ["api"], approval={"groups": {"finance-cab": 1}})],
        **fields,
    )


async def submit_bypassing_the_cli_check(client: Client, plan: ReleasePlan, queue: str) -> Any:
    """Start as ``relman submit`` does once its own overlap check has passed."""
    return await client.start_workflow(
        ReleaseWorkflow.run,
        await trust.release_input(client, plan),
        id=plan.id,
        task_queue=queue,
        search_attributes=start_search_attributes(plan),
    )


async def test_of_two_overlapping_releases_started_at_once_the_later_changes_nothing(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str
) -> None:
    seed(aws, {PARAM: "2.3.1"})
    first, second = gated_plan(), gated_plan()
    async with make_worker(dev_env, aws):
        ahead = await submit_bypassing_the_cli_check(dev_env.client, first, task_queue)
        later = await submit_bypassing_the_cli_check(dev_env.client, second, task_queue)
        outcome = await asyncio.wait_for(later.result(), 30)
        status = await wait_for(
            ahead, lambda s: s.phase == ReleasePhase.AWAITING_APPROVAL, limit=30
        )
        refused = await later.query(ReleaseWorkflow.status)
        await ahead.terminate("test over")
    await assert_replays(later)

    assert outcome.phase == ReleasePhase.FAILED
    assert outcome.error == (
        f"release {second.id} deploys resources that running release(s) {first.id} also "
        "deploy, and they started first; it changed nothing. Submit it again once they have "
        "ended, or set `queue: true` to queue behind them"
    )
    assert [e.message for e in events(refused, "refused")] == [outcome.error]
    assert all(w.phase == "pending" for w in refused.waves)
    assert status.phase == ReleasePhase.AWAITING_APPROVAL
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.3.1"}


async def test_with_queue_true_the_later_release_waits_for_the_earlier(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, monkeypatch
) -> None:
    monkeypatch.setenv("RELMAN_QUEUE_POLL_SECONDS", "0.2")
    seed(aws, {PARAM: "2.3.1"})
    first, second = gated_plan(), gated_plan(queue=True)
    async with make_worker(dev_env, aws):
        ahead = await submit_bypassing_the_cli_check(dev_env.client, first, task_queue)
        later = await submit_bypassing_the_cli_check(dev_env.client, second, task_queue)
        queued = await wait_for(later, lambda s: bool(events(s, "queued")), limit=30)
        assert [e.message for e in events(queued, "queued")] == [
            f"queued behind {first.id}: they deploy some of the same targets"
        ]
        await ahead.terminate("the earlier release is called off")
        waiting = await wait_for(
            later, lambda s: s.phase == ReleasePhase.AWAITING_APPROVAL, limit=30
        )
        await later.terminate("test over")
    assert events(waiting, "dequeued")
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.3.1"}


async def test_aborting_a_queued_release_ends_its_wait_at_once(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, monkeypatch
) -> None:
    monkeypatch.setenv("RELMAN_QUEUE_POLL_SECONDS", "0.2")
    seed(aws, {PARAM: "2.3.1"})
    first, second = gated_plan(), gated_plan(queue=True)
    async with make_worker(dev_env, aws):
        ahead = await submit_bypassing_the_cli_check(dev_env.client, first, task_queue)
        later = await submit_bypassing_the_cli_check(dev_env.client, second, task_queue)
        await wait_for(later, lambda s: bool(events(s, "queued")), limit=30)
        await signed_update(
            later, ReleaseWorkflow.abort, OperatorInput(actor="alice", reason="not needed any more")
        )
        result = await asyncio.wait_for(later.result(), timeout=30)
        status = await later.query(ReleaseWorkflow.status)
        ahead_status = await ahead.query(ReleaseWorkflow.status)
        await ahead.terminate("test over")

    assert result.phase == ReleasePhase.CANCELLED
    assert [e.message for e in events(status, "dequeued")] == [
        "left the queue: the release is stopping"
    ]
    assert ahead_status.phase == ReleasePhase.AWAITING_APPROVAL
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.3.1"}
