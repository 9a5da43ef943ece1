"""``relman worker``: run a worker against any Temporal."""

from __future__ import annotations

from typing import Annotated

import typer


async def serve(task_queue: str | None) -> None:
    """Check that Temporal answers (a clear error if not), then run the worker."""
    from client.service import temporal
    from worker.main import run_worker

    async with temporal():  # a Temporal that does not answer is a message, not a traceback
        pass
    await run_worker(task_queue)


def worker(
    task_queue: Annotated[
        str | None, typer.Option("--task-queue", help="default: $RELMAN_TASK_QUEUE or relman")
    ] = None,
) -> None:
    """Run a relman worker (Temporal address from TEMPORAL_ADDRESS / profiles)."""
    import asyncio
    import logging

    from worker.main import LOG_FORMAT

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    asyncio.run(serve(task_queue))
