"""Receivers for notification tests: an SNS topic with an SQS subscription on moto, and a
webhook on loopback that records each POST and answers with the statuses it is told."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from activities.aws import AwsClients


@dataclass
class Delivery:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Webhook:
    """What the receiver answers (``statuses`` in turn, then ``status``) and what it got."""

    url: str = ""
    status: int = 200
    statuses: list[int] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, delivery: Delivery) -> int:
        with self._lock:
            self.attempts += 1
            status = self.statuses.pop(0) if self.statuses else self.status
            if 200 <= status < 300:
                self.deliveries.append(delivery)
            return status


@contextmanager
def webhook_receiver(status: int = 200, statuses: list[int] | None = None) -> Iterator[Webhook]:
    """A receiver on 127.0.0.1 (a free port) for the duration of the block."""
    hook = Webhook(status=status, statuses=list(statuses or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"null")
            code = hook.answer(Delivery(self.path, dict(self.headers.items()), body))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T0KEN-secret"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def topic_with_queue(aws: AwsClients, name: str = "relman-notifications") -> tuple[str, str]:
    """An SNS topic and an SQS queue subscribed to it: (topic ARN, queue URL)."""
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return topic_arn, queue_url


@dataclass
class Published:
    """A message SNS delivered to the queue: our JSON, and the SNS envelope around it."""

    message: dict[str, Any]
    attributes: dict[str, Any]
    subject: str | None


def drain(aws: AwsClients, queue_url: str) -> list[Published]:
    """Every message in the queue now (and deleted from it), unwrapped from SNS's envelope."""
    sqs = aws.client("sqs")
    found: list[Published] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return found
        for raw in batch:
            envelope = json.loads(raw["Body"])
            found.append(
                Published(
                    json.loads(envelope["Message"]),
                    {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()},
                    envelope.get("Subject"),
                )
            )
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=raw["ReceiptHandle"])
