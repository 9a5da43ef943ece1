"""The notify activity against moto over HTTP (SNS topic → SQS queue) and a local webhook.

The local webhook is on loopback: these activities may reach it because they are given
127.0.0.0/8 as an allowed network (a worker's RELMAN_WEBHOOK_ALLOW_NETWORKS), unless a test
says otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import (
    SNS_TOPIC_ENV,
    WEBHOOK_URL_ENV,
    NotifyActivities,
    defaults_from_env,
)
from activities.policy import PolicyReader
from activities.preflight import PreflightActivities
from activities.webhook_addresses import IPNetwork
from models.messages import ApprovalRequest, Notification, NotifyInput
from models.plan import Notifications
from models.preflight import PreflightInput
from tests.activities.test_webhook_addresses import resolving
from tests.conftest import LOOPBACK_NETWORKS, free_port
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


def notify(  # type: ignore[no-untyped-def]
    aws,
    destinations: Notifications | None,
    defaults: Notifications | None = None,
    networks: tuple[IPNetwork, ...] = LOOPBACK_NETWORKS,
    policy: PolicyReader | None = None,
    **info,
):
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, **info)
    activities = NotifyActivities(aws, defaults, webhook_networks=networks, policy=policy)
    return env.run(
        activities.notify,
        NotifyInput(notification=approval_needed(), destinations=destinations),
    )


def refusal(aws, destinations: Notifications, **kwargs) -> ApplicationError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApplicationError) as caught:
        notify(aws, destinations, **kwargs)
    return caught.value


def where(url: str) -> str:
    """The webhook as errors name it: scheme, host and port, not the token in its path."""
    return url.split("/hooks/")[0] + "/…"


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


def test_a_destination_the_policy_no_longer_allows_is_not_sent_to(aws, tmp_path):
    topic, queue = topic_with_queue(aws)
    policy = tmp_path / "policy.yaml"
    listed = (
        "version: v{n}\npeople: [{{id: alice, name: Alice}}]\napplications:\n"
        "  payments: {{sns_topics: [{topics}], webhook_hosts: [127.0.0.1]}}\n"
    )
    policy.write_text(listed.format(n=1, topics=f'"{topic}"'))
    clock = [0.0]
    reader = PolicyReader(str(policy), aws, clock=lambda: clock[0])
    with webhook_receiver() as hook:
        plan_destinations = Notifications(sns_topic_arn=topic, webhook_url=hook.url)
        notify(aws, plan_destinations, policy=reader)
        assert len(drain(aws, queue)) == 1 and len(hook.deliveries) == 1
        # The platform team takes the topic off the application's list mid-release.
        policy.write_text(listed.format(n=2, topics=""))
        clock[0] += 2
        with pytest.raises(ApplicationError) as refused:
            notify(aws, plan_destinations, policy=reader)
        assert refused.value.non_retryable
        assert refused.value.message == (
            f"not sent: notifications.sns_topic_arn: topic {topic!r} is not one the "
            "organisation policy lets 'payments' notify"
        )
        assert drain(aws, queue) == [] and len(hook.deliveries) == 1  # nothing sent at all
        # The worker's own defaults are the platform team's: not checked against it.
        notify(aws, None, defaults=plan_destinations, policy=reader)
        assert len(hook.deliveries) == 2


def test_webhook_answering_500_is_a_retryable_error_naming_only_the_class(aws):
    with webhook_receiver(status=500) as hook:
        err = refusal(aws, Notifications(webhook_url=hook.url))
    assert not err.non_retryable
    assert err.type == "WebhookError"
    assert err.message == f"webhook {where(hook.url)} failed (HTTP 5xx)"


@pytest.mark.parametrize(("status", "retried"), [(404, False), (403, False), (429, True)])
def test_webhook_answering_4xx_names_only_the_class_and_is_retried_only_when_throttled(
    aws, status, retried
):
    with webhook_receiver(status=status) as hook:
        err = refusal(aws, Notifications(webhook_url=hook.url))
    assert err.non_retryable is not retried
    assert err.message == f"webhook {where(hook.url)} failed (HTTP 4xx)"


def test_unreachable_webhook_is_retryable_and_names_no_socket_error(aws):
    url = f"http://127.0.0.1:{free_port()}/hooks/T0KEN"
    err = refusal(aws, Notifications(webhook_url=url))
    assert not err.non_retryable
    assert err.message == f"webhook {where(url)} failed (network)"


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


# --- where a plan's webhook may post --------------------------------------------------------

HOOK_HOST = "hooks.relman.test"


def named(hook_url: str, host: str = HOOK_HOST, scheme: str = "http") -> str:
    """``hook_url`` (a receiver on 127.0.0.1) with ``host`` in place of its address."""
    return hook_url.replace("http://127.0.0.1", f"{scheme}://{host}")


def test_a_plan_webhook_on_loopback_is_refused_without_an_allowed_network(aws):
    with webhook_receiver() as hook:
        err = refusal(aws, Notifications(webhook_url=hook.url), networks=())
    assert err.non_retryable
    assert err.type == "WebhookRefused"
    assert err.message == (
        f"webhook {where(hook.url)} refused: host '127.0.0.1' resolves to a loopback "
        "address: webhooks may not reach it (RELMAN_WEBHOOK_ALLOW_NETWORKS lists the networks "
        "they may)"
    )
    assert hook.attempts == 0


def test_a_host_that_rebinds_to_loopback_after_the_preflight_is_refused_and_gets_nothing(
    aws, monkeypatch
):
    with webhook_receiver() as hook:
        url = named(hook.url)
        # At the release's start the host is public: the preflight lets the plan through.
        resolving(monkeypatch, HOOK_HOST, "93.184.216.34")
        preflight = PreflightActivities(aws).preflight(PreflightInput(webhook_url=url))
        assert preflight.problems == []
        # By the time a notification goes out, DNS answers with the worker's own loopback.
        resolving(monkeypatch, HOOK_HOST, "127.0.0.1")
        err = refusal(aws, Notifications(webhook_url=url), networks=())
    assert err.non_retryable
    assert err.message == (
        f"webhook {where(url)} refused: host '{HOOK_HOST}' resolves to a loopback "
        "address: webhooks may not reach it (RELMAN_WEBHOOK_ALLOW_NETWORKS lists the networks "
        "they may)"
    )
    assert hook.attempts == 0


def test_a_delivery_connects_to_the_address_it_checked_with_the_host_in_the_request(
    aws, monkeypatch
):
    lookups: list[str] = []
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host != HOOK_HOST:
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        # The first answer is checked; any later one would reach nobody (127.0.0.2: no
        # receiver listens there), so a second lookup would fail the delivery.
        address = "127.0.0.1" if len(lookups) == 1 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with webhook_receiver() as hook:
        result = notify(aws, Notifications(webhook_url=named(hook.url)))
    assert lookups == [HOOK_HOST]
    [posted] = hook.deliveries
    assert posted.headers["Host"] == HOOK_HOST + ":" + hook.url.split(":")[2].split("/")[0]
    assert result.delivered == [f"webhook {where(named(hook.url))}"]


def test_the_workers_own_default_webhook_is_not_checked(aws):
    with webhook_receiver() as hook:
        defaults = Notifications(webhook_url=hook.url)
        notify(aws, None, defaults, networks=())  # a plan without notifications
        notify(aws, Notifications(webhook_url=hook.url), defaults, networks=())  # same URL
    assert len(hook.deliveries) == 2


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None):  # type: ignore[no-untyped-def]
    """``handler`` on a free port of 127.0.0.1 (over TLS with ``tls``): its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_redirect_is_not_followed(aws):
    with webhook_receiver() as elsewhere:

        class Redirect(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.send_response(307)
                self.send_header("Location", elsewhere.url)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        with serving(Redirect) as port:
            url = f"http://127.0.0.1:{port}/hooks/T0KEN"
            err = refusal(aws, Notifications(webhook_url=url))
    assert err.non_retryable
    assert err.message == f"webhook {where(url)} failed (HTTP 3xx)"
    assert elsewhere.attempts == 0


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A certificate for ``host`` (its own CA) and its key: (certificate, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_over_tls_the_certificate_is_verified_for_the_host_not_the_address(
    aws, monkeypatch, tmp_path
):
    cert, key = self_signed(tmp_path, HOOK_HOST)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the default context trusts only it
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    hosts: list[str | None] = []
    tls.sni_callback = lambda sock, name, ctx: hosts.append(name)  # type: ignore[assignment,misc]
    got: list[str] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            got.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    other = "other.relman.test"  # the same address, but not the certificate's name
    resolving(monkeypatch, HOOK_HOST, "127.0.0.1")
    resolving(monkeypatch, other, "127.0.0.1")
    with serving(Receiver, tls) as port:
        notify(aws, Notifications(webhook_url=f"https://{HOOK_HOST}:{port}/hooks/T0KEN"))
        err = refusal(aws, Notifications(webhook_url=f"https://{other}:{port}/x"))
    # The TLS handshakes named the URL's host (SNI); the certificate was verified for it.
    assert hosts == [HOOK_HOST, other]
    assert got == [f"{HOOK_HOST}:{port}"]
    assert err.message == f"webhook https://{other}:{port}/… failed (network)"
    assert not err.non_retryable


def test_the_worker_log_has_what_the_timeline_does_not(aws, caplog):
    with caplog.at_level(logging.WARNING), webhook_receiver(status=418) as hook:
        refusal(aws, Notifications(webhook_url=hook.url))
    assert f"webhook {where(hook.url)} answered HTTP 418" in caplog.text
    assert "T0KEN" not in caplog.text
