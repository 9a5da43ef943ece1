"""Activities that look at other releases through Temporal (for ``queue: true`` plans)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from models.messages import WAIT_FOR_RELEASES, WaitForReleasesInput

# How often a queued release looks whether the releases ahead of it have ended.
POLL_INTERVAL = timedelta(seconds=15)
POLL_ENV = "RELMAN_QUEUE_POLL_SECONDS"


class ReleaseActivities:
    """Activities that need a Temporal client rather than AWS."""

    def __init__(self, client: Client):
        self.client = client
        seconds = os.environ.get(POLL_ENV)
        self.poll_interval = timedelta(seconds=float(seconds)) if seconds else POLL_INTERVAL

    @activity.defn(name=WAIT_FOR_RELEASES)
    async def wait_for_releases(self, input: WaitForReleasesInput) -> None:
        """Return once none of ``input.release_ids`` is running any more.

        Heartbeats each poll, so a worker crash is noticed and another worker takes over.
        """
        interval = input.poll_interval or self.poll_interval
        for release_id in input.release_ids:
            handle = self.client.get_workflow_handle(release_id)
            while True:
                try:
                    described = await handle.describe()
                except RPCError as exc:
                    if exc.status == RPCStatusCode.NOT_FOUND:
                        break
                    raise
                if described.status != WorkflowExecutionStatus.RUNNING:
                    break
                activity.heartbeat(release_id)
                await asyncio.sleep(interval.total_seconds())

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [self.wait_for_releases]
