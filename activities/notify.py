"""Release notifications: one JSON message, published to an SNS topic and/or POSTed to a
webhook, as the plan's ``notifications`` section (or else the worker's defaults) says.

Delivery is at least once: the message's ``id`` lets a receiver drop a repeat. A plan's
webhook is POSTed only to addresses it may reach (activities.webhook_addresses); what goes
into the release timeline about a failed POST is its class (HTTP 4xx, 5xx, network), the
details go to the worker's log.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients, acting_for
from activities.errors import error_code, is_permanent
from activities.policy import PolicyReader
from activities.webhook_addresses import (
    AddressRefused,
    HostUnresolved,
    IPNetwork,
    Resolved,
    checked_addresses,
)
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
from models.policy import notification_violations

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


class WebhookRefused(Exception):
    """A plan's webhook resolves to an address webhooks may not reach."""


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
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a port at all: nothing of it is worth showing
        port = ""
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


# The worker's own default webhook (the platform team's choice): any address, any proxy.
_OPENER = urllib.request.build_opener(_NoRedirects)


def _connect(
    addresses: Sequence[Resolved],
    _host_port: tuple[str, int],
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """``socket.create_connection`` to addresses already resolved and checked."""
    errors: list[OSError] = []
    for family, kind, proto, sockaddr in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is None or isinstance(timeout, int | float):  # not the "default" marker
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            errors.append(exc)
    raise errors[-1]


class _Checked:
    """An HTTP(S) connection to checked addresses rather than to a second lookup of its
    host, which DNS could answer differently (rebinding). The host still goes into the
    Host header and, over TLS, the SNI and the certificate's verification."""

    def __init__(self, *args: Any, addresses: Sequence[Resolved], **kwargs: Any):
        super().__init__(*args, **kwargs)
        # http.client's hook for opening the socket (HTTPSConnection wraps what it returns).
        self._create_connection = functools.partial(_connect, addresses)


class _CheckedHTTPConnection(_Checked, http.client.HTTPConnection):
    pass


class _CheckedHTTPSConnection(_Checked, http.client.HTTPSConnection):
    pass


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, addresses: Sequence[Resolved]):
        super().__init__()
        self.addresses = addresses

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_CheckedHTTPConnection, addresses=self.addresses)
        return self.do_open(connection, req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, addresses: Sequence[Resolved]):
        super().__init__()
        self.addresses = addresses

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_CheckedHTTPSConnection, addresses=self.addresses)
        return self.do_open(connection, req)


def _checked_opener(addresses: Sequence[Resolved]) -> urllib.request.OpenerDirector:
    """An opener that reaches only ``addresses``: no proxy (it would look the host up
    again), no redirects."""
    return urllib.request.build_opener(
        _NoRedirects,
        urllib.request.ProxyHandler({}),
        _CheckedHTTPHandler(addresses),
        _CheckedHTTPSHandler(addresses),
    )


class NotifyActivities:
    """Deliver release notifications; the worker passes its AWS clients, its defaults and
    the internal networks plans' webhooks may reach (``RELMAN_WEBHOOK_ALLOW_NETWORKS``)."""

    def __init__(
        self,
        aws: AwsClients,
        defaults: Notifications | None = None,
        webhook_timeout: timedelta = WEBHOOK_TIMEOUT,
        webhook_networks: Sequence[IPNetwork] = (),
        policy: PolicyReader | None = None,
    ):
        self.aws = aws
        self.defaults = defaults
        self.webhook_timeout = webhook_timeout
        self.webhook_networks = tuple(webhook_networks)
        # The organisation policy in force: a plan's topic and webhook host are checked
        # against it again at each send (the policy may have changed since submit).
        self.policy = policy

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
        if input.destinations is not None and self.policy is not None:
            refused = notification_violations(
                self.policy.current(), notification.application, input.destinations
            )
            if refused:
                raise ApplicationError(
                    f"not sent: {'; '.join(refused)}",
                    type=NotificationError.__name__,
                    non_retryable=True,
                )
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
                with acting_for(notification.release_id, notification.application):
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
        where = redacted(url)
        opener = _OPENER
        # The worker's default webhook is the platform team's: only a plan's is checked.
        if self.defaults is None or url != self.defaults.webhook_url:
            opener = _checked_opener(self._addresses(url, where))
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
        # The timeline says only how a POST failed (its HTTP class, or the network): the
        # status, body or socket error of an internal service is no business of whoever
        # wrote the plan. The worker's log has the details.
        try:
            with opener.open(request, timeout=self.webhook_timeout.total_seconds()) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            activity.logger.warning(
                "webhook %s unreachable: %s", where, getattr(exc, "reason", None) or exc
            )
            raise ApplicationError(
                f"webhook {where} failed (network)", type=WebhookError.__name__
            ) from None
        if 200 <= status < 300:
            return
        activity.logger.warning("webhook %s answered HTTP %s", where, status)
        retryable = status >= 500 or status in RETRYABLE_HTTP
        raise ApplicationError(
            f"webhook {where} failed (HTTP {status // 100}xx)",
            type=WebhookError.__name__,
            non_retryable=not retryable,
        )

    def _addresses(self, url: str, where: str) -> list[Resolved]:
        """The addresses a plan's webhook resolves to now, every one checked: a host may
        resolve differently than at the release's preflight (DNS rebinding)."""
        try:
            return checked_addresses(url, self.webhook_networks)
        except AddressRefused as exc:
            activity.logger.warning("webhook %s refused: %s", where, exc)
            raise ApplicationError(
                f"webhook {where} refused: {exc}",
                type=WebhookRefused.__name__,
                non_retryable=True,
            ) from None
        except HostUnresolved as exc:
            activity.logger.warning("webhook %s unreachable: %s", where, exc)
            raise ApplicationError(
                f"webhook {where} failed (network)", type=WebhookError.__name__
            ) from None

    @activity.defn(name=NOTIFY_DESTINATIONS)
    def notification_destinations(self, input: NotifyDestinationsInput) -> NotifyDestinationsResult:
        """Whether this worker has default destinations (for plans that name none)."""
        return NotifyDestinationsResult(configured=self.defaults is not None)

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [self.notify, self.notification_destinations]
