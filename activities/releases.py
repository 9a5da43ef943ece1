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

from models.messages import (
    FIND_OVERLAPPING_RELEASES,
    WAIT_FOR_RELEASES,
    FindOverlapsInput,
    OverlapsFound,
    RunningRelease,
    WaitForReleasesInput,
)

# How often a queued release looks whether the releases ahead of it have ended.
POLL_INTERVAL = timedelta(seconds=15)
# How long the overlap check waits for the release's own visibility record (and so, most
# likely, for those of releases started before it) before it looks.
SELF_VISIBLE_SECONDS = 10.0
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

    @activity.defn(name=FIND_OVERLAPPING_RELEASES)
    async def find_overlapping_releases(self, input: FindOverlapsInput) -> OverlapsFound:
        """Running releases that deploy one of the same resources, with their start times.

        Visibility is eventually consistent: the release first waits (briefly) until it can
        see itself, so that releases started before it are indexed too.
        """
        try:
            own = f"WorkflowId = '{input.release_id}'"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + SELF_VISIBLE_SECONDS
            while (await self.client.count_workflows(own)).count == 0 and loop.time() < deadline:
                await asyncio.sleep(0.2)
            found: dict[str, RunningRelease] = {}
            for query in input.queries:
                async for execution in self.client.list_workflows(query):
                    if execution.id != input.release_id:
                        found[execution.id] = RunningRelease(
                            release_id=execution.id, started_at=execution.start_time
                        )
        except RPCError as exc:
            if exc.status == RPCStatusCode.UNIMPLEMENTED:  # a server without visibility
                return OverlapsFound(visibility=False)
            raise
        return OverlapsFound(releases=sorted(found.values(), key=lambda r: r.release_id))

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [self.wait_for_releases, self.find_overlapping_releases]
