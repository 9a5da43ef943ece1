"""A release's notifications end to end: the real worker on the time-skipping server
publishes to an SNS topic (moto, with an SQS subscription) and POSTs to a local webhook,
and a destination that keeps failing never holds up or fails the release."""

from __future__ import annotations

from typing import Any

from models.status import ReleasePhase
from tests.helpers import (
    TWO_WAVE_BEFORE,
    approve,
    assert_replays,
    events,
    make_plan,
    reject,
    seed,
    ssm,
    start_release,
    status_of,
    two_wave_plan,
    wait_for_gate,
    wave,
)
from tests.notify_receivers import drain, topic_with_queue, webhook_receiver

TWO_WAVES = [
    ("approval_needed", "finance"),
    ("wave_started", "finance"),
    ("wave_completed", "finance"),
    ("approval_needed", "operations"),
    ("wave_started", "operations"),
    ("wave_completed", "operations"),
    ("release_finished", None),
]


def in_order(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Notifications are delivered concurrently: the sequence number restores their order.
    return sorted(messages, key=lambda m: m["sequence"])


async def test_two_wave_release_notifies_topic_and_webhook_of_each_step(
    time_skipping_env, aws, make_worker, task_queue
):
    seed(aws, TWO_WAVE_BEFORE)
    topic, queue = topic_with_queue(aws)
    with webhook_receiver() as hook:
        plan = two_wave_plan(notifications={"sns_topic_arn": topic, "webhook_url": hook.url})
        async with make_worker(time_skipping_env, aws):
            handle = await start_release(time_skipping_env.client, plan, task_queue)
            await wait_for_gate(handle, "finance")
            await approve(handle, "finance", "bob")
            await wait_for_gate(handle, "operations")
            await approve(handle, "operations", "dave")
            assert (await handle.result()).phase == ReleasePhase.COMPLETED
            status = await status_of(handle)

    published = in_order([p.message for p in drain(aws, queue)])
    posted = in_order([d.body for d in hook.deliveries])
    assert [(m["event"], m["wave"]) for m in published] == TWO_WAVES
    assert posted == published
    first, *_, last = published
    assert first == {
        "id": f"{plan.id}/1",
        "sequence": 1,
        "release_id": plan.id,
        "application": "payments",
        "version": "2.4.0",
        "event": "approval_needed",
        "wave": "finance",
        "message": "wave finance awaiting approval from 1 of finance-cab",
        "actor": "relman",
        "time": first["time"],
        "approval": {
            "groups": {"finance-cab": 1},
            "eligible_approvers": ["bob", "carol"],
            "command": f"relman approve {plan.id} --wave finance",
        },
        "outcome": None,
        "error": None,
    }
    assert published[3]["approval"]["eligible_approvers"] == ["dave", "erin"]
    assert (last["outcome"], last["message"]) == ("completed", "release ended completed")
    await assert_replays(handle)
    assert not events(status, "notification_failed")


async def test_a_webhook_that_always_fails_is_recorded_and_the_release_completes(
    time_skipping_env, aws, make_worker, task_queue
):
    seed(aws, {"/payments/api/version": "2.3.1"})
    topic, queue = topic_with_queue(aws)
    with webhook_receiver(status=503) as hook:
        plan = make_plan(
            [ssm("api", "/payments/api/version", "2.4.0")],
            [wave("finance", ["api"])],
            notifications={
                "sns_topic_arn": topic,
                "webhook_url": hook.url,
                "events": ["wave_completed", "release_finished"],
            },
        )
        async with make_worker(time_skipping_env, aws):
            handle = await start_release(time_skipping_env.client, plan, task_queue)
            assert (await handle.result()).phase == ReleasePhase.COMPLETED
            status = await status_of(handle)

    failed = events(status, "notification_failed")
    assert sorted(e.message.split(":")[0] for e in failed) == [
        "release_finished notification not delivered",
        "wave_completed notification not delivered",
    ]
    # The timeline says how the POST failed, not what the receiver answered.
    port = hook.url.split(":")[2].split("/")[0]
    assert {e.message.split(": ", 1)[1] for e in failed} == {
        f"webhook http://127.0.0.1:{port}/… failed (HTTP 5xx)"
    }
    assert hook.attempts == 2 * 5  # every attempt of the bounded retry policy
    # SNS got each notification once: retries only go to the destination that failed.
    published = [p.message["event"] for p in drain(aws, queue)]
    assert sorted(published) == ["release_finished", "wave_completed"]


async def test_a_rejected_release_notifies_only_the_filtered_rollback_and_end(
    time_skipping_env, aws, make_worker, task_queue
):
    seed(aws, TWO_WAVE_BEFORE)
    with webhook_receiver() as hook:
        plan = two_wave_plan(
            notifications={
                "webhook_url": hook.url,
                "events": ["rollback_started", "rollback_finished", "release_finished"],
            }
        )
        async with make_worker(time_skipping_env, aws):
            handle = await start_release(time_skipping_env.client, plan, task_queue)
            await wait_for_gate(handle, "finance")
            await approve(handle, "finance", "bob")
            await wait_for_gate(handle, "operations")
            await reject(handle, "operations", "erin", "ops not staffed")
            assert (await handle.result()).phase == ReleasePhase.REJECTED

    posted = in_order([d.body for d in hook.deliveries])
    assert [(m["event"], m["sequence"]) for m in posted] == [
        ("rollback_started", 1),
        ("rollback_finished", 2),
        ("release_finished", 3),
    ]
    assert posted[0]["message"] == "rolling back 2 change(s)"
    assert (posted[2]["outcome"], posted[2]["wave"]) == ("rejected", None)


async def _scheduled_activities(handle: Any) -> list[str]:
    history = await handle.fetch_history()
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


async def test_worker_defaults_notify_plans_without_a_section_and_nothing_is_scheduled_without(
    time_skipping_env, aws, activity_executor, task_queue
):
    from models.plan import Notifications
    from tests.trust import build_test_worker

    seed(aws, TWO_WAVE_BEFORE)
    with webhook_receiver() as hook:
        defaults = Notifications(webhook_url=hook.url)
        worker = build_test_worker(
            time_skipping_env.client, task_queue, aws, activity_executor, notify_defaults=defaults
        )
        async with worker:
            plan = two_wave_plan()  # no notifications section: the worker's defaults apply
            handle = await start_release(time_skipping_env.client, plan, task_queue)
            await wait_for_gate(handle, "finance")
            await reject(handle, "finance", "bob")
            assert (await handle.result()).phase == ReleasePhase.REJECTED
    assert [d.body["event"] for d in in_order_deliveries(hook)] == [
        "approval_needed",
        "release_finished",
    ]

    # A worker without defaults: the release asks once and schedules no notify activity.
    worker = build_test_worker(time_skipping_env.client, task_queue, aws, activity_executor)
    async with worker:
        plan = two_wave_plan(id=f"{plan.id}-quiet")
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        await wait_for_gate(handle, "finance")
        await reject(handle, "finance", "bob")
        assert (await handle.result()).phase == ReleasePhase.REJECTED
        assert "notify" not in await _scheduled_activities(handle)


def in_order_deliveries(hook: Any) -> list[Any]:
    return sorted(hook.deliveries, key=lambda d: d.body["sequence"])


async def test_a_plan_whose_webhook_reaches_the_workers_own_network_is_refused_at_start(
    time_skipping_env, aws, activity_executor, task_queue
):
    from tests.trust import build_test_worker

    seed(aws, {"/payments/api/version": "2.3.1"})
    with webhook_receiver() as hook:
        plan = make_plan(
            [ssm("api", "/payments/api/version", "2.4.0")],
            [wave("finance", ["api"])],
            notifications={"webhook_url": hook.url},
        )
        # A worker that lets webhooks reach no internal network (no RELMAN_WEBHOOK_ALLOW_NETWORKS).
        async with build_test_worker(time_skipping_env.client, task_queue, aws, activity_executor):
            handle = await start_release(time_skipping_env.client, plan, task_queue)
            outcome = await handle.result()

    port = hook.url.split(":")[2].split("/")[0]
    assert outcome.phase == ReleasePhase.FAILED
    assert outcome.error == (
        f"release {plan.id} refused: the AWS preflight found 1 problem(s): "
        f"notifications.webhook_url (http://127.0.0.1:{port}/…): host '127.0.0.1' resolves to "
        "a loopback address: webhooks may not reach it "
        "(RELMAN_WEBHOOK_ALLOW_NETWORKS lists the networks they may); it changed nothing"
    )
    assert hook.attempts == 0
    assert (
        aws.client("ssm").get_parameter(Name="/payments/api/version")["Parameter"]["Value"]
        == "2.3.1"
    )
