"""The notify activity against moto over HTTP (SNS topic → SQS queue) and a local webhook."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import (
    SNS_TOPIC_ENV,
    WEBHOOK_URL_ENV,
    NotifyActivities,
    defaults_from_env,
)
from models.messages import ApprovalRequest, Notification, NotifyInput
from models.plan import Notifications
from tests.conftest import free_port
from tests.notify_receivers import drain, topic_with_queue, webhook_receiver

MISSING_TOPIC = "arn:aws:sns:us-east-1:123456789012:no-such-topic"


def approval_needed() -> Notification:
    return Notification(
        id="rel-42/1",
        sequence=1,
        release_id="rel-42",
        application="payments",
        version="2.4.0",
        event="approval_needed",
        wave="finance",
        message="wave finance awaiting approval from 1 of finance-cab",
        actor="relman",
        time=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        approval=ApprovalRequest(
            groups={"finance-cab": 1},
            eligible_approvers=["bob", "carol"],
            command="relman approve rel-42 --wave finance",
        ),
    )


def notify(aws, destinations: Notifications | None, defaults: Notifications | None = None, **info):  # type: ignore[no-untyped-def]
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, **info)
    activities = NotifyActivities(aws, defaults)
    return env.run(
        activities.notify,
        NotifyInput(notification=approval_needed(), destinations=destinations),
    )


def refusal(aws, destinations: Notifications) -> ApplicationError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApplicationError) as caught:
        notify(aws, destinations)
    return caught.value


def test_topic_subscribers_and_webhook_receive_the_same_json(aws):
    topic, queue = topic_with_queue(aws)
    expected = approval_needed().model_dump(mode="json")
    with webhook_receiver() as hook:
        result = notify(aws, Notifications(sns_topic_arn=topic, webhook_url=hook.url))

    [published] = drain(aws, queue)
    assert published.message == expected
    assert published.message["approval"]["command"] == "relman approve rel-42 --wave finance"
    assert published.attributes == {
        "event": "approval_needed",
        "release_id": "rel-42",
        "application": "payments",
        "wave": "finance",
        "approver_groups": '["finance-cab"]',
        "approvers": '["bob", "carol"]',
    }
    assert published.subject == "relman rel-42: approval_needed wave finance"
    [posted] = hook.deliveries
    assert posted.body == expected
    assert posted.path == "/hooks/T0KEN-secret"
    assert posted.headers["Content-Type"] == "application/json"
    assert posted.headers["X-Relman-Event"] == "approval_needed"
    # The result names where it went without the webhook's token.
    port = hook.url.split(":")[2].split("/")[0]
    assert result.delivered == [f"sns {topic}", f"webhook http://127.0.0.1:{port}/…"]


def test_webhook_answering_500_is_a_retryable_error_without_its_token(aws):
    with webhook_receiver(status=500) as hook:
        err = refusal(aws, Notifications(webhook_url=hook.url))
    assert not err.non_retryable
    assert err.type == "WebhookError"
    assert "answered HTTP 500" in err.message
    assert "T0KEN" not in err.message


def test_webhook_answering_404_is_not_retried(aws):
    with webhook_receiver(status=404) as hook:
        err = refusal(aws, Notifications(webhook_url=hook.url))
    assert err.non_retryable
    assert "answered HTTP 404" in err.message


def test_unreachable_webhook_is_retryable(aws):
    err = refusal(aws, Notifications(webhook_url=f"http://127.0.0.1:{free_port()}/hook"))
    assert not err.non_retryable
    assert "unreachable" in err.message


def test_a_topic_that_does_not_exist_is_not_retried_and_named(aws):
    err = refusal(aws, Notifications(sns_topic_arn=MISSING_TOPIC))
    assert err.non_retryable
    assert err.type == "NotificationError"
    assert err.message.startswith(f"publishing to SNS topic {MISSING_TOPIC} failed: NotFound")


def test_a_retry_skips_destinations_an_earlier_attempt_reached(aws):
    topic, queue = topic_with_queue(aws)
    with webhook_receiver() as hook:
        notify(
            aws,
            Notifications(sns_topic_arn=topic, webhook_url=hook.url),
            attempt=2,
            heartbeat_details=[[f"sns {topic}"]],
        )
    assert drain(aws, queue) == []
    assert len(hook.deliveries) == 1


def test_worker_defaults_apply_only_to_plans_without_notifications(aws):
    topic, queue = topic_with_queue(aws)
    defaults = Notifications(sns_topic_arn=topic)
    with webhook_receiver() as hook:
        notify(aws, None, defaults)
        notify(aws, Notifications(webhook_url=hook.url), defaults)
    assert len(drain(aws, queue)) == 1
    assert len(hook.deliveries) == 1


def test_events_outside_the_filter_and_no_destination_send_nothing(aws):
    topic, queue = topic_with_queue(aws)
    assert (
        notify(aws, Notifications(sns_topic_arn=topic, events=["release_finished"])).delivered == []
    )
    assert notify(aws, None).delivered == []
    assert drain(aws, queue) == []


def test_worker_defaults_come_from_the_environment():
    assert defaults_from_env({}) is None
    defaults = defaults_from_env(
        {SNS_TOPIC_ENV: MISSING_TOPIC, WEBHOOK_URL_ENV: "https://hooks.example.com/x"}
    )
    assert defaults == Notifications(
        sns_topic_arn=MISSING_TOPIC, webhook_url="https://hooks.example.com/x"
    )


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {SNS_TOPIC_ENV: "arn:aws:sqs:us-east-1:123456789012:q"},
            f"{SNS_TOPIC_ENV}: 'arn:aws:sqs:us-east-1:123456789012:q' is not an SNS topic ARN",
        ),
        ({WEBHOOK_URL_ENV: "ftp://example.com/x"}, f"{WEBHOOK_URL_ENV}: webhook_url must be"),
    ],
)
def test_malformed_worker_defaults_are_refused_naming_the_variable(env, error):
    with pytest.raises(ValueError) as caught:
        defaults_from_env(env)
    assert str(caught.value).startswith(error)
