"""Container health check for ``relman worker``: healthy while this host's worker polls.

Asks Temporal, configured exactly as the worker is (``TEMPORAL_*`` variables or a
``temporal.toml`` profile, ``RELMAN_TASK_QUEUE``), which pollers it has seen on relman's
workflow task queue, and looks for one from this host that polled recently. An open port or a
live process would not show that the worker can reach Temporal and is taking work.

The SDK's default worker identity is ``<pid>@<hostname>``, and a container's hostname is its
own, so each replica checks itself. Exit status 0: healthy, 1: not.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from common.connection import connect_config, task_queue

# A worker's long poll lasts about a minute and the next starts at once, so a live worker's
# last poll is never much older than that.
RECENT = timedelta(minutes=2)
CHECK_TIMEOUT_SECONDS = 10.0


async def polling(host: str) -> bool:
    """True if a worker on ``host`` polled relman's workflow task queue recently."""
    client = await Client.connect(**connect_config())
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue()),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    now = datetime.now(UTC)
    return any(
        poller.identity.endswith(f"@{host}")
        and now - poller.last_access_time.ToDatetime(UTC) < RECENT
        for poller in response.pollers
    )


def main() -> int:
    host = socket.gethostname()
    try:
        healthy = asyncio.run(asyncio.wait_for(polling(host), CHECK_TIMEOUT_SECONDS))
    except Exception as exc:  # any failure to ask Temporal means "not healthy"
        print(f"unhealthy: cannot ask Temporal about task queue {task_queue()!r}: {exc}")
        return 1
    finally:
        # Release the Temporal client before the interpreter shuts down: dropping it during
        # finalization aborts the process (the same care as client.cli.main).
        gc.collect()
    if not healthy:
        print(f"unhealthy: no worker on {host} polls task queue {task_queue()!r}")
        return 1
    print(f"healthy: a worker on {host} polls task queue {task_queue()!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
