"""``relman worker``: run a worker against any Temporal."""

from __future__ import annotations

from typing import Annotated

import typer


def worker(
    task_queue: Annotated[
        str | None, typer.Option("--task-queue", help="default: $RELMAN_TASK_QUEUE or relman")
    ] = None,
) -> None:
    """Run a relman worker (Temporal address from TEMPORAL_ADDRESS / profiles)."""
    import asyncio
    import logging

    from worker.main import LOG_FORMAT, run_worker

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    asyncio.run(run_worker(task_queue))
