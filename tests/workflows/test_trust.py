"""Decisions people can trust, on the time-skipping server: every decision is verified
against the organisation policy's people and keys, the requester is who signed the
submission, refused attempts by identified callers are recorded (bounded), and a policy
change reaches a release in flight.

Updates are sent as any Temporal client can send them (``temporal workflow update
execute`` speaks the same API): unsigned, forged or replayed inputs are refused by the
release itself, not by the CLI.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from models.messages import DecisionInput, OperatorInput, ReleaseInput
from models.plan import ReleasePlan
from models.status import ReleasePhase, WavePhase
from tests import trust
from tests.helpers import (
    approve,
    events,
    make_plan,
    seed,
    ssm,
    ssm_values,
    start_release,
    status_of,
    two_wave_plan,
    update_refusal,
    wait_for,
    wait_for_gate,
    wave,
)
from workflows.release import REFUSALS_RECORDED, ReleaseWorkflow

PARAM = "/payments/trust/flag"


def gated_plan(param: str = PARAM, **fields: Any) -> ReleasePlan:
    return make_plan(
        [ssm("flag", param, "on")], [wave("finance", ["flag"], groups={"finance-cab": 1})], **fields
    )


async def refused_start(env: Any, plan: ReleasePlan, queue: str, input: ReleaseInput) -> str:
    handle = await env.client.start_workflow(
        ReleaseWorkflow.run, input, id=plan.id, task_queue=queue
    )
    result = await handle.result()
    assert result.phase == ReleasePhase.FAILED
    status = await status_of(handle)
    assert [w.phase for w in status.waves] == [WavePhase.PENDING] * len(status.waves)
    return result.error or ""


async def test_unsigned_forged_and_replayed_decisions_are_refused_by_the_release(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    seed(aws, {PARAM: "off"})
    # Another parameter: two running releases of one resource cannot both hold it.
    plan, other = gated_plan(), gated_plan(f"{PARAM}-other")
    two = two_wave_plan()
    async with make_worker(env, aws):
        handle = await start_release(env.client, plan, task_queue)
        second = await start_release(env.client, other, task_queue)
        both = await start_release(env.client, two, task_queue)
        await wait_for_gate(handle, "finance")
        await wait_for_gate(second, "finance")
        await wait_for_gate(both, "finance")
        update = ReleaseWorkflow.approve

        # No signature at all: what a raw `temporal workflow update execute` sends.
        unsigned = DecisionInput(wave="finance", approver="bob")
        assert await update_refusal(handle.execute_update(update, unsigned)) == (
            "unsigned decision: relman accepts only signed decisions"
        )
        # bob's name, signed with carol's key.
        forged = await trust.signed(handle, update, unsigned, signer="carol")
        refusal = await update_refusal(handle.execute_update(update, forged))
        assert refusal.startswith("signed with key SHA256:")
        assert refusal.endswith("which the organisation policy does not list for 'bob'")
        # bob's real approval of `other`, replayed onto this release.
        elsewhere = await trust.signed(second, update, unsigned)
        assert await update_refusal(handle.execute_update(update, elsewhere)) == (
            f"signed for release {other.id!r}, not {plan.id!r}"
        )
        # bob's approval of wave finance, replayed onto wave operations.
        finance = await trust.signed(both, update, unsigned)
        onto = finance.model_copy(update={"wave": "operations"})
        assert await update_refusal(both.execute_update(update, onto)) == (
            "signed for wave 'finance', not 'operations'"
        )
        # The comment changed after signing.
        altered = finance.model_copy(update={"comment": "LGTM"})
        assert await update_refusal(both.execute_update(update, altered)) == (
            "the signed comment or details differ from the decision sent: it was altered"
        )
        # An unknown person, signing with a key of their own.
        stranger = DecisionInput(wave="finance", approver="zoe")
        signed = await trust.signed(handle, update, stranger, signer="bob")
        assert await update_refusal(handle.execute_update(update, signed)) == (
            "unknown actor 'zoe': not a person in the organisation policy"
        )
        # A signature from long ago (workflow time moved on by a day).
        stale = await trust.signed(handle, update, unsigned)
        await env.sleep(timedelta(days=1))
        refusal = await update_refusal(handle.execute_update(update, stale))
        assert "more than the allowed skew of 10m" in refusal

        # None of it changed anything, and none of it is a decision in the timeline.
        status = await status_of(handle)
        assert status.wave("finance").approvals == []
        assert not events(status, "refused_decision")
        assert ssm_values(aws, [PARAM]) == {PARAM: "off"}

        # The real thing goes through, with its evidence recorded.
        result = await approve(handle, "finance", "bob", "reconciled")
        assert result.satisfied
        # Before awaiting the result: while the test waits, the time-skipping server moves
        # time on, and the other two releases' gates would time out and end on their own.
        for h in (second, both):
            await h.terminate()
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.COMPLETED
    [approved] = events(status, "approved")
    assert approved.evidence is not None
    assert approved.evidence.payload.actor == "bob"
    assert approved.evidence.payload.comment == "reconciled"
    assert approved.policy_digest == status.policy.digest  # type: ignore[union-attr]
    [started] = events(status, "started")
    assert started.evidence is not None and started.evidence.payload.action == "submit"


async def test_a_release_whose_requester_did_not_sign_it_changes_nothing(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    seed(aws, {PARAM: "off"})
    async with make_worker(env, aws):
        plan = gated_plan()
        unsigned = await refused_start(env, plan, task_queue, ReleaseInput(plan=plan))
        assert unsigned == (
            f"release {plan.id} refused: unsigned submission: relman starts only releases "
            "their requester signed; it changed nothing"
        )
        # alice signs a plan that names bob as its requester, to approve it herself.
        spoofed = gated_plan(requested_by="bob")
        input = ReleaseInput(
            plan=spoofed, submission=await trust.submission(env.client, spoofed, "alice")
        )
        payload = input.submission.payload.model_copy(update={"actor": "alice"})  # type: ignore[union-attr]
        input.submission = trust.sign(payload)
        assert await refused_start(env, spoofed, task_queue, input) == (
            f"release {spoofed.id} refused: requested_by 'bob' is not who signed the "
            "submission ('alice'); it changed nothing"
        )
        # A plan that names members of its own approver group.
        own = gated_plan(approver_groups={"finance-cab": ["alice"]})
        refusal = await refused_start(
            env, own, task_queue, await trust.release_input(env.client, own)
        )
        assert refusal == (
            f"release {own.id} refused: the organisation policy refuses the plan: "
            "approver_groups.finance-cab: plans name groups only; who is in 'finance-cab' is "
            "up to the organisation policy; it changed nothing"
        )
    assert ssm_values(aws, [PARAM]) == {PARAM: "off"}


async def test_refused_attempts_are_recorded_up_to_a_bound_per_wave(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    async with make_worker(env, aws):
        handle = await start_release(env.client, gated_plan(), task_queue)
        await wait_for_gate(handle, "finance")
        for i in range(REFUSALS_RECORDED + 5):
            assert await update_refusal(approve(handle, "finance", "mallory", f"try {i}")) == (
                "mallory is not in any approver group of wave 'finance' (finance-cab)"
            )
        status = await status_of(handle)
        await handle.terminate()
    refused = events(status, "refused_decision")
    assert len(refused) == REFUSALS_RECORDED
    assert refused[-1].message.endswith("; further refused attempts here are not recorded")
    assert {(e.actor, e.wave) for e in refused} == {("mallory", "finance")}


async def test_a_policy_change_in_flight_removes_an_approver_before_their_approval(
    time_skipping_env, aws, activity_executor, task_queue, tmp_path: Path
):
    env = time_skipping_env
    seed(aws, {PARAM: "off"})
    policy_file = tmp_path / "policy.yaml"
    data = yaml.safe_load(trust.policy_path().read_text())
    policy_file.write_text(yaml.safe_dump(data))
    worker = trust.build_worker_with_policy(env, task_queue, aws, activity_executor, policy_file)
    async with worker:
        handle = await start_release(env.client, gated_plan(), task_queue)
        status = await wait_for_gate(handle, "finance")
        assert status.pending_approvals[0].eligible_approvers == ["bob", "carol"]
        first = status.policy
        # bob leaves the change board, and a year-end freeze is declared for everyone.
        data["version"] = "tests-2"
        data["groups"]["finance-cab"] = ["carol"]
        policy_file.write_text(yaml.safe_dump(data))

        assert await update_refusal(approve(handle, "finance", "bob")) == (
            "bob is not in any approver group of wave 'finance' (finance-cab)"
        )
        status = await status_of(handle)
        assert status.policy is not None and status.policy.version == "tests-2"
        assert status.policy.digest != first.digest  # type: ignore[union-attr]
        [refused] = events(status, "refused_decision")
        assert refused.policy_digest == status.policy.digest
        policies = [e.message for e in events(status, "policy")]
        assert policies[-1].startswith(f"organisation policy tests-2 ({status.policy.digest})")
        assert status.pending_approvals[0].eligible_approvers == ["carol"]

        assert (await approve(handle, "finance", "carol")).satisfied
        outcome = await handle.result()
    assert outcome.phase == ReleasePhase.COMPLETED
    assert ssm_values(aws, [PARAM]) == {PARAM: "on"}


async def test_operator_actions_are_verified_and_recorded_with_their_signature(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    async with make_worker(env, aws):
        handle = await start_release(env.client, gated_plan(), task_queue)
        await wait_for_gate(handle, "finance")
        pause = OperatorInput(actor="olga", reason="change freeze call")
        assert await update_refusal(handle.execute_update(ReleaseWorkflow.pause, pause)) == (
            "unsigned decision: relman accepts only signed decisions"
        )
        # A signed pause replayed as an abort.
        signed = await trust.signed(handle, ReleaseWorkflow.pause, pause)
        assert await update_refusal(handle.execute_update(ReleaseWorkflow.abort, signed)) == (
            "signed for action 'pause', not 'abort'"
        )
        assert await update_refusal(
            trust.signed_update(
                handle, ReleaseWorkflow.pause, OperatorInput(actor="bob", reason="hm")
            )
        ) == (f"bob may not pause release {handle.id}: not its requester or an operator")
        await handle.execute_update(ReleaseWorkflow.pause, signed)
        status = await wait_for(handle, lambda s: s.paused)
        await handle.terminate()
    [paused] = events(status, "paused")
    assert paused.evidence == signed.signed
    [refused] = events(status, "refused_decision")
    assert (refused.actor, refused.wave) == ("bob", None)
