"""A release acts on the world as it is when it acts, and a wave that ends abnormally is a
wave failure, on the time-skipping server against moto.

- A wave that waits days for its window snapshots its targets and checks its alarms when
  the window opens, not when its gate passed: a resource changed by hand during the wait is
  what a rollback restores, and an alarm that fired during the wait stops the wave before
  it changes anything.
- A wave child terminated through the Temporal API mid-bake fails the wave: the release
  rolls back and AWS holds its before-state again (on the dev server).
- Wave workflow ids cannot collide across releases whose ids and wave names share dots.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowExecutionStatus

from activities.aws import AwsClients
from models.messages import OperatorInput, wave_workflow_id
from models.preflight import PREFLIGHT
from models.status import ReleasePhase, TargetPhase, WavePhase
from tests.helpers import (
    activities_run,
    approve,
    assert_replays,
    events,
    local,
    make_plan,
    next_weekday,
    seed,
    signed_update,
    skip_to,
    ssm,
    ssm_values,
    start_release,
    update_refusal,
    wait_for,
)
from workflows.release import ReleaseWorkflow

BERLIN = "Europe/Berlin"
OFFICE = {"timezone": BERLIN, "days": "mon-fri", "start": "09:00", "end": "17:00"}
PARAM = "/payments/world/api/version"
ALARM = "world-5xx"


def create_alarm(aws: AwsClients, state: str = "OK", reason: str = "quiet") -> None:
    cloudwatch = aws.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM,
        Namespace="AWS/ApplicationELB",
        MetricName="HTTPCode_Target_5XX_Count",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=10.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    set_alarm(aws, state, reason)


def set_alarm(aws: AwsClients, state: str, reason: str) -> None:
    aws.client("cloudwatch").set_alarm_state(AlarmName=ALARM, StateValue=state, StateReason=reason)


def param(aws: AwsClients) -> str | None:
    return ssm_values(aws, [PARAM])[PARAM]


def weekend_plan(**wave_fields: Any) -> Any:
    """One wave in Berlin office hours, gated by finance-cab, deploying PARAM to 2.4.0."""
    return make_plan(
        [ssm("api", PARAM, "2.4.0")],
        [
            {
                "name": "berlin",
                "department": "finance",
                "targets": ["api"],
                "window": OFFICE,
                "alarms": [ALARM],
                "approval": {"groups": {"finance-cab": 1}},
            }
            | wave_fields
        ],
    )


async def gate_passed_on_saturday(env: Any, aws: AwsClients, queue: str, plan: Any) -> Any:
    """Start ``plan`` on a Saturday, approve it; its wave then waits for Monday 09:00."""
    saturday = next_weekday(await env.get_current_time(), "sat", BERLIN)
    await skip_to(env, local(saturday, "10:00", BERLIN))
    handle = await start_release(env.client, plan, queue)
    await wait_for(handle, lambda s: s.wave("berlin").phase == WavePhase.AWAITING_APPROVAL)
    await approve(handle, "berlin", "bob")
    monday = local(saturday + timedelta(days=2), "09:00", BERLIN)
    await wait_for(handle, lambda s: s.wave("berlin").next_start == monday)
    return handle, monday


async def test_alarm_fired_during_a_two_day_window_wait_stops_the_wave_before_any_change(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    seed(aws, {PARAM: "2.3.1"})
    create_alarm(aws)
    async with make_worker(env, aws):
        handle, monday = await gate_passed_on_saturday(env, aws, task_queue, weekend_plan())
        # During the wait: someone changes the parameter by hand, and the alarm fires.
        seed(aws, {PARAM: "2.3.2-hotfix"})
        set_alarm(aws, "ALARM", "5xx above 10 since Sunday")
        result = await handle.result()
        status = await handle.query(ReleaseWorkflow.status)
    await assert_replays(handle)  # with the new branch of nothing-changed-fails

    # Nothing was changed, so nothing was rolled back: the release failed, naming why.
    assert result.phase == ReleasePhase.FAILED
    assert result.error == (
        f"wave berlin: alarm already in ALARM before the wave started: {ALARM} "
        "(5xx above 10 since Sunday)"
    )
    assert events(status, "finished")[-1].message == (
        "release ended failed: nothing was changed, so nothing was rolled back"
    )
    assert events(status, "rollback_started") == []
    assert status.wave("berlin").error == (
        f"alarm already in ALARM before the wave started: {ALARM} (5xx above 10 since Sunday)"
    )
    assert status.wave("berlin").targets_note == "nothing was changed"
    # It started (Saturday, its gate passed) but never deployed: it changed nothing.
    [started] = events(status, "wave_started")
    assert (started.at < monday, started.message) == (True, "wave berlin started")
    assert events(status, "wave_deploying") == []
    # Nothing was changed, and nothing was "restored" over the hotfix.
    assert param(aws) == "2.3.2-hotfix"
    assert status.target("api").phase == TargetPhase.PENDING
    assert events(status, "target_applied") == [] and events(status, "target_restored") == []
    # The check ran when the window opened (Monday 09:00), not at the gate (Saturday).
    [failed] = [e for e in status.timeline if e.kind == "wave_failed"]
    assert failed.at >= monday
    # The timeline (relman history) says why, as status does.
    assert failed.message == (
        f"wave berlin failed: alarm already in ALARM before the wave started: {ALARM} "
        "(5xx above 10 since Sunday)"
    )


async def test_rollback_restores_the_state_at_the_start_of_the_wave_not_at_the_gate(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    seed(aws, {PARAM: "2.3.1"})
    plan = weekend_plan(bake="1h", alarms=[])
    async with make_worker(env, aws):
        handle, monday = await gate_passed_on_saturday(env, aws, task_queue, plan)
        seed(aws, {PARAM: "2.3.2-hotfix"})  # changed by hand during the wait
        await skip_to(env, monday + timedelta(minutes=1))
        status = await wait_for(handle, lambda s: s.wave("berlin").phase == WavePhase.BAKING)
        assert status.target("api").before == "2.3.2-hotfix"
        assert param(aws) == "2.4.0"
        await signed_update(
            handle, ReleaseWorkflow.abort, OperatorInput(actor="olga", reason="wrong build")
        )
        result = await handle.result()

    assert result.phase == ReleasePhase.CANCELLED
    assert param(aws) == "2.3.2-hotfix"


async def test_an_alarm_between_steps_stops_the_next_shift(
    time_skipping_env, aws, make_worker, task_queue
):
    """Each traffic step checks the alarms before it shifts, also after a window wait."""
    env = time_skipping_env
    seed(aws, {PARAM: "2.3.1"})
    create_alarm(aws)
    plan = make_plan(
        [ssm("api", PARAM, "2.4.0")],
        [
            {
                "name": "berlin",
                "department": "finance",
                "targets": ["api"],
                "traffic": [50, 100],
                "window": OFFICE,
                "on_window_close": "pause",
                "alarms": [ALARM],
                "bake": "3s",
                "bake_interval": "1s",
            }
        ],
    )
    friday = next_weekday(await env.get_current_time(), "fri", BERLIN)
    await skip_to(env, local(friday, "16:59", BERLIN) + timedelta(seconds=58))
    async with make_worker(env, aws):
        handle = await start_release(env.client, plan, task_queue)
        # Step 1 shifts at 16:59:58 and bakes 3 s; the window closes before step 2.
        monday = local(friday + timedelta(days=3), "09:00", BERLIN)
        await wait_for(handle, lambda s: s.wave("berlin").next_start == monday)
        assert param(aws) == "2.4.0"
        set_alarm(aws, "ALARM", "errors over the weekend")
        result = await handle.result()
        status = await handle.query(ReleaseWorkflow.status)

    assert result.phase == ReleasePhase.ROLLED_BACK
    assert status.wave("berlin").error == (
        f"alarm in ALARM before shifting to 100%: {ALARM} (errors over the weekend)"
    )
    assert param(aws) == "2.3.1"


async def test_terminating_a_wave_workflow_mid_bake_rolls_the_release_back(
    dev_env, aws, make_worker, task_queue
):
    # The dev server: the time-skipping server does not tell a parent its child was terminated.
    env = dev_env
    seed(aws, {PARAM: "2.3.1"})
    plan = make_plan(
        [ssm("api", PARAM, "2.4.0")],
        [{"name": "canary", "department": "finance", "targets": ["api"], "bake": "2h"}],
    )
    async with make_worker(env, aws):
        handle = await start_release(env.client, plan, task_queue)
        await wait_for(handle, lambda s: s.wave("canary").phase == WavePhase.BAKING)
        assert param(aws) == "2.4.0"
        child = env.client.get_workflow_handle(wave_workflow_id(plan.id, "canary", 1))
        await child.terminate(reason="stuck, terminated by hand")
        result = await handle.result()
        status = await handle.query(ReleaseWorkflow.status)
        described = await child.describe()

    assert described.status == WorkflowExecutionStatus.TERMINATED
    assert result.phase == ReleasePhase.ROLLED_BACK
    assert param(aws) == "2.3.1"
    assert status.wave("canary").phase == WavePhase.FAILED
    [ended] = events(status, "wave_workflow_failed")
    assert ended.message.startswith(f"wave workflow {plan.id}/canary/1 was terminated")
    assert status.wave("canary").error == ended.message
    assert status.target("api").phase == TargetPhase.ROLLED_BACK


async def test_wave_ids_of_releases_with_dotted_names_do_not_collide(
    time_skipping_env, aws, make_worker, task_queue
):
    """Release ``x.eu`` with wave ``1`` and release ``x`` with wave ``eu.1`` both run."""
    env = time_skipping_env
    seed(aws, {"/a": "old", "/b": "old"})
    suffix = task_queue[-6:].replace("-", "")
    first = make_plan(
        [ssm("a", "/a", "new")],
        [{"name": "1", "department": "finance", "targets": ["a"]}],
        id=f"x{suffix}.eu",
    )
    second = make_plan(
        [ssm("b", "/b", "new")],
        [{"name": "eu.1", "department": "finance", "targets": ["b"]}],
        id=f"x{suffix}",
    )
    async with make_worker(env, aws):
        one = await start_release(env.client, first, task_queue)
        two = await start_release(env.client, second, task_queue)
        results = [await one.result(), await two.result()]

    assert [r.phase for r in results] == [ReleasePhase.COMPLETED, ReleasePhase.COMPLETED]
    assert ssm_values(aws, ["/a", "/b"]) == {"/a": "new", "/b": "new"}


async def test_pause_reaching_a_wave_that_has_just_ended_still_pauses_the_release_once(
    time_skipping_env, aws, make_worker, task_queue
):
    """The release signals a wave child that has ended (terminated here; the time-skipping
    server does not tell the release): the pause stands, and repeating it is refused."""
    env = time_skipping_env
    seed(aws, {PARAM: "2.3.1"})
    plan = make_plan(
        [ssm("api", PARAM, "2.4.0")],
        [{"name": "canary", "department": "finance", "targets": ["api"], "bake": "2h"}],
    )
    async with make_worker(env, aws):
        handle = await start_release(env.client, plan, task_queue)
        await wait_for(handle, lambda s: s.wave("canary").phase == WavePhase.BAKING)
        await env.client.get_workflow_handle(wave_workflow_id(plan.id, "canary", 1)).terminate()
        result = await signed_update(
            handle, ReleaseWorkflow.pause, OperatorInput(actor="alice", reason="checking")
        )
        again = await update_refusal(
            signed_update(
                handle, ReleaseWorkflow.pause, OperatorInput(actor="alice", reason="checking")
            )
        )
        status = await handle.query(ReleaseWorkflow.status)

    assert result.message == "release paused at the next safe point"
    assert again == f"release {plan.id} is already paused"
    assert status.paused and len(events(status, "paused")) == 1


async def preflights_run(env, workflow_id: str) -> int:  # type: ignore[no-untyped-def]
    """How many preflights a workflow ran, read from its history."""
    return (await activities_run(env.client, workflow_id)).count(PREFLIGHT)


async def test_a_wave_checks_aws_again_only_when_time_passed_since_the_releases_preflight(
    time_skipping_env, aws, make_worker, task_queue
):
    env = time_skipping_env
    seed(aws, {PARAM: "2.3.1", "/payments/later": "a"})
    plan = make_plan(
        [ssm("api", PARAM, "2.4.0"), ssm("later", "/payments/later", "b")],
        [
            {"name": "now", "department": "finance", "targets": ["api"]},
            {"name": "gated", "department": "finance", "targets": ["later"], "after": ["now"],
             "approval": {"groups": {"finance-cab": 1}}},
        ],
    )  # fmt: skip
    async with make_worker(env, aws):
        handle = await start_release(env.client, plan, task_queue)
        await wait_for(handle, lambda s: s.wave("gated").phase == WavePhase.AWAITING_APPROVAL)
        await env.sleep(timedelta(hours=3))  # the approver takes a while
        await approve(handle, "gated", "bob")
        assert (await handle.result()).phase == ReleasePhase.COMPLETED
    assert ssm_values(aws, [PARAM, "/payments/later"]) == {PARAM: "2.4.0", "/payments/later": "b"}
    # The first wave started right after the release's own preflight: no second read of
    # the same resources. The gated one started hours later: it checked its own again.
    assert await preflights_run(env, plan.id) == 1
    assert await preflights_run(env, wave_workflow_id(plan.id, "now", 1)) == 0
    assert await preflights_run(env, wave_workflow_id(plan.id, "gated", 1)) == 1
