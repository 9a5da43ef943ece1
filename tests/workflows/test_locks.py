"""Strict resource locks on the dev server: releases started at once through raw Temporal
starts (no CLI check, no search attributes, so no visibility) never hold one resource at
the same time, however their plans spell it. Refused releases change nothing; queued ones
proceed in the order they asked; a lock whose holder was terminated is freed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.aws import AwsClients
from activities.locks import LockActivities
from models.locks import LockState, RequestLocksInput, lock_keys, lock_workflow_id
from models.plan import ReleasePlan
from models.status import ReleasePhase, WavePhase
from tests import trust
from tests.helpers import approve, events, make_plan, seed, ssm, ssm_values, status_of, wait_for
from workflows.lock import ResourceLockWorkflow
from workflows.release import ReleaseWorkflow


@pytest.fixture
def param(task_queue: str) -> str:
    """A parameter of this test's own: the dev server (and its lock workflows, bound to the
    task queue of the release that first asked) outlive each test."""
    return f"/payments/locks/{task_queue}"


def plan(param: str, i: int, queue: bool) -> ReleasePlan:
    """A gated release of ``param``; odd ones spell the default region out."""
    target = ssm("api", param, f"v{i}") | ({"region": "us-east-1"} if i % 2 else {})
    return make_plan(
        [target],
        [
            {
                "name": "w",
                "department": "finance",
                "targets": ["api"],
                "approval": {"groups": {"finance-cab": 1}},
            }
        ],  # noqa: E501
        queue=queue,
    )


async def start(client: Client, release: ReleasePlan, queue: str) -> Any:
    return await client.start_workflow(
        ReleaseWorkflow.run,
        await trust.release_input(client, release),
        id=release.id,
        task_queue=queue,
    )


async def first_holds(
    client: Client, aws: AwsClients, param: str, queue: str
) -> tuple[ReleasePlan, ReleasePlan, Any]:
    """Two releases of ``param``; the first started and holding its lock at its gate."""
    seed(aws, {param: "v-before"})
    first, second = plan(param, 1, queue=False), plan(param, 2, queue=False)
    holder = await start(client, first, queue)
    await wait_for(holder, lambda s: s.phase == ReleasePhase.AWAITING_APPROVAL)
    return first, second, holder


async def lock_state(client: Client, release: ReleasePlan) -> LockState:
    """The lock of the release's one resource (moto's account, the default region)."""
    [key] = lock_keys(release, account="123456789012", region="us-east-1").keys
    lock = client.get_workflow_handle(lock_workflow_id(key.digest))
    return await lock.query(ResourceLockWorkflow.state)


async def test_twenty_releases_at_once_never_hold_one_resource_together(
    dev_env, aws: AwsClients, make_worker, task_queue, param: str
):
    client = dev_env.client
    seed(aws, {param: "v-before"})
    plans = [plan(param, i, queue=i >= 10) for i in range(20)]
    async with make_worker(dev_env, aws):
        handles = await asyncio.gather(*(start(client, p, task_queue) for p in plans))

        def holding(statuses: list[Any]) -> list[str]:
            return [s.release_id for s in statuses if s.phase == ReleasePhase.AWAITING_APPROVAL]

        async def statuses() -> list[Any]:
            return list(await asyncio.gather(*(status_of(h) for h in handles)))

        # Settle: one release holds the lock, the others are refused or queued.
        for _ in range(300):
            now = await statuses()
            refused = [s for s in now if s.phase == ReleasePhase.FAILED]
            queued = [s for s in now if events(s, "queued") and not events(s, "dequeued")]
            assert len(holding(now)) <= 1, holding(now)
            if len(holding(now)) == 1 and len(refused) + len(queued) == 19:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"never settled: {[(s.release_id, s.phase) for s in now]}")
        [holder] = holding(now)
        first = next(h for h in handles if h.id == holder)
        # Every refused release names the holder and changed nothing.
        for s in refused:
            assert s.error is not None and f"by running release {holder}" in s.error, s.error
            assert events(s, "target_applied") == []
        state = await lock_state(client, plans[0])
        assert state.holder == holder
        order = list(state.queue)
        assert sorted(order) == sorted(p.id for p in plans[10:] if p.id != holder)

        # Each approval lets the next in line take the lock, in order, one at a time.
        current = first
        for expected in order:
            await approve(current, "w", "bob")
            assert (await current.result()).phase == ReleasePhase.COMPLETED
            current = next(h for h in handles if h.id == expected)
            await wait_for(current, lambda s: s.wave("w").phase == WavePhase.AWAITING_APPROVAL)
            assert len(holding(await statuses())) == 1
        await approve(current, "w", "bob")
        assert (await current.result()).phase == ReleasePhase.COMPLETED

    last = next(p for p in plans if p.id == current.id)
    assert ssm_values(aws, [param]) == {param: last.targets[0].value}  # type: ignore[union-attr]
    assert len(refused) == 19 - len(order)


async def test_a_lock_whose_holder_was_terminated_is_freed_for_the_next(
    dev_env, aws: AwsClients, make_worker, task_queue, param: str
):
    client = dev_env.client
    async with make_worker(dev_env, aws):
        first, second, holder = await first_holds(client, aws, param, task_queue)
        await holder.terminate("stuck")
        later = await start(client, second, task_queue)
        await wait_for(later, lambda s: s.phase == ReleasePhase.AWAITING_APPROVAL)
        await later.terminate("test over")


async def test_a_free_lock_is_taken_by_starting_it_and_a_held_one_answers_requests(
    dev_env, aws: AwsClients, make_worker, task_queue, param: str
):
    client = dev_env.client
    async with make_worker(dev_env, aws):
        first, second, holder = await first_holds(client, aws, param, task_queue)
        later = await start(client, second, task_queue)
        refused = await later.result()
        state = await lock_state(client, first)
        [key] = lock_keys(first, account="123456789012", region="us-east-1").keys
        history = await client.get_workflow_handle(lock_workflow_id(key.digest)).fetch_history()
        await holder.terminate("test over")

    assert refused.phase == ReleasePhase.FAILED
    assert refused.error is not None and f"by running release {first.id}" in refused.error
    assert state.holder == first.id and state.queue == []
    # The first release took the free lock with the start itself (it is the start's
    # holder, no request reached the lock); the second asked the running lock, by Update.
    started = history.events[0].workflow_execution_started_event_attributes
    [start_state] = await client.data_converter.decode(started.input.payloads, [LockState])
    assert start_state.holder == first.id
    accepted = [
        e
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert len(accepted) == 1


async def test_a_retried_lock_request_finds_the_lock_its_first_attempt_took(
    dev_env, aws: AwsClients, make_worker, task_queue, param: str
):
    """A worker that dies after the start took the lock, before the activity reported it:
    the retried attempt is told it holds the lock, and nobody joins the line."""
    client = dev_env.client
    async with make_worker(dev_env, aws):
        first, _, holder = await first_holds(client, aws, param, task_queue)
        [key] = lock_keys(first, account="123456789012", region="us-east-1").keys
        retried = await ActivityEnvironment().run(
            LockActivities(client, aws).request_locks,
            RequestLocksInput(release_id=first.id, keys=[key]),
        )
        state = await lock_state(client, first)
        await holder.terminate("test over")

    assert [(a.granted, a.holder) for a in retried.answers] == [(True, None)]
    assert state.holder == first.id and state.queue == []
