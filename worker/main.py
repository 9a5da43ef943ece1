"""Build and run a relman worker against any Temporal (dev server, cluster, Cloud)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.aws import AwsClients
from activities.health import HealthActivities
from activities.notify import NotifyActivities, defaults_from_env
from activities.release import TargetActivities
from activities.releases import ReleaseActivities
from common.connection import task_queue, temporal
from common.errors import BadInput, CliError
from models.plan import Notifications
from worker import telemetry
from workflows.release import ReleaseWorkflow
from workflows.wave import WaveWorkflow

# boto3 calls block, so activities run on threads; AWS latency, not CPU, bounds them.
ACTIVITY_THREADS = 32
# Workflow-task long polls. The SDK's core gives the task queue itself polls x ratio of them
# (at least 1) and this worker's sticky queue the rest (at least 1): here 10 and 1. The first
# task of every new workflow (each wave, as soon as its gate is approved) only ever arrives
# on the task queue; the SDK's defaults (5 polls, ratio 0.2) leave it one poll while cached
# workflows' tasks get four. Measured against other splits in docs/benchmarks.md.
WORKFLOW_TASK_POLLS = 10
NONSTICKY_TO_STICKY_POLL_RATIO = 1.0

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
log = logging.getLogger("relman.worker")


def build_worker(
    client: Client,
    queue: str,
    aws: AwsClients,
    executor: concurrent.futures.ThreadPoolExecutor,
    notify_defaults: Notifications | None = None,
    *,
    stand_ins: Sequence[Callable[..., Any]] = (),
    **options: Any,
) -> Worker:
    """A worker for ``queue`` running releases whose activities use ``aws``.

    ``notify_defaults`` is where notifications of plans without a ``notifications`` section
    go (none: they are not sent). ``stand_ins`` replace the activities of the same function
    name (tests: an activity that hangs or crashes); ``options`` go to ``Worker`` as they are.
    """
    replaced = {fn.__name__ for fn in stand_ins}
    activities = [
        *TargetActivities(aws).all(),
        *HealthActivities(aws).all(),
        *ReleaseActivities(client).all(),
        *NotifyActivities(aws, notify_defaults).all(),
    ]
    return Worker(
        client,
        task_queue=queue,
        workflows=[ReleaseWorkflow, WaveWorkflow],
        activities=[*(a for a in activities if a.__name__ not in replaced), *stand_ins],
        activity_executor=executor,
        max_concurrent_activities=ACTIVITY_THREADS,
        interceptors=telemetry.worker_interceptors(client),
        **(
            {
                "max_concurrent_workflow_task_polls": WORKFLOW_TASK_POLLS,
                "nonsticky_to_sticky_poll_ratio": NONSTICKY_TO_STICKY_POLL_RATIO,
            }
            | options
        ),
    )


async def run_worker(queue: str | None = None) -> None:
    """Connect through Temporal's standard configuration and run until SIGINT/SIGTERM."""
    try:
        notify_defaults = defaults_from_env()
    except ValueError as exc:
        raise BadInput(f"worker configuration: {exc}") from None
    runtime = telemetry.configure_worker()
    queue = queue or task_queue()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # A Temporal that does not answer is a message naming its address, not a traceback.
    async with temporal(runtime) as client:
        with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
            worker = build_worker(client, queue, AwsClients.from_env(), executor, notify_defaults)
            log.info("relman worker polling task queue %r", queue)
            async with worker:
                await stop.wait()
    log.info("relman worker stopped")


def main() -> None:
    """Entry point of ``python -m worker``: errors are one line and an exit code."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        asyncio.run(run_worker())
    except CliError as exc:
        log.error("%s", exc)
        raise SystemExit(exc.exit_code) from None
