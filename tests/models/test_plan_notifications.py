"""The plan's ``notifications`` section: validation with field paths, and its IAM grant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models.iam import NOTIFY_CALLS, plan_policies
from models.loader import PlanError
from models.plan import NOTIFICATION_EVENTS, ReleasePlan
from models.preflight import preflight_input
from tests.helpers import make_plan, ssm, wave
from tests.models.test_iam import client_methods

TOPIC = "arn:aws:sns:eu-west-1:210987654321:releases"
ROLE = "arn:aws:iam::210987654321:role/notify"


def plan_with(notifications: dict[str, Any]) -> ReleasePlan:
    return make_plan([ssm("a", "/a", "1")], [wave("w", ["a"])], notifications=notifications)


def test_a_section_sends_every_event_unless_filtered_and_publishes_in_the_topics_region():
    section = plan_with({"sns_topic_arn": TOPIC, "webhook_url": "https://hooks.example.com/x"})
    assert section.notifications is not None
    assert section.notifications.events == list(NOTIFICATION_EVENTS)
    assert section.notifications.topic_region == "eu-west-1"
    assert plan_with({"webhook_url": "http://10.0.0.5:8080/"}).notifications is not None


@pytest.mark.parametrize(
    ("section", "error"),
    [
        (
            {"sns_topic_arn": "arn:aws:sqs:us-east-1:123456789012:q"},
            "notifications.sns_topic_arn: 'arn:aws:sqs:us-east-1:123456789012:q' is not an "
            "SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)",
        ),
        (
            {"webhook_url": "ftp://example.com/x"},
            "notifications.webhook_url: webhook_url must be an http:// or https:// URL with a host",
        ),
        (
            {"webhook_url": "https:///no-host"},
            "notifications.webhook_url: webhook_url must be an http:// or https:// URL with a host",
        ),
        ({}, "notifications: notifications need an sns_topic_arn, a webhook_url or both"),
        (
            {"webhook_url": "https://x.example/", "events": ["wave_begun"]},
            "notifications.events[0]: invalid value 'wave_begun'",
        ),
    ],
)
def test_a_bad_section_is_refused_naming_the_field(section, error):
    with pytest.raises(PlanError) as caught:
        plan_with(section)
    assert error in str(caught.value)


def test_plan_iam_grants_publishing_to_the_topic_in_the_notification_role():
    own, role = plan_policies(plan_with({"sns_topic_arn": TOPIC, "role_arn": ROLE}))
    assert role.role_arn == ROLE
    assert role.document()["Statement"] == [
        {
            "Sid": "PublishReleaseNotifications",
            "Effect": "Allow",
            "Action": ["sns:Publish"],
            "Resource": [TOPIC],
        }
    ]
    assume = next(s for s in own.statements if s.sid == "AssumeReleaseRoles")
    assert assume.resources == [ROLE]


def test_the_action_table_lists_the_calls_the_notify_activity_makes():
    source = (Path(__file__).parents[2] / "activities" / "notify.py").read_text()
    assert {call.method for call in NOTIFY_CALLS} == client_methods(source)


def test_the_release_preflight_checks_the_plans_webhook_and_a_waves_does_not():
    plan = plan_with({"webhook_url": "https://hooks.example.com/x"})
    assert preflight_input(plan).webhook_url == "https://hooks.example.com/x"
    assert preflight_input(plan, waves=["w"]).webhook_url is None
    assert preflight_input(plan_with({"sns_topic_arn": TOPIC})).webhook_url is None
