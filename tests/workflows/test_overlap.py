"""Two releases of the same resources submitted at once: the later one does not deploy.

``relman submit`` looks for overlapping running releases through visibility, which is
eventually consistent: two submissions within a second can both pass it. The resource locks
decide: of two overlapping releases the one whose lock request came second fails without
changing anything, or queues behind the other with ``queue: true``. Runs on the dev server,
as ``relman submit`` starts releases (with search attributes).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
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


@pytest.fixture
def param(task_queue: str) -> str:
    """A parameter of this test's own: the dev server (and its locks) outlive each test."""
    return f"/payments/overlap/{task_queue}"


def key(param: str) -> str:
    """The parameter's canonical lock key: moto's account, the default region, its ARN."""
    return f"123456789012|us-east-1|arn:aws:ssm:us-east-1:123456789012:parameter{param}"


def gated_plan(param: str, **fields: Any) -> ReleasePlan:
    """One gated wave deploying ``param``: the release stays running until approved."""
    return make_plan(
        [ssm("api", param, "2.4.0")],
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
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, param: str
) -> None:
    seed(aws, {param: "2.3.1"})
    plans = [gated_plan(param), gated_plan(param)]
    async with make_worker(dev_env, aws):
        handles = await asyncio.gather(
            *(submit_bypassing_the_cli_check(dev_env.client, p, task_queue) for p in plans)
        )
        ends = await asyncio.gather(
            *(wait_for(h, lambda s: s.phase != ReleasePhase.PENDING, limit=30) for h in handles)
        )
        phases = sorted(s.phase for s in ends)
        [winner] = [i for i, s in enumerate(ends) if s.phase == ReleasePhase.AWAITING_APPROVAL]
        loser = 1 - winner
        outcome = await asyncio.wait_for(handles[loser].result(), 30)
        refused = await handles[loser].query(ReleaseWorkflow.status)
        await handles[winner].terminate("test over")
    await assert_replays(handles[loser])

    assert phases == sorted([ReleasePhase.AWAITING_APPROVAL, ReleasePhase.FAILED])
    assert outcome.phase == ReleasePhase.FAILED
    assert outcome.error == (
        f"release {plans[loser].id} refused: ssm parameter {param} ({key(param)}) is being "
        f"deployed by running release {plans[winner].id}; submit again once it has ended, or "
        "set `queue: true` to queue behind it; it changed nothing"
    )
    assert [e.message for e in events(refused, "refused")] == [outcome.error]
    assert all(w.phase == "pending" for w in refused.waves)
    assert ssm_values(aws, [param]) == {param: "2.3.1"}


async def test_with_queue_true_the_later_release_waits_for_the_earlier(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, param: str
) -> None:
    seed(aws, {param: "2.3.1"})
    first, second = gated_plan(param), gated_plan(param, queue=True)
    async with make_worker(dev_env, aws):
        ahead = await submit_bypassing_the_cli_check(dev_env.client, first, task_queue)
        await wait_for(ahead, lambda s: s.phase == ReleasePhase.AWAITING_APPROVAL, limit=30)
        later = await submit_bypassing_the_cli_check(dev_env.client, second, task_queue)
        queued = await wait_for(later, lambda s: bool(events(s, "queued")), limit=30)
        assert [e.message for e in events(queued, "queued")] == [
            f"queued behind {first.id}: it holds ssm parameter {param} ({key(param)})"
        ]
        await signed_update(
            ahead, ReleaseWorkflow.abort, OperatorInput(actor="alice", reason="called off")
        )
        waiting = await wait_for(
            later, lambda s: s.phase == ReleasePhase.AWAITING_APPROVAL, limit=30
        )
        await later.terminate("test over")
    assert events(waiting, "dequeued")
    assert ssm_values(aws, [param]) == {param: "2.3.1"}


async def test_aborting_a_queued_release_ends_its_wait_at_once(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, param: str
) -> None:
    seed(aws, {param: "2.3.1"})
    first, second = gated_plan(param), gated_plan(param, queue=True)
    async with make_worker(dev_env, aws):
        ahead = await submit_bypassing_the_cli_check(dev_env.client, first, task_queue)
        await wait_for(ahead, lambda s: s.phase == ReleasePhase.AWAITING_APPROVAL, limit=30)
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
    assert ssm_values(aws, [param]) == {param: "2.3.1"}
