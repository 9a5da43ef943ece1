"""ReleaseWorkflow end to end on Temporal's time-skipping server, against moto over HTTP.

The tests wait for a state by polling the status query: while no client awaits a result,
the time-skipping server does not move workflow time, so gates wait for the test. Awaiting
``handle.result()`` lets it skip ahead (a 48 h approval timeout passes in milliseconds).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import CancelledError

from common.search_attributes import (
    SA_APPLICATION,
    SA_APPROVERS,
    SA_PHASE,
    SA_REQUESTER,
    SA_VERSION,
)
from models.status import (
    ReleasePhase,
    StatusRequest,
    TargetPhase,
    TimelineRequest,
    WavePhase,
)
from tests.helpers import (
    TWO_WAVE_BEFORE,
    approve,
    assert_replays,
    events,
    make_plan,
    reject,
    seed,
    ssm,
    ssm_values,
    start_release,
    status_of,
    two_wave_plan,
    wait_for,
    wait_for_gate,
    wave,
)
from tests.trust import SELF_SERVICE
from workflows.release import ReleaseWorkflow

PARAMS = list(TWO_WAVE_BEFORE)
FINANCE_DONE = {
    "/payments/finance/api/version": "2.4.0",
    "/payments/finance/settlement/engine": "ledger-v2",
    "/payments/operations/api/version": "2.3.1",
}
ALL_DONE = FINANCE_DONE | {"/payments/operations/api/version": "2.4.0"}
# A name AWS refuses to write ("/aws" and "/ssm" prefixes are reserved): apply fails for good.
RESERVED = "/aws/payments/flag"


async def refusal(update) -> str:  # type: ignore[no-untyped-def]
    """The message with which the workflow's update validator refused ``update``."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await update
    return str(info.value.cause.message)


def restored_order(status) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.target for e in status.timeline if e.kind == "target_restored"]


async def assert_timeline_in_parts(handle, status) -> None:  # type: ignore[no-untyped-def]
    """The status query can leave all but the latest events out (a release of thousands of
    targets has a timeline of megabytes), and the timeline query hands it out in pages."""
    everything = status.timeline
    latest = await handle.query(ReleaseWorkflow.status, StatusRequest(timeline_tail=3))
    assert (latest.timeline, latest.timeline_total) == (everything[-3:], len(everything))
    assert latest.waves == status.waves and latest.phase == status.phase
    none = await handle.query(ReleaseWorkflow.status, StatusRequest(timeline_tail=0))
    assert (none.timeline, none.timeline_total) == ([], len(everything))
    paged: list = []
    while len(paged) < len(everything):
        page = await handle.query(
            ReleaseWorkflow.timeline, TimelineRequest(offset=len(paged), limit=4)
        )
        assert page.total == len(everything) and 0 < len(page.events) <= 4
        paged += page.events
    assert paged == everything
    past = await handle.query(
        ReleaseWorkflow.timeline, TimelineRequest(offset=len(everything), limit=4)
    )
    assert (past.events, past.total) == ([], len(everything))


# --- the happy path ------------------------------------------------------------------------


async def test_two_wave_release_approved_completes(time_skipping_env, aws, make_worker, task_queue):
    seed(aws, TWO_WAVE_BEFORE)
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, two_wave_plan(), task_queue)

        status = await wait_for_gate(handle, "finance")
        assert status.phase == ReleasePhase.AWAITING_APPROVAL
        assert ssm_values(aws, PARAMS) == TWO_WAVE_BEFORE
        [pending] = status.pending_approvals
        assert pending.missing == {"finance-cab": 1}
        assert pending.eligible_approvers == ["bob", "carol"]
        assert pending.deadline == pending.waiting_since + timedelta(hours=48)

        result = await approve(handle, "finance", "bob", "numbers reconciled")
        assert result.satisfied and result.message == "gate satisfied"

        status = await wait_for_gate(handle, "operations")
        assert ssm_values(aws, PARAMS) == FINANCE_DONE
        assert status.pending_approvals[0].missing == {"ops-leads": 1}
        assert status.pending_approvals[0].eligible_approvers == ["dave", "erin"]

        await approve(handle, "operations", "dave", "ops ready")
        outcome = await handle.result()
        status = await status_of(handle)
        await assert_timeline_in_parts(handle, status)
    await assert_replays(handle)

    assert outcome.phase == ReleasePhase.COMPLETED and outcome.error is None
    assert ssm_values(aws, PARAMS) == ALL_DONE
    assert status.phase == ReleasePhase.COMPLETED
    assert [w.phase for w in status.waves] == [WavePhase.COMPLETED, WavePhase.COMPLETED]
    assert status.pending_approvals == []
    assert [(t.name, t.phase, t.before, t.after) for w in status.waves for t in w.targets] == [
        ("finance-api-version", TargetPhase.APPLIED, "2.3.1", "2.4.0"),
        ("finance-settlement-engine", TargetPhase.APPLIED, "ledger-v1", "ledger-v2"),
        ("ops-api-version", TargetPhase.APPLIED, "2.3.1", "2.4.0"),
    ]
    approvals = [e for e in status.timeline if e.kind == "approved"]
    assert [(e.actor, e.wave, e.comment) for e in approvals] == [
        ("bob", "finance", "numbers reconciled"),
        ("dave", "operations", "ops ready"),
    ]
    assert all(status.started_at <= e.at <= status.finished_at for e in approvals)
    record = status.wave("finance").approvals[0]
    assert (record.approver, record.decision, record.groups) == ("bob", "approved", ["finance-cab"])
    assert record.comment == "numbers reconciled" and record.at == approvals[0].at


async def test_two_independent_waves_await_approval_together(
    time_skipping_env, aws, make_worker, task_queue
):
    plan = make_plan(
        [ssm("fin", "/par/fin", "new-fin"), ssm("ops", "/par/ops", "new-ops")],
        [
            wave("finance", ["fin"], groups={"finance-cab": 1}),
            wave("operations", ["ops"], department="operations", groups={"ops-leads": 1}),
        ],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        status = await wait_for_gate(handle, "finance", "operations")
        assert status.phase == ReleasePhase.AWAITING_APPROVAL
        assert {p.wave: p.eligible_approvers for p in status.pending_approvals} == {
            "finance": ["bob", "carol"],
            "operations": ["dave", "erin"],
        }

        # The second wave in plan order goes first: neither waits for the other.
        await approve(handle, "operations", "erin")
        status = await wait_for(handle, lambda s: s.wave("operations").phase == "completed")
        assert status.wave("finance").phase == WavePhase.AWAITING_APPROVAL
        assert ssm_values(aws, ["/par/fin", "/par/ops"]) == {
            "/par/fin": None,
            "/par/ops": "new-ops",
        }

        await approve(handle, "finance", "carol")
        outcome = await handle.result()

    assert outcome.phase == ReleasePhase.COMPLETED
    assert ssm_values(aws, ["/par/fin", "/par/ops"]) == {
        "/par/fin": "new-fin",
        "/par/ops": "new-ops",
    }


# --- who may decide ---------------------------------------------------------------------------


async def test_refusals_name_the_reason_and_change_nothing(
    time_skipping_env, aws, make_worker, task_queue
):
    seed(aws, TWO_WAVE_BEFORE)
    plan = two_wave_plan()
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        before = await wait_for_gate(handle, "finance")

        assert await refusal(approve(handle, "finance", "mallory")) == (
            "mallory is not in any approver group of wave 'finance' (finance-cab)"
        )
        # dave approves operations, not finance.
        assert await refusal(reject(handle, "finance", "dave")) == (
            "dave is not in any approver group of wave 'finance' (finance-cab)"
        )
        assert await refusal(approve(handle, "finance", "alice")) == (
            f"alice requested release {plan.id} and may not approve it (separation of duties)"
        )
        assert await refusal(approve(handle, "nope", "bob")) == (
            f"release {plan.id} has no wave 'nope' (waves: finance, operations)"
        )
        assert await refusal(approve(handle, "operations", "dave")) == (
            "wave 'operations' is not awaiting approval (it is pending)"
        )
        after = await status_of(handle)
        # Nothing changed but the record of who tried what, and why it was refused.
        assert after.model_copy(update={"timeline": []}) == before.model_copy(
            update={"timeline": []}
        )
        assert ssm_values(aws, PARAMS) == TWO_WAVE_BEFORE
        refused = events(after, "refused_decision")
        assert [(e.actor, e.wave, e.message) for e in refused] == [
            (
                "mallory",
                "finance",
                "approve by mallory refused: mallory is not in any approver group of wave "
                "'finance' (finance-cab)",
            ),
            (
                "dave",
                "finance",
                "reject by dave refused: dave is not in any approver group of wave "
                "'finance' (finance-cab)",
            ),
            (
                "alice",
                "finance",
                f"approve by alice refused: alice requested release {plan.id} and may not "
                "approve it (separation of duties)",
            ),
            (
                "bob",
                None,
                f"approve by bob refused: release {plan.id} has no wave 'nope' "
                "(waves: finance, operations)",
            ),
            (
                "dave",
                "operations",
                "approve by dave refused: wave 'operations' is not awaiting approval "
                "(it is pending)",
            ),
        ]
        # Each refused attempt keeps its signature: who it was is verifiable later.
        assert all(e.evidence and e.evidence.payload.actor == e.actor for e in refused)
        await handle.terminate()


async def test_requester_may_approve_when_the_policy_allows_self_approval(
    time_skipping_env, aws, make_worker, task_queue
):
    plan = make_plan(
        [ssm("flag", "/par/flag", "on")],
        [wave("finance", ["flag"], groups={"self-approvers": 1})],
        application=SELF_SERVICE,
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        status = await wait_for_gate(handle, "finance")
        assert status.pending_approvals[0].eligible_approvers == ["alice", "bob"]
        result = await approve(handle, "finance", "alice", "my own hotfix, allowed")
        assert result.satisfied
        outcome = await handle.result()
    assert outcome.phase == ReleasePhase.COMPLETED
    assert ssm_values(aws, ["/par/flag"]) == {"/par/flag": "on"}


async def test_gate_of_two_needs_two_different_people(
    time_skipping_env, aws, make_worker, task_queue
):
    plan = make_plan(
        [ssm("flag", "/par/flag", "on")],
        [wave("finance", ["flag"], groups={"finance-cab": 2})],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        await wait_for_gate(handle, "finance")

        first = await approve(handle, "finance", "bob", "looks fine")
        assert (first.satisfied, first.missing) == (False, {"finance-cab": 1})
        assert first.message == "still needs 1 from finance-cab"
        status = await status_of(handle)
        assert status.pending_approvals[0].missing == {"finance-cab": 1}
        assert status.pending_approvals[0].eligible_approvers == ["carol"]

        assert await refusal(approve(handle, "finance", "bob", "again")) == (
            "bob has already decided on wave 'finance'"
        )
        assert [a.approver for a in (await status_of(handle)).wave("finance").approvals] == ["bob"]
        assert ssm_values(aws, ["/par/flag"]) == {"/par/flag": None}

        second = await approve(handle, "finance", "carol")
        assert second.satisfied
        outcome = await handle.result()
    assert outcome.phase == ReleasePhase.COMPLETED
    assert ssm_values(aws, ["/par/flag"]) == {"/par/flag": "on"}


async def test_same_update_id_is_applied_once(time_skipping_env, aws, make_worker, task_queue):
    plan = make_plan(
        [ssm("flag", "/par/flag", "on")],
        [wave("finance", ["flag"], groups={"finance-cab": 2})],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        await wait_for_gate(handle, "finance")
        first = await approve(handle, "finance", "bob", "once", id="bob-approves-finance")
        # A client retrying after a lost response sends the same update id again.
        again = await approve(handle, "finance", "bob", "once", id="bob-approves-finance")
        assert again == first
        status = await status_of(handle)
        assert len(status.wave("finance").approvals) == 1
        assert len([e for e in status.timeline if e.kind == "approved"]) == 1
        await handle.terminate()


# --- rejection and timeout ---------------------------------------------------------------------


async def test_rejection_after_a_deployed_wave_rolls_it_back(
    time_skipping_env, aws, make_worker, task_queue
):
    # The settlement engine parameter does not exist yet: rollback deletes it again.
    before = {k: v for k, v in TWO_WAVE_BEFORE.items() if "settlement" not in k}
    seed(aws, before)
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, two_wave_plan(), task_queue)
        await wait_for_gate(handle, "finance")
        await approve(handle, "finance", "carol")
        await wait_for_gate(handle, "operations")
        assert ssm_values(aws, PARAMS) == FINANCE_DONE

        result = await reject(handle, "operations", "erin", "ops not staffed this week")
        assert result.message == "wave operations rejected" and not result.satisfied
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.REJECTED
    assert ssm_values(aws, PARAMS) == {
        "/payments/finance/api/version": "2.3.1",
        "/payments/finance/settlement/engine": None,
        "/payments/operations/api/version": "2.3.1",
    }
    assert status.wave("operations").phase == WavePhase.REJECTED
    assert status.wave("finance").phase == WavePhase.ROLLED_BACK
    assert restored_order(status) == ["finance-settlement-engine", "finance-api-version"]
    engine = status.target("finance-settlement-engine")
    assert (engine.phase, engine.before, engine.after) == (
        TargetPhase.ROLLED_BACK,
        "(absent)",
        "(absent)",
    )
    [rejection] = [e for e in status.timeline if e.kind == "rejected"]
    assert (rejection.actor, rejection.wave, rejection.comment) == (
        "erin",
        "operations",
        "ops not staffed this week",
    )
    assert status.pending_approvals == []


async def test_rejection_keeps_deployed_waves_when_plan_says_keep(
    time_skipping_env, aws, make_worker, task_queue
):
    seed(aws, TWO_WAVE_BEFORE)
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(
            time_skipping_env.client, two_wave_plan(on_rejection="keep"), task_queue
        )
        await wait_for_gate(handle, "finance")
        await approve(handle, "finance", "bob")
        await wait_for_gate(handle, "operations")
        await reject(handle, "operations", "dave", "not now")
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.REJECTED
    assert ssm_values(aws, PARAMS) == FINANCE_DONE
    assert status.wave("finance").phase == WavePhase.COMPLETED
    assert not [e for e in status.timeline if e.kind.startswith("rollback")]


async def test_approval_timeout_rejects_the_release(
    time_skipping_env, aws, make_worker, task_queue
):
    seed(aws, TWO_WAVE_BEFORE)
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, two_wave_plan(), task_queue)
        await wait_for_gate(handle, "finance")
        # Nobody decides: awaiting the result lets the server skip the 48 hours.
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.REJECTED
    [timeout] = [e for e in status.timeline if e.kind == "approval_timeout"]
    assert timeout.wave == "finance" and timeout.actor == "relman"
    assert timeout.at - status.started_at >= timedelta(hours=48)
    assert status.wave("finance").phase == WavePhase.REJECTED
    assert status.wave("operations").phase == WavePhase.SKIPPED
    assert ssm_values(aws, PARAMS) == TWO_WAVE_BEFORE


# --- failures and the rollback saga -----------------------------------------------------------


async def test_apply_failure_rolls_back_every_change_newest_first(
    time_skipping_env, aws, make_worker, task_queue
):
    seed(aws, {"/app/a1": "a1-old", "/app/b1": "b1-old"})
    plan = make_plan(
        [
            ssm("a1", "/app/a1", "a1-new"),
            ssm("a2", "/app/a2", "a2-new"),  # absent before: deleted on rollback
            ssm("b1", "/app/b1", "b1-new"),
            ssm("b2", RESERVED, "on"),
        ],
        [wave("first", ["a1", "a2"]), wave("second", ["b1", "b2"], after=["first"])],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.ROLLED_BACK
    assert ssm_values(aws, ["/app/a1", "/app/a2", "/app/b1", RESERVED]) == {
        "/app/a1": "a1-old",
        "/app/a2": None,
        "/app/b1": "b1-old",
        RESERVED: None,
    }
    assert outcome.error is not None
    assert outcome.error.startswith(f"wave second: ssm:PutParameter on ssm parameter {RESERVED}")
    assert "AccessDenied" in outcome.error
    assert restored_order(status) == ["b2", "b1", "a2", "a1"]
    assert status.target("b2").error.startswith("ssm:PutParameter on ssm parameter")
    assert [t.phase for w in status.waves for t in w.targets] == [TargetPhase.ROLLED_BACK] * 4
    assert status.wave("second").phase == WavePhase.FAILED
    assert status.wave("first").phase == WavePhase.ROLLED_BACK
    [failed] = [e for e in status.timeline if e.kind == "target_failed"]
    assert failed.target == "b2" and RESERVED in failed.message


async def test_rollback_wave_restores_only_that_wave_and_skips_dependents(
    time_skipping_env, aws, make_worker, task_queue
):
    seed(aws, {"/app/ops": "ops-old", "/app/fin": "fin-old", "/app/late": "late-old"})
    plan = make_plan(
        [
            ssm("ops", "/app/ops", "ops-new"),
            ssm("fin", "/app/fin", "fin-new"),
            ssm("bad", RESERVED, "on"),
            ssm("late", "/app/late", "late-new"),
        ],
        [
            wave("operations", ["ops"], department="operations", groups={"ops-leads": 1}),
            wave("finance", ["fin", "bad"], on_failure="rollback_wave"),
            wave("late", ["late"], after=["finance"]),
        ],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        status = await wait_for(
            handle,
            lambda s: (
                s.wave("finance").phase == WavePhase.ROLLED_BACK
                and s.wave("late").phase == WavePhase.SKIPPED
            ),
        )
        # The independent wave carries on, and the release says what it is waiting for.
        assert status.phase == ReleasePhase.AWAITING_APPROVAL
        assert [p.wave for p in status.pending_approvals] == ["operations"]
        assert ssm_values(aws, ["/app/fin"]) == {"/app/fin": "fin-old"}

        await approve(handle, "operations", "dave")
        outcome = await handle.result()
        status = await status_of(handle)
    await assert_replays(handle)

    assert outcome.phase == ReleasePhase.FAILED
    assert RESERVED in outcome.error and outcome.error.startswith("wave finance:")
    assert ssm_values(aws, ["/app/ops", "/app/fin", "/app/late", RESERVED]) == {
        "/app/ops": "ops-new",
        "/app/fin": "fin-old",
        "/app/late": "late-old",
        RESERVED: None,
    }
    assert {w.name: w.phase for w in status.waves} == {
        "operations": WavePhase.COMPLETED,
        "finance": WavePhase.ROLLED_BACK,
        "late": WavePhase.SKIPPED,
    }
    assert restored_order(status) == ["bad", "fin"]
    assert status.target("late").phase == TargetPhase.PENDING


async def test_cancelling_rolls_back_what_was_deployed(
    time_skipping_env, aws, make_worker, task_queue
):
    seed(aws, TWO_WAVE_BEFORE)
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, two_wave_plan(), task_queue)
        await wait_for_gate(handle, "finance")
        await approve(handle, "finance", "bob")
        await wait_for_gate(handle, "operations")
        assert ssm_values(aws, PARAMS) == FINANCE_DONE

        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert isinstance(info.value.cause, CancelledError)
        status = await status_of(handle)
    await assert_replays(handle)

    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert status.phase == ReleasePhase.CANCELLED
    assert ssm_values(aws, PARAMS) == TWO_WAVE_BEFORE
    assert restored_order(status) == ["finance-settlement-engine", "finance-api-version"]
    assert status.wave("finance").phase == WavePhase.ROLLED_BACK
    assert status.wave("operations").phase == WavePhase.CANCELLED
    assert status.pending_approvals == []


# --- visibility on the dev server ---------------------------------------------------------------


@pytest.mark.devserver
async def test_visibility_shows_the_waiting_gate_and_its_approvers(
    dev_env, aws, make_worker, task_queue
):
    seed(aws, TWO_WAVE_BEFORE)
    plan = two_wave_plan()
    client = dev_env.client

    async def listed(query: str):  # type: ignore[no-untyped-def]
        """The release as visibility lists it under ``query``, polled (eventually consistent)."""
        scoped = f'{query} AND WorkflowId = "{plan.id}"'
        for _ in range(200):
            found = [w async for w in client.list_workflows(scoped)]
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"visibility never listed {plan.id} under {query}")

    async with make_worker(dev_env, aws):
        handle = await start_release(
            client,
            plan,
            task_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SA_APPLICATION, plan.application),
                    SearchAttributePair(SA_VERSION, plan.version),
                    SearchAttributePair(SA_REQUESTER, plan.requested_by),
                    SearchAttributePair(SA_PHASE, "pending"),
                    SearchAttributePair(SA_APPROVERS, []),
                ]
            ),
        )
        await wait_for_gate(handle, "finance")
        waiting = await listed('RelmanPhase = "awaiting_approval"')
        assert waiting.typed_search_attributes.get(SA_APPROVERS) == ["bob", "carol"]
        assert waiting.typed_search_attributes.get(SA_APPLICATION) == "payments"
        # `relman approvals --as carol` asks exactly this.
        await listed('RelmanApprovers = "carol"')

        await reject(handle, "finance", "carol", "wrong quarter")
        assert (await handle.result()).phase == ReleasePhase.REJECTED
        ended = await listed('RelmanPhase = "rejected"')
        assert not ended.typed_search_attributes.get(SA_APPROVERS)
