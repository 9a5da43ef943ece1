"""Release notifications: one JSON message, published to an SNS topic and/or POSTed to a
webhook, as the plan's ``notifications`` section (or else the worker's defaults) says.

Delivery is at least once: the message's ``id`` lets a receiver drop a repeat.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients
from activities.errors import error_code, is_permanent
from models.messages import (
    NOTIFY,
    NOTIFY_DESTINATIONS,
    Notification,
    NotifyDestinationsInput,
    NotifyDestinationsResult,
    NotifyInput,
    NotifyResult,
)
from models.plan import Notifications

SNS_TOPIC_ENV = "RELMAN_NOTIFY_SNS_TOPIC_ARN"
WEBHOOK_URL_ENV = "RELMAN_NOTIFY_WEBHOOK_URL"
WEBHOOK_TIMEOUT = timedelta(seconds=10)
USER_AGENT = "relman-notify/1"
# HTTP answers that a later attempt may not get: timeouts, throttling (and every 5xx).
RETRYABLE_HTTP = frozenset({408, 425, 429})
# SNS codes retrying cannot fix, beyond the ones every AWS service shares (activities.errors).
SNS_PERMANENT_CODES = frozenset(
    {"InvalidParameter", "AuthorizationError", "EndpointDisabled", "KMSDisabled"}
)
# SNS subjects are at most 100 ASCII characters.
SUBJECT_LIMIT = 100


class NotificationError(Exception):
    """A notification destination refused the message in a way retrying cannot fix."""


class WebhookError(Exception):
    """A webhook did not accept the message (connection failure or non-2xx answer)."""


def defaults_from_env(environ: Mapping[str, str] = os.environ) -> Notifications | None:
    """The worker's default destinations (for plans without ``notifications``), if any.

    Raises ValueError naming the variable when one is malformed, so a worker refuses to
    start rather than failing every notification later.
    """
    env_names = {"sns_topic_arn": SNS_TOPIC_ENV, "webhook_url": WEBHOOK_URL_ENV}
    values = {field: environ.get(name) or None for field, name in env_names.items()}
    if not any(values.values()):
        return None
    try:
        return Notifications.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            variable = env_names.get(str(error["loc"][0])) if error["loc"] else None
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{variable or 'notifications'}: {message}")
        raise ValueError("; ".join(problems)) from None


def redacted(url: str) -> str:
    """A webhook URL as results and errors show it: its path and query often hold a token."""
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def sns_subject(notification: Notification) -> str:
    """A one-line subject for e-mail subscribers of the topic."""
    wave = f" wave {notification.wave}" if notification.wave else ""
    subject = f"relman {notification.release_id}: {notification.event}{wave}"
    return subject.encode("ascii", "replace").decode()[:SUBJECT_LIMIT]


def sns_attributes(notification: Notification) -> dict[str, dict[str, str]]:
    """Message attributes that subscription filter policies can match on.

    An approver group's subscription can filter on ``approver_groups`` (a String.Array).
    """
    strings = {
        "event": notification.event,
        "release_id": notification.release_id,
        "application": notification.application,
        "wave": notification.wave,
    }
    attributes = {
        name: {"DataType": "String", "StringValue": value}
        for name, value in strings.items()
        if value
    }
    if notification.approval is not None:
        arrays = {
            "approver_groups": sorted(notification.approval.groups),
            "approvers": notification.approval.eligible_approvers,
        }
        for name, items in arrays.items():
            if items:
                attributes[name] = {"DataType": "String.Array", "StringValue": json.dumps(items)}
    return attributes


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured: urllib would turn the POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class NotifyActivities:
    """Deliver release notifications; the worker passes its AWS clients and its defaults."""

    def __init__(
        self,
        aws: AwsClients,
        defaults: Notifications | None = None,
        webhook_timeout: timedelta = WEBHOOK_TIMEOUT,
    ):
        self.aws = aws
        self.defaults = defaults
        self.webhook_timeout = webhook_timeout

    @activity.defn(name=NOTIFY)
    def notify(self, input: NotifyInput) -> NotifyResult:
        """Send the notification to each destination that an earlier attempt did not reach.

        Destinations already reached are kept in the heartbeat details, which Temporal hands
        to the next attempt: a failing webhook does not publish to SNS again on each retry.
        """
        destinations = input.destinations or self.defaults
        notification = input.notification
        if destinations is None or notification.event not in destinations.events:
            return NotifyResult()
        body = notification.model_dump_json()
        details = activity.info().heartbeat_details
        done: list[str] = list(details[0]) if details else []
        sends = []
        if destinations.sns_topic_arn:
            sends.append((f"sns {destinations.sns_topic_arn}", self._publish))
        if destinations.webhook_url:
            sends.append((f"webhook {redacted(destinations.webhook_url)}", self._post))
        for where, send in sends:
            if where not in done:
                send(notification, body, destinations)
                done.append(where)
                activity.heartbeat(done)
        return NotifyResult(delivered=[where for where, _ in sends])

    def _publish(self, notification: Notification, body: str, to: Notifications) -> None:
        arn = to.sns_topic_arn
        assert arn is not None
        sns = self.aws.client("sns", to.topic_region, to.role_arn, to.external_id)
        params: dict[str, Any] = {
            "TopicArn": arn,
            "Message": body,
            "Subject": sns_subject(notification),
            "MessageAttributes": sns_attributes(notification),
        }
        if arn.endswith(".fifo"):
            # One release's notifications in order; SNS drops a retried attempt's repeat.
            params["MessageGroupId"] = notification.release_id
            params["MessageDeduplicationId"] = notification.id
        try:
            sns.publish(**params)
        except ClientError as exc:
            code = error_code(exc)
            if not (is_permanent(code) or code in SNS_PERMANENT_CODES):
                raise  # throttling, 5xx: the retry policy tries again
            message = exc.response.get("Error", {}).get("Message", "")
            raise ApplicationError(
                f"publishing to SNS topic {arn} failed: {code}"
                + (f": {message}" if message else ""),
                type=NotificationError.__name__,
                non_retryable=True,
            ) from exc

    def _post(self, notification: Notification, body: str, to: Notifications) -> None:
        url = to.webhook_url
        assert url is not None
        request = urllib.request.Request(
            url,
            data=body.encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-Relman-Event": notification.event,
                "X-Relman-Delivery": notification.id,
            },
        )
        where = redacted(url)
        try:
            with _OPENER.open(request, timeout=self.webhook_timeout.total_seconds()) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApplicationError(
                f"webhook {where} unreachable: {reason}", type=WebhookError.__name__
            ) from None
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in RETRYABLE_HTTP
        raise ApplicationError(
            f"webhook {where} answered HTTP {status}",
            type=WebhookError.__name__,
            non_retryable=not retryable,
        )

    @activity.defn(name=NOTIFY_DESTINATIONS)
    def notification_destinations(self, input: NotifyDestinationsInput) -> NotifyDestinationsResult:
        """Whether this worker has default destinations (for plans that name none)."""
        return NotifyDestinationsResult(configured=self.defaults is not None)

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [self.notify, self.notification_destinations]
