"""Build and run a relman worker against any Temporal (dev server, cluster, Cloud)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
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
from client.connection import connect, task_queue
from client.errors import BadInput
from models.plan import Notifications
from worker import telemetry
from workflows.release import ReleaseWorkflow
from workflows.wave import WaveWorkflow, wave_queue

# boto3 calls block, so activities run on threads; AWS latency, not CPU, bounds them.
# Activities at once per task queue; a worker polls two (releases and waves).
ACTIVITY_THREADS = 32

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
log = logging.getLogger("relman.worker")


class RelmanWorker:
    """The two workers of one relman worker process, run together.

    One polls the release's task queue (releases, and the waves of releases started before
    waves had a queue of their own), the other the waves' queue (``wave_queue``), so a wave's
    workflow tasks never wait behind the approvals and signals of every parked release.
    Both run every activity: an activity runs on the queue of the workflow that scheduled it.
    """

    def __init__(self, releases: Worker, waves: Worker):
        self.releases = releases
        self.waves = waves
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> RelmanWorker:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.releases)
            await stack.enter_async_context(self.waves)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()


def build_worker(
    client: Client,
    queue: str,
    aws: AwsClients,
    executor: concurrent.futures.ThreadPoolExecutor,
    notify_defaults: Notifications | None = None,
    *,
    stand_ins: Sequence[Callable[..., Any]] = (),
    **options: Any,
) -> RelmanWorker:
    """A worker for ``queue`` (and its waves' queue) running releases whose activities use
    ``aws``.

    ``notify_defaults`` is where notifications of plans without a ``notifications`` section
    go (none: they are not sent). ``stand_ins`` replace the activities of the same function
    name (tests: an activity that hangs or crashes); ``options`` go to both ``Worker``s as
    they are. ``executor`` runs the activities of both: give it 2 x ``ACTIVITY_THREADS``.
    """
    replaced = {fn.__name__ for fn in stand_ins}
    activities = [
        *TargetActivities(aws).all(),
        *HealthActivities(aws).all(),
        *ReleaseActivities(client).all(),
        *NotifyActivities(aws, notify_defaults).all(),
    ]

    def worker(task_queue: str, workflows: Sequence[type], **tuning: Any) -> Worker:
        return Worker(
            client,
            task_queue=task_queue,
            workflows=workflows,
            activities=[*(a for a in activities if a.__name__ not in replaced), *stand_ins],
            activity_executor=executor,
            max_concurrent_activities=ACTIVITY_THREADS,
            interceptors=telemetry.worker_interceptors(client),
            **(tuning | options),
        )

    return RelmanWorker(
        worker(queue, [ReleaseWorkflow, WaveWorkflow]),
        worker(
            wave_queue(queue),
            [WaveWorkflow],
            max_concurrent_workflow_task_polls=10,
            nonsticky_to_sticky_poll_ratio=1.0,
        ),
    )


async def run_worker(queue: str | None = None) -> None:
    """Connect through Temporal's standard configuration and run until SIGINT/SIGTERM."""
    try:
        notify_defaults = defaults_from_env()
    except ValueError as exc:
        raise BadInput(f"worker configuration: {exc}") from None
    runtime = telemetry.configure_worker()
    client = await connect(runtime=runtime)
    queue = queue or task_queue()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2 * ACTIVITY_THREADS) as executor:
        worker = build_worker(client, queue, AwsClients.from_env(), executor, notify_defaults)
        log.info("relman worker polling task queues %r and %r", queue, wave_queue(queue))
        async with worker:
            await stop.wait()
    log.info("relman worker stopped")


def main() -> None:
    """Entry point of ``python -m worker``: errors are one line and an exit code."""
    from client.commands.worker import serve
    from client.errors import CliError

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        asyncio.run(serve(None))
    except CliError as exc:
        log.error("%s", exc)
        raise SystemExit(exc.exit_code) from None
