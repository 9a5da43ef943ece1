"""Whether a worker serves a task queue, for the commands that need one.

Temporal remembers, per task queue, each worker that polled it in the last 5 minutes
(``matching.PollerHistoryTTL``) and when it last did (``DescribeTaskQueue``). A live worker
keeps a long poll open, renewed at least every minute (the server ends an idle long poll
after one), so a last poll older than :data:`POLL_SILENCE_SECONDS` means no worker is there.
A younger one does not prove that one still is (it may have stopped since): commands that
need a worker ask the release itself (a Query, which only a worker answers) before relying
on one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from common.errors import BadInput

WORKER_WAIT_ENV = "RELMAN_WORKER_WAIT"
DEFAULT_WORKER_WAIT = "30s"
# Temporal ends an idle long poll after a minute and the worker polls again at once: a
# worker that has not polled for longer than this is not there.
POLL_SILENCE_SECONDS = 70.0
# How long Temporal remembers a worker that polled (matching.PollerHistoryTTL's default).
POLLER_MEMORY = "5 min"


def worker_wait(option: str | None = None) -> float:
    """Seconds a command waits for a worker: ``--wait-for-worker``, else
    ``RELMAN_WORKER_WAIT``, else 30 s (durations such as ``30s``, ``2m``; ``0`` waits not
    at all)."""
    from models.durations import parse_duration

    source, text = "--wait-for-worker", option
    if text is None:
        source, text = WORKER_WAIT_ENV, os.environ.get(WORKER_WAIT_ENV) or DEFAULT_WORKER_WAIT
    try:
        return 0.0 if text.strip() == "0" else parse_duration(text.strip().lower()).total_seconds()
    except ValueError as exc:
        raise BadInput(f"{source}: {exc}") from None


def seconds(value: float) -> str:
    """``30s``, ``1.5s``: a wait as the options spell it."""
    return f"{value:g}s"


@dataclass(frozen=True)
class TaskQueuePolls:
    """When a worker last polled a task queue for workflow tasks, as Temporal knows it."""

    task_queue: str
    checked_at: datetime
    last_poll: datetime | None = None
    # Why Temporal could not say (the server does not implement DescribeTaskQueue, or the
    # caller may not use it); None when it did.
    unknown: str | None = None

    @property
    def silent_for(self) -> float | None:
        """Seconds since the last poll, or None if no poll is remembered."""
        if self.last_poll is None:
            return None
        return max(0.0, (self.checked_at - self.last_poll).total_seconds())

    @property
    def polled(self) -> bool | None:
        """True if a worker polled lately enough to be there, None if Temporal could not say."""
        if self.unknown is not None:
            return None
        silent = self.silent_for
        return silent is not None and silent <= POLL_SILENCE_SECONDS

    def line(self) -> str:
        """``no worker has polled task queue 'relman' for 75 s`` and the like."""
        queue = repr(self.task_queue)
        silent = self.silent_for
        if self.unknown is not None:
            return f"Temporal did not say whether a worker polls task queue {queue}: {self.unknown}"
        if silent is None:
            return f"no worker has polled task queue {queue} in the last {POLLER_MEMORY}"
        if silent <= POLL_SILENCE_SECONDS:
            return f"a worker polled task queue {queue} {silent:.0f} s ago"
        return f"no worker has polled task queue {queue} for {silent:.0f} s"

    def to_json(self) -> dict[str, object]:
        silent = self.silent_for
        return {
            "task_queue": self.task_queue,
            "polled": self.polled,
            "last_poll": self.last_poll.isoformat() if self.last_poll else None,
            "seconds_since_last_poll": round(silent, 1) if silent is not None else None,
            "note": self.line(),
        }


async def task_queue_polls(client: Client, queue: str) -> TaskQueuePolls:
    """When a worker last polled ``queue`` for workflow tasks (releases run there)."""
    now = datetime.now(UTC)
    try:
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
    except RPCError as exc:
        return TaskQueuePolls(queue, now, unknown=exc.message)
    polls = [p.last_access_time.ToDatetime(UTC) for p in described.pollers]
    return TaskQueuePolls(queue, now, max(polls) if polls else None)
