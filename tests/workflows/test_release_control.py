"""Release control across days of workflow time: windows, freezes, operator controls, gate
escalation, a multi-department scenario and worker restarts, on the time-skipping server.

Each test first moves the server's clock to a chosen local instant (``skip_to``), so every
expected time is exact and computed with zoneinfo: the tests hold in any season. Between
skips, workflow time stands still while the test polls the status query; ``env.sleep`` and
awaiting ``handle.result()`` let the server skip ahead, firing timers as it goes.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.aws import AwsClients
from models.messages import FreezeInput, OperatorInput, OverrideInput
from models.plan import Freeze, ReleasePlan
from models.status import ReleasePhase, ReleaseStatus, TargetPhase, WavePhase
from tests.helpers import (
    APPROVER_GROUPS,
    approve,
    events,
    local,
    make_plan,
    near,
    next_weekday,
    seed,
    signed_update,
    skip_to,
    ssm,
    ssm_values,
    start_release,
    status_of,
    update_refusal,
    wait_for,
    wait_for_gate,
    wave,
)
from tests.trust import build_test_worker
from workflows.release import ReleaseWorkflow

BERLIN, NEW_YORK, TOKYO = "Europe/Berlin", "America/New_York", "Asia/Tokyo"
OFFICE_BERLIN = {"timezone": BERLIN, "days": "mon-fri", "start": "09:00", "end": "17:00"}
# olga is on call (operator group); frank signs off for the CFO when a gate escalates.
GROUPS = APPROVER_GROUPS | {"on-call": ["olga"], "cfo-office": ["frank"], "apac-leads": ["kenji"]}
PARAM = "/payments/berlin/api/version"


def control_plan(
    targets: list[dict[str, Any]], waves: list[dict[str, Any]], **fields: Any
) -> ReleasePlan:
    """A plan whose operator group is on-call (olga); alice requests it."""
    return make_plan(targets, waves, **fields)


def berlin_plan(freezes: list[Freeze] | None = None, **wave_fields: Any) -> ReleasePlan:
    """One wave, one SSM parameter (2.3.1 -> 2.4.0), Berlin office hours unless overridden."""
    return control_plan(
        [ssm("api", PARAM, "2.4.0")],
        [wave("berlin", ["api"], **({"window": OFFICE_BERLIN} | wave_fields))],
        freezes=[f.model_dump() for f in freezes or []],
    )


async def refused(handle: WorkflowHandle[Any, Any], update: Any, arg: Any) -> str:
    """The message with which the release refused ``update`` (its validator's)."""
    return await update_refusal(signed_update(handle, update, arg))


def param(aws: AwsClients) -> str | None:
    return ssm_values(aws, [PARAM])[PARAM]


def traffic_times(status: ReleaseStatus) -> list[datetime]:
    return [e.at for e in events(status, "traffic_shifted")]


async def wave_waits_until(
    handle: WorkflowHandle[Any, Any], name: str, when: datetime
) -> ReleaseStatus:
    """Wait until wave ``name`` waits for its window (or a freeze) to open at ``when``."""
    return await wait_for(
        handle,
        lambda s: (
            s.wave(name).phase == WavePhase.WAITING_FOR_WINDOW and s.wave(name).next_start == when
        ),
    )


def berlin_and_utc(at: datetime) -> str:
    """``2026-12-09 12:00 Europe/Berlin (11:00 UTC)``: how a wave in Berlin shows a time."""
    local, utc = at.astimezone(ZoneInfo(BERLIN)), at.astimezone(UTC)
    return f"{local:%Y-%m-%d %H:%M} {BERLIN} ({utc:%H:%M} UTC)"


# --- rollout windows --------------------------------------------------------------------------


async def test_wave_waits_for_its_window_and_deploys_when_it_opens(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    saturday = next_weekday(await env.get_current_time(), "sat", BERLIN)
    monday = saturday + timedelta(days=2)
    opens = local(monday, "09:00", BERLIN)
    await skip_to(env, local(saturday, "10:00", BERLIN))
    seed(aws, {PARAM: "2.3.1"})
    async with make_worker(env, aws):
        handle = await start_release(env.client, berlin_plan(), task_queue)
        status = await wave_waits_until(handle, "berlin", opens)
        assert status.phase == ReleasePhase.WAITING_FOR_WINDOW
        # Times in the wave's own time zone (its window's) beside UTC.
        utc = opens.astimezone(UTC).strftime("%H:%M")
        opens_text = f"{opens:%Y-%m-%d} 09:00 {BERLIN} ({utc} UTC)"
        assert status.wave("berlin").waiting_for == (
            f"window mon-fri 09:00-17:00 {BERLIN}; next start {opens_text}"
        )
        assert (status.wave("berlin").timezone, status.wave("berlin").window) == (
            BERLIN,
            f"mon-fri 09:00-17:00 {BERLIN}",
        )
        [waiting] = events(status, "waiting_for_window")
        assert (waiting.actor, waiting.wave) == ("relman", "berlin")
        assert waiting.message == (
            f"wave berlin waits until {opens_text}: window mon-fri 09:00-17:00 {BERLIN}"
        )
        # The wave started (Saturday) but is not deploying: it says so only when it
        # changes AWS, once its window opens.
        [started] = events(status, "wave_started")
        assert started.message == "wave berlin started"
        assert events(status, "wave_deploying") == []
        # Nothing is read or changed before the window opens: the snapshot is taken then.
        assert status.target("api").before is None

        await skip_to(env, opens - timedelta(minutes=1))
        status = await status_of(handle)
        assert status.wave("berlin").phase == WavePhase.WAITING_FOR_WINDOW
        assert param(aws) == "2.3.1"

        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.COMPLETED
    assert param(aws) == "2.4.0"
    [applied] = events(status, "target_applied")
    assert near(applied.at, opens) and applied.target == "api"
    assert (status.target("api").before, status.target("api").after) == ("2.3.1", "2.4.0")
    assert status.wave("berlin").next_start is None
    [deploying] = events(status, "wave_deploying")
    assert near(deploying.at, opens)
    assert deploying.message == "wave berlin deploying: step 1 of 1 (100%)"


async def test_window_crossing_midnight(time_skipping_env, aws, make_worker, task_queue):
    env = time_skipping_env
    nightly = {"timezone": NEW_YORK, "days": "mon-fri", "start": "22:00", "end": "02:00"}
    saturday = next_weekday(await env.get_current_time(), "sat", NEW_YORK)
    async with make_worker(env, aws):
        # Saturday 01:00 belongs to Friday's opening (22:00-02:00): it deploys at once.
        await skip_to(env, local(saturday, "01:00", NEW_YORK))
        inside = await start_release(env.client, berlin_plan(window=nightly), task_queue)
        assert (await inside.result()).phase == ReleasePhase.COMPLETED
        assert not events(await status_of(inside), "waiting_for_window")
        assert param(aws) == "2.4.0"

        # Saturday 03:00 is closed until Monday 22:00; both steps fit in Monday's opening,
        # the second after local midnight. (Awaiting a result may move the test server's
        # clock far ahead once the workflow is done: take the next Saturday from here.)
        seed(aws, {PARAM: "2.3.1"})
        saturday = next_weekday(await env.get_current_time(), "sat", NEW_YORK)
        await skip_to(env, local(saturday, "03:00", NEW_YORK))
        opens = local(saturday + timedelta(days=2), "22:00", NEW_YORK)
        plan = berlin_plan(window=nightly, traffic=[50, 100], bake="3h")
        outside = await start_release(env.client, plan, task_queue)
        await wave_waits_until(outside, "berlin", opens)
        assert param(aws) == "2.3.1"
        assert (await outside.result()).phase == ReleasePhase.COMPLETED
        status = await status_of(outside)

    assert param(aws) == "2.4.0"
    first, second = traffic_times(status)
    assert near(first, opens) and near(second, opens + timedelta(hours=3))
    assert len(events(status, "waiting_for_window")) == 1


@pytest.mark.parametrize("on_close", ["pause", "finish_wave"])
async def test_window_closing_mid_wave(on_close, time_skipping_env, aws, make_worker, task_queue):
    env = time_skipping_env
    short = OFFICE_BERLIN | {"end": "10:00"}
    monday = next_weekday(await env.get_current_time(), "mon", BERLIN)
    opens = local(monday, "09:00", BERLIN)
    await skip_to(env, local(monday, "08:00", BERLIN))
    seed(aws, {PARAM: "2.3.1"})
    # Steps at 09:00 and 09:40; the third is due at 10:20, after the window closed.
    plan = berlin_plan(window=short, traffic=[10, 50, 100], bake="40m", on_window_close=on_close)
    async with make_worker(env, aws):
        handle = await start_release(env.client, plan, task_queue)
        await wave_waits_until(handle, "berlin", opens)
        await skip_to(env, local(monday, "11:00", BERLIN))
        if on_close == "pause":
            reopens = local(monday + timedelta(days=1), "09:00", BERLIN)
            status = await wave_waits_until(handle, "berlin", reopens)
            # The step in progress finished: 50 % is where the wave waits.
            assert status.wave("berlin").percent == 50
            assert param(aws) == "2.4.0"  # an SSM parameter applies fully at the first step
            expected_last = reopens
        else:
            expected_last = opens + timedelta(minutes=80)
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.COMPLETED
    times = traffic_times(status)
    assert near(times[0], opens) and near(times[1], opens + timedelta(minutes=40))
    assert near(times[2], expected_last)
    assert [e.message for e in events(status, "traffic_shifted")] == [
        "wave berlin at 10%",
        "wave berlin at 50%",
        "wave berlin at 100%",
    ]
    assert len(events(status, "waiting_for_window")) == (2 if on_close == "pause" else 1)
    [applied] = events(status, "target_applied")  # non-traffic targets apply once
    assert near(applied.at, opens)
    assert param(aws) == "2.4.0"


# --- freezes and window overrides ---------------------------------------------------------------


async def test_plan_freeze_delays_the_wave_until_it_ends(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    monday = next_weekday(await env.get_current_time(), "mon", BERLIN)
    await skip_to(env, local(monday, "08:00", BERLIN))
    thaw = local(monday + timedelta(days=1), "11:30", BERLIN)
    freeze = Freeze(start=local(monday, "00:00", BERLIN), end=thaw, reason="month-end close")
    plan = berlin_plan(freezes=[freeze])
    async with make_worker(env, aws):
        handle = await start_release(env.client, plan, task_queue)
        status = await wave_waits_until(handle, "berlin", thaw)
        assert status.wave("berlin").waiting_for == (
            f"freeze: month-end close; next start {berlin_and_utc(thaw)}"
        )
        assert status.freezes == [freeze]
        await skip_to(env, thaw - timedelta(minutes=1))
        assert param(aws) is None
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.COMPLETED
    assert param(aws) == "2.4.0"
    assert near(events(status, "target_applied")[0].at, thaw)


async def test_freeze_added_to_a_running_release_moves_a_wait_in_progress(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    saturday = next_weekday(await env.get_current_time(), "sat", BERLIN)
    monday = saturday + timedelta(days=2)
    await skip_to(env, local(saturday, "10:00", BERLIN))
    thaw = local(monday + timedelta(days=2), "12:00", BERLIN)  # Wednesday noon
    freeze = Freeze(start=local(monday, "00:00", BERLIN), end=thaw, reason="incident 4711")
    async with make_worker(env, aws):
        handle = await start_release(env.client, berlin_plan(), task_queue)
        await wave_waits_until(handle, "berlin", local(monday, "09:00", BERLIN))

        why = await refused(
            handle,
            ReleaseWorkflow.add_freeze,
            FreezeInput(actor="mallory", reason="why not", freeze=freeze),
        )
        assert why == (
            f"mallory may not add a freeze to release {handle.id}: not its requester or an operator"
        )
        result = await signed_update(
            handle,
            ReleaseWorkflow.add_freeze,
            FreezeInput(actor="olga", reason="incident 4711 open", freeze=freeze),
        )
        assert result.message == "freeze added"
        status = await wave_waits_until(handle, "berlin", thaw)
        assert status.freezes == [freeze]
        # The freeze is not in force yet, but it is what the wave now waits for.
        assert status.wave("berlin").waiting_for == (
            f"freeze: incident 4711; next start {berlin_and_utc(thaw)}"
        )
        assert events(status, "waiting_for_window")[-1].message == (
            f"wave berlin waits until {berlin_and_utc(thaw)}: freeze: incident 4711"
        )
        [added] = events(status, "freeze_added")
        assert (added.actor, added.comment) == ("olga", "incident 4711 open")
        assert added.message == (
            f"freeze {freeze.start.isoformat()} -> {thaw.isoformat()}: incident 4711"
        )

        # Monday's opening passes inside the freeze: nothing deploys.
        await skip_to(env, local(monday, "10:00", BERLIN))
        assert param(aws) is None
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.COMPLETED
    assert near(events(status, "target_applied")[0].at, thaw)
    assert param(aws) == "2.4.0"


async def test_override_window_starts_outside_the_window_but_not_in_a_freeze(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    saturday = next_weekday(await env.get_current_time(), "sat", BERLIN)
    now = local(saturday, "10:00", BERLIN)
    await skip_to(env, now)
    thaw = local(saturday, "20:00", BERLIN)
    plan = berlin_plan(
        freezes=[Freeze(start=now - timedelta(hours=1), end=thaw, reason="dr drill")]
    )
    async with make_worker(env, aws):
        handle = await start_release(env.client, plan, task_queue)
        await wave_waits_until(
            handle, "berlin", local(saturday + timedelta(days=2), "09:00", BERLIN)
        )

        # The requester may pause or abort, but only the on-call group may override.
        override = ReleaseWorkflow.override_window
        why = await refused(
            handle, override, OverrideInput(actor="alice", reason="hurry", wave="berlin")
        )
        assert (
            why == "alice may not override a window: only operator groups may (on-call, ops-leads)"
        )
        why = await refused(
            handle, override, OverrideInput(actor="olga", reason="hurry", wave="nope")
        )
        assert why == f"release {plan.id} has no wave 'nope' (waves: berlin)"

        await signed_update(
            handle, override, OverrideInput(actor="olga", reason="CVE-2026-1234", wave="berlin")
        )
        # The window no longer counts, the freeze still does.
        status = await wave_waits_until(handle, "berlin", thaw)
        assert param(aws) is None

        await signed_update(
            handle,
            override,
            OverrideInput(
                actor="olga", reason="CVE actively exploited", wave="berlin", include_freeze=True
            ),
        )
        status = await wait_for(handle, lambda s: s.phase == ReleasePhase.COMPLETED)
        assert param(aws) == "2.4.0"
        assert near(events(status, "target_applied")[0].at, now, timedelta(minutes=1))
        await handle.result()

    overrides = events(status, "window_overridden")
    assert [(e.actor, e.wave, e.comment, e.message) for e in overrides] == [
        ("olga", "berlin", "CVE-2026-1234", "wave berlin: window overridden"),
        ("olga", "berlin", "CVE actively exploited", "wave berlin: window and freezes overridden"),
    ]


# --- pause, resume, abort --------------------------------------------------------------------


def two_step_plan() -> ReleasePlan:
    """``first`` shifts 10 -> 50 -> 100 % baking 1 h each; ``second`` follows it."""
    return control_plan(
        [ssm("api", PARAM, "2.4.0"), ssm("ops", "/payments/ops/version", "2.4.0")],
        [
            wave("first", ["api"], traffic=[10, 50, 100], bake="1h"),
            wave("second", ["ops"], department="operations", after=["first"]),
        ],
    )


async def test_pause_takes_effect_between_steps_and_resume_goes_on(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    seed(aws, {PARAM: "2.3.1", "/payments/ops/version": "2.3.1"})
    params = [PARAM, "/payments/ops/version"]
    async with make_worker(env, aws):
        handle = await start_release(env.client, two_step_plan(), task_queue)
        await wait_for(handle, lambda s: s.wave("first").phase == WavePhase.BAKING)
        started = (await status_of(handle)).started_at
        pause = ReleaseWorkflow.pause
        why = await refused(handle, pause, OperatorInput(actor="mallory", reason="x"))
        assert why == f"mallory may not pause release {handle.id}: not its requester or an operator"
        why = await refused(handle, pause, OperatorInput(actor="alice"))
        assert why == "pause needs a reason (--reason)"
        why = await refused(
            handle, ReleaseWorkflow.resume, OperatorInput(actor="alice", reason="x")
        )
        assert why == f"release {handle.id} is not paused"

        result = await signed_update(
            handle, pause, OperatorInput(actor="alice", reason="finance closing the books")
        )
        assert result.message == "release paused at the next safe point"
        why = await refused(handle, pause, OperatorInput(actor="olga", reason="again"))
        assert why == f"release {handle.id} is already paused"
        # The bake in progress finishes; the next step waits.
        await skip_to(env, started + timedelta(days=1))
        status = await wait_for(handle, lambda s: s.phase == ReleasePhase.PAUSED)
        assert status.paused and status.wave("first").phase == WavePhase.PAUSED
        assert (status.wave("first").step, status.wave("first").percent) == (0, 10)
        assert status.wave("first").waiting_for == "paused by an operator"
        assert ssm_values(aws, params) == {PARAM: "2.4.0", "/payments/ops/version": "2.3.1"}
        assert len(events(status, "traffic_shifted")) == 1

        resumed_at = await env.get_current_time()
        await signed_update(
            handle, ReleaseWorkflow.resume, OperatorInput(actor="olga", reason="books closed")
        )
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.COMPLETED
    assert ssm_values(aws, params) == {PARAM: "2.4.0", "/payments/ops/version": "2.4.0"}
    times = traffic_times(status)
    assert near(times[0], started, timedelta(seconds=5))
    assert near(times[1], resumed_at) and near(times[2], resumed_at + timedelta(hours=1))
    assert [
        (e.kind, e.actor, e.comment) for e in status.timeline if e.kind in ("paused", "resumed")
    ] == [
        ("paused", "alice", "finance closing the books"),
        ("resumed", "olga", "books closed"),
    ]
    assert status.wave("second").phase == WavePhase.COMPLETED


async def test_abort_rolls_back_and_ends_cancelled(time_skipping_env, aws, make_worker, task_queue):
    env = time_skipping_env
    before = {PARAM: "2.3.1", "/payments/ops/version": "2.3.1"}
    seed(aws, before)
    plan = control_plan(
        [ssm("api", PARAM, "2.4.0"), ssm("ops", "/payments/ops/version", "2.4.0")],
        [
            wave("first", ["api"]),
            wave("second", ["ops"], after=["first"], traffic=[10, 100], bake="6h"),
        ],
    )
    async with make_worker(env, aws):
        handle = await start_release(env.client, plan, task_queue)
        # Abort while the second wave bakes at 10 %: both waves changed their parameter.
        await wait_for(handle, lambda s: s.wave("second").phase == WavePhase.BAKING)
        assert ssm_values(aws, list(before)) == {k: "2.4.0" for k in before}
        abort = ReleaseWorkflow.abort
        why = await refused(handle, abort, OperatorInput(actor="olga"))
        assert why == "abort needs a reason (--reason)"
        why = await refused(handle, abort, OperatorInput(actor="bob", reason="x"))
        assert why == f"bob may not abort release {handle.id}: not its requester or an operator"

        result = await signed_update(
            handle, abort, OperatorInput(actor="alice", reason="wrong build promoted")
        )
        assert result.message == "release aborting: rolling back what it changed"
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.CANCELLED
    assert ssm_values(aws, list(before)) == before
    [aborted] = events(status, "aborted")
    assert (aborted.actor, aborted.comment) == ("alice", "wrong build promoted")
    assert [e.target for e in events(status, "target_restored")] == ["ops", "api"]
    assert all(e.at >= aborted.at for e in events(status, "target_restored"))
    assert [t.phase for w in status.waves for t in w.targets] == [TargetPhase.ROLLED_BACK] * 2
    assert len(events(status, "traffic_shifted", "second")) == 1  # it never reached 100 %
    assert events(status, "finished")[0].message == "release ended cancelled"


async def test_operator_controls_refused_once_the_release_ended(
    time_skipping_env, aws, make_worker, task_queue
):
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, berlin_plan(window=None), task_queue)
        assert (await handle.result()).phase == ReleasePhase.COMPLETED
        before = await status_of(handle)
        # A closed workflow takes no updates: the server refuses before any validator runs
        # (the time-skipping server says "update ... not found", a cluster "workflow
        # execution already completed").
        for update in (ReleaseWorkflow.pause, ReleaseWorkflow.abort):
            with pytest.raises(RPCError):
                await signed_update(handle, update, OperatorInput(actor="alice", reason="too late"))
        assert await status_of(handle) == before
    assert param(aws) == "2.4.0"


# --- gate timeout with escalation --------------------------------------------------------------


def escalating_plan() -> ReleasePlan:
    """finance-cab has 24 h to approve, then the CFO's office 12 h more."""
    gate = {
        "groups": {"finance-cab": 1},
        "timeout": "24h",
        "on_timeout": "escalate",
        "escalate_to": {"cfo-office": 1},
        "escalation_timeout": "12h",
    }
    return control_plan([ssm("api", PARAM, "2.4.0")], [wave("finance", ["api"], approval=gate)])


async def test_gate_escalates_after_its_timeout_and_the_escalation_group_approves(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    async with make_worker(env, aws):
        handle = await start_release(env.client, escalating_plan(), task_queue)
        status = await wait_for_gate(handle, "finance")
        opened = status.wave("finance").started_at
        assert status.pending_approvals[0].deadline == opened + timedelta(hours=24)
        assert await update_refusal(approve(handle, "finance", "frank")) == (
            "frank is not in any approver group of wave 'finance' (finance-cab)"
        )

        await skip_to(env, opened + timedelta(hours=25))
        status = await wait_for(handle, lambda s: s.wave("finance").escalated_to != {})
        [pending] = status.pending_approvals
        assert pending.missing == {"finance-cab": 1, "cfo-office": 1}
        assert pending.eligible_approvers == ["bob", "carol", "frank"]
        [escalated] = events(status, "approval_escalated")
        assert near(pending.deadline, escalated.at + timedelta(hours=12), timedelta(0))
        assert near(escalated.at, opened + timedelta(hours=24))
        assert (escalated.actor, escalated.wave) == ("relman", "finance")
        assert escalated.message == "wave finance approval escalated to 1 of cfo-office"
        assert param(aws) is None

        result = await approve(handle, "finance", "frank", "CFO sign-off")
        assert result.satisfied
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.COMPLETED
    assert param(aws) == "2.4.0"
    [approved] = events(status, "approved")
    assert (approved.actor, approved.comment) == ("frank", "CFO sign-off")
    assert approved.message == "frank approved wave finance (as cfo-office)"
    assert not events(status, "approval_timeout")


async def test_gate_rejects_after_the_escalation_times_out_too(
    time_skipping_env, aws, make_worker, task_queue
):
    seed(aws, {PARAM: "2.3.1"})
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, escalating_plan(), task_queue)
        opened = (await wait_for_gate(handle, "finance")).wave("finance").started_at
        outcome = await handle.result()  # nobody decides: 24 h, then 12 h more
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.REJECTED
    assert param(aws) == "2.3.1"
    [escalated] = events(status, "approval_escalated")
    [timeout] = events(status, "approval_timeout")
    assert near(escalated.at, opened + timedelta(hours=24))
    assert near(timeout.at, opened + timedelta(hours=36))
    assert (timeout.actor, timeout.message) == (
        "relman",
        "wave finance approval timed out; rejecting",
    )
    assert status.wave("finance").phase == WavePhase.REJECTED
    assert status.pending_approvals == []


# --- a multi-day release across three departments -----------------------------------------------

SCENARIO_PARAMS = {
    "fin": "/payments/finance/api/version",
    "ops": "/payments/operations/api/version",
    "apac": "/payments/apac/api/version",
}


def three_department_plan() -> ReleasePlan:
    """finance (Berlin) first, then operations (New York) and apac (Tokyo) in parallel."""

    def office(tz: str, end: str = "17:00") -> dict[str, Any]:
        return {"timezone": tz, "days": "mon-fri", "start": "09:00", "end": end}

    return control_plan(
        [ssm(name, parameter, "2.4.0") for name, parameter in SCENARIO_PARAMS.items()],
        [
            wave(
                "finance",
                ["fin"],
                groups={"finance-cab": 1},
                timeout="48h",
                window=office(BERLIN),
                traffic=[25, 100],
                bake="2h",
            ),
            wave(
                "operations",
                ["ops"],
                department="operations",
                after=["finance"],
                window=office(NEW_YORK),
                approval={
                    "groups": {"ops-leads": 1},
                    "timeout": "24h",
                    "on_timeout": "escalate",
                    "escalate_to": {"cfo-office": 1},
                    "escalation_timeout": "1d",
                },
            ),
            wave(
                "apac",
                ["apac"],
                department="apac",
                after=["finance"],
                groups={"apac-leads": 1},
                timeout="3d",
                window=office(TOKYO, "18:00"),
            ),
        ],
    )


async def test_multi_day_release_across_three_time_zones(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    wall_start = asyncio.get_running_loop().time()
    seed(aws, dict.fromkeys(SCENARIO_PARAMS.values(), "2.3.1"))
    friday = next_weekday(await env.get_current_time(), "fri", BERLIN)
    saturday, monday = friday + timedelta(days=1), friday + timedelta(days=3)
    tuesday = monday + timedelta(days=1)

    def berlin(day: date, wall: str) -> datetime:
        return local(day, wall, BERLIN)

    def values() -> dict[str, str | None]:
        found = ssm_values(aws, list(SCENARIO_PARAMS.values()))
        return {name: found[parameter] for name, parameter in SCENARIO_PARAMS.items()}

    # Friday evening: submitted after Berlin's office hours; finance-cab approves at once.
    await skip_to(env, berlin(friday, "18:00"))
    async with make_worker(env, aws):
        handle = await start_release(env.client, three_department_plan(), task_queue)
        await wait_for_gate(handle, "finance")
        await approve(handle, "finance", "bob", "numbers reconciled")
        await wave_waits_until(handle, "finance", berlin(monday, "09:00"))

        # Saturday: on-call freezes Monday morning for the payments batch run.
        await skip_to(env, berlin(saturday, "12:00"))
        freeze = Freeze(
            start=berlin(monday, "00:00"), end=berlin(monday, "12:00"), reason="batch run"
        )
        await signed_update(
            handle,
            ReleaseWorkflow.add_freeze,
            FreezeInput(actor="olga", reason="payments batch run", freeze=freeze),
        )
        await wave_waits_until(handle, "finance", freeze.end)

        # Monday: finance deploys at noon, 25 % then 100 % two hours later, done at 16:00;
        # operations and apac open their gates together.
        await skip_to(env, berlin(monday, "16:30"))
        status = await wait_for_gate(handle, "operations", "apac")
        assert values() == {"fin": "2.4.0", "ops": "2.3.1", "apac": "2.3.1"}
        await approve(handle, "apac", "kenji", "apac ready")
        tokyo_opens = local(tuesday, "09:00", TOKYO)
        await wave_waits_until(handle, "apac", tokyo_opens)

        await skip_to(env, berlin(monday, "17:00"))
        await signed_update(
            handle, ReleaseWorkflow.pause, OperatorInput(actor="alice", reason="quarter-end check")
        )
        # Tuesday morning: Tokyo's window has opened, but the release is paused.
        await skip_to(env, berlin(tuesday, "06:00"))
        status = await wait_for(handle, lambda s: s.wave("apac").phase == WavePhase.PAUSED)
        assert status.phase == ReleasePhase.PAUSED
        assert status.wave("operations").phase == WavePhase.AWAITING_APPROVAL
        assert values()["apac"] == "2.3.1"

        await skip_to(env, berlin(tuesday, "08:00"))
        await signed_update(
            handle, ReleaseWorkflow.resume, OperatorInput(actor="olga", reason="check passed")
        )
        await wait_for(handle, lambda s: s.wave("apac").phase == WavePhase.COMPLETED)
        assert values()["apac"] == "2.4.0"

        # Nobody in ops-leads decided within 24 h: the CFO's office signs off (10:30 in
        # New York, inside its window).
        await skip_to(env, berlin(tuesday, "16:30"))
        status = await wait_for(handle, lambda s: s.wave("operations").escalated_to != {})
        assert status.pending_approvals[0].eligible_approvers == ["dave", "erin", "frank"]
        await approve(handle, "operations", "frank", "CFO sign-off")
        status = await wait_for(handle, lambda s: s.phase == ReleasePhase.COMPLETED)
        outcome = await handle.result()

    assert outcome.phase == ReleasePhase.COMPLETED
    assert values() == {"fin": "2.4.0", "ops": "2.4.0", "apac": "2.4.0"}
    assert [w.phase for w in status.waves] == [WavePhase.COMPLETED] * 3
    key = {
        "approved",
        "freeze_added",
        "target_applied",
        "wave_completed",
        "paused",
        "resumed",
        "approval_escalated",
        "finished",
    }
    happened = sorted((e for e in status.timeline if e.kind in key), key=lambda e: e.at)
    expected = [
        ("approved", "finance", "bob", berlin(friday, "18:00")),
        ("freeze_added", None, "olga", berlin(saturday, "12:00")),
        ("target_applied", "finance", "relman", berlin(monday, "12:00")),
        ("wave_completed", "finance", "relman", berlin(monday, "16:00")),
        ("approved", "apac", "kenji", berlin(monday, "16:30")),
        ("paused", None, "alice", berlin(monday, "17:00")),
        ("resumed", None, "olga", berlin(tuesday, "08:00")),
        ("target_applied", "apac", "relman", berlin(tuesday, "08:00")),
        ("wave_completed", "apac", "relman", berlin(tuesday, "08:00")),
        ("approval_escalated", "operations", "relman", berlin(tuesday, "16:00")),
        ("approved", "operations", "frank", berlin(tuesday, "16:30")),
        ("target_applied", "operations", "relman", berlin(tuesday, "16:30")),
        ("wave_completed", "operations", "relman", berlin(tuesday, "16:30")),
        ("finished", None, "relman", berlin(tuesday, "16:30")),
    ]
    assert [(e.kind, e.wave, e.actor) for e in happened] == [x[:3] for x in expected]
    late = [(e.kind, e.at) for e, x in zip(happened, expected, strict=True) if not near(e.at, x[3])]
    assert late == []
    assert [(e.actor, e.comment) for e in events(status, "approved")] == [
        ("bob", "numbers reconciled"),
        ("kenji", "apac ready"),
        ("frank", "CFO sign-off"),
    ]
    assert status.freezes == [freeze]
    assert asyncio.get_running_loop().time() - wall_start < 30  # days of workflow time


# --- worker restarts ---------------------------------------------------------------------------


def uncached_worker(
    env: WorkflowEnvironment, aws: AwsClients, task_queue: str, executor: Executor
) -> Worker:
    """The relman worker without a workflow cache, so without a sticky task queue.

    A worker that stops leaves its sticky queue behind; a Temporal cluster soon hands the
    release's tasks (and queries) back to the normal queue, but on the time-skipping server
    (no ResetStickyTaskQueue, no ShutdownWorker) the next query times out. Without a cache
    every task of this worker replays the history, as a restarted worker's first task does.
    """
    return build_test_worker(env.client, task_queue, aws, executor, max_cached_workflows=0)


async def test_worker_restart_during_approval_and_window_waits_loses_nothing(
    time_skipping_env, aws, make_worker, task_queue, activity_executor
):
    env = time_skipping_env
    seed(aws, {PARAM: "2.3.1"})
    saturday = next_weekday(await env.get_current_time(), "sat", BERLIN)
    opens = local(saturday + timedelta(days=2), "09:00", BERLIN)
    await skip_to(env, local(saturday, "10:00", BERLIN))
    plan = control_plan(
        [ssm("api", PARAM, "2.4.0")],
        [wave("berlin", ["api"], groups={"finance-cab": 2}, timeout="5d", window=OFFICE_BERLIN)],
    )
    async with uncached_worker(env, aws, task_queue, activity_executor):
        # The time-skipping server may still hand a task to the stopped worker's last poll;
        # like any task of a crashed worker it is retried after the workflow task timeout
        # (1 s here rather than the default 10 s, to keep the test fast).
        handle = await start_release(
            env.client, plan, task_queue, task_timeout=timedelta(seconds=1)
        )
        await wait_for_gate(handle, "berlin")
        await approve(handle, "berlin", "bob", "first of two")
    # No worker: the release waits durably on the server. A new worker (no cached state)
    # replays its history and goes on from the same point.
    async with uncached_worker(env, aws, task_queue, activity_executor):
        status = await wait_for_gate(handle, "berlin")
        assert status.pending_approvals[0].missing == {"finance-cab": 1}
        assert status.pending_approvals[0].eligible_approvers == ["carol"]
        await approve(handle, "berlin", "carol", "second")
        await wave_waits_until(handle, "berlin", opens)
    await skip_to(env, local(saturday + timedelta(days=1), "12:00", BERLIN))  # timer not due yet
    assert param(aws) == "2.3.1"
    async with make_worker(env, aws):
        status = await wave_waits_until(handle, "berlin", opens)
        outcome = await handle.result()
        status = await status_of(handle)

    assert outcome.phase == ReleasePhase.COMPLETED
    assert param(aws) == "2.4.0"
    assert [(e.actor, e.comment) for e in events(status, "approved")] == [
        ("bob", "first of two"),
        ("carol", "second"),
    ]
    assert len(events(status, "waiting_for_window")) == 1
    [applied] = events(status, "target_applied")
    assert near(applied.at, opens)
    assert [e.kind for e in status.timeline].count("finished") == 1


# --- daylight-saving switches, end to end ------------------------------------------------------


def next_switch(after: datetime, tz: str) -> date:
    """The first local date after ``after`` on which ``tz``'s UTC offset changes."""
    zone = ZoneInfo(tz)
    day = after.astimezone(zone).date() + timedelta(days=1)
    while True:
        noon_before = datetime.combine(day - timedelta(days=1), time(12), tzinfo=zone)
        noon = datetime.combine(day, time(12), tzinfo=zone)
        if noon_before.utcoffset() != noon.utcoffset():
            return day
        day += timedelta(days=1)


async def test_a_wave_waits_across_a_daylight_saving_switch_to_local_opening_time(
    time_skipping_env, aws, make_worker, task_queue
):
    """Saturday 10:00 to Monday 09:00 in Berlin is 47 hours on the wall clock and 46 or 48
    real hours across the switch: the wave starts at 09:00 local all the same."""
    env = time_skipping_env
    sunday = next_switch(await env.get_current_time(), BERLIN)
    assert sunday.weekday() == 6  # the EU switches on Sundays
    saturday, monday = sunday - timedelta(days=1), sunday + timedelta(days=1)
    started, opens = local(saturday, "10:00", BERLIN), local(monday, "09:00", BERLIN)
    assert opens - started in (timedelta(hours=46), timedelta(hours=48))
    await skip_to(env, started)
    seed(aws, {PARAM: "2.3.1"})
    async with make_worker(env, aws):
        handle = await start_release(env.client, berlin_plan(), task_queue)
        await wave_waits_until(handle, "berlin", opens)
        await skip_to(env, opens - timedelta(minutes=1))
        assert param(aws) == "2.3.1"
        assert (await handle.result()).phase == ReleasePhase.COMPLETED
        status = await status_of(handle)
    [shifted] = traffic_times(status)
    assert near(shifted, opens)
    assert param(aws) == "2.4.0"


async def test_a_window_across_midnight_on_the_switch_night(
    time_skipping_env, aws, make_worker, task_queue
):
    """A nightly 22:00-04:00 Berlin window on the night the clocks change: 23:30 and 03:30
    local are inside it, 04:30 is not (the next opening is 22:00 that evening)."""
    env = time_skipping_env
    nightly = {"timezone": BERLIN, "start": "22:00", "end": "04:00"}
    sunday = next_switch(await env.get_current_time(), BERLIN)
    saturday = sunday - timedelta(days=1)
    async with make_worker(env, aws):
        for day, wall in ((saturday, "23:30"), (sunday, "03:30")):
            seed(aws, {PARAM: "2.3.1"})
            await skip_to(env, local(day, wall, BERLIN))
            assert near(await env.get_current_time(), local(day, wall, BERLIN))
            inside = await start_release(env.client, berlin_plan(window=nightly), task_queue)
            # Polled, not awaited: awaiting a result lets the server's clock run ahead.
            status = await wait_for(inside, lambda s: s.phase == ReleasePhase.COMPLETED)
            assert not events(status, "waiting_for_window"), wall
            assert param(aws) == "2.4.0"

        seed(aws, {PARAM: "2.3.1"})
        await skip_to(env, local(sunday, "04:30", BERLIN))
        assert near(await env.get_current_time(), local(sunday, "04:30", BERLIN))
        after = await start_release(env.client, berlin_plan(window=nightly), task_queue)
        await wave_waits_until(after, "berlin", local(sunday, "22:00", BERLIN))
        assert param(aws) == "2.3.1"
