"""What a gate's targets hold now, read from AWS the way the worker snapshots them.

*My approvals* shows, beside the value the release will write, the value each target holds
now. It is read with the target kinds' own ``snapshot`` (``activities.targets``): the same
calls, the same region, account and role (assumed in the release's name, and only a role
the organisation policy allows for its application), and the same display, which never
holds a secret: a target the plan makes secret (a SecureString or ``value_from``) is not
read at all and shows ``****``, as does a parameter found to be a SecureString.

A page waits at most ``READ_TIMEOUT_SECONDS`` for AWS; what is not read by then is shown
as not read, and lands in the cache for the next page. Values are kept
``CACHE_SECONDS``, so a person reloading the page does not read AWS again each time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients, acting_for
from activities.targets import build_handlers
from activities.targets.ssm_parameter import SECRET_MASK
from models.plan import Target

# How long a page waits for AWS in all, and how long a value read is shown as current.
READ_TIMEOUT_SECONDS = 2.0
CACHE_SECONDS = 10.0
# Reads in flight at once, across every page being served.
READ_THREADS = 8
# A refusal or AWS error, as shown: its first line, this long at most.
PROBLEM_CHARS = 200
# Kinds whose snapshot is one or two reads of the resource: a fleet's would list and ask
# every instance, which is the wave's to do, not a page's.
LIVE_KINDS = frozenset(
    {"ssm_parameter", "lambda_alias", "elbv2_weights", "route53_weighted", "ecs_service",
     "s3_artifact"}
)  # fmt: skip
# Values kept at most; beyond, the cache starts again (a page reads what it shows anyway).
CACHE_SIZE = 20_000


@dataclass(frozen=True)
class Current:
    """A target's value now (``display``, never a secret), when it was read, or why not."""

    display: str | None
    read_at: datetime | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Wanted:
    """A target of a release whose current value a page shows."""

    release_id: str
    application: str
    target: Target

    @property
    def key(self) -> tuple[str, str]:
        return (self.release_id, self.target.name)


class CurrentValues:
    """Current values of release targets, read on a small thread pool and kept a while."""

    def __init__(
        self,
        aws: AwsClients,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = READ_TIMEOUT_SECONDS,
    ):
        self.handlers = build_handlers(aws)
        self.timeout = timeout
        self._clock = clock
        # Re-entrant: a read that is done already runs its callback in the caller's thread.
        self._lock = threading.RLock()
        self._cache: dict[tuple[str, str], tuple[float, Current]] = {}
        self._reading: dict[tuple[str, str], concurrent.futures.Future[Current]] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(
            READ_THREADS, thread_name_prefix="console-current"
        )

    def _read(self, wanted: Wanted) -> Current:
        handler = self.handlers.get(wanted.target.kind)
        if handler is None or wanted.target.kind not in LIVE_KINDS:
            return Current(
                None, problem=f"{wanted.target.kind} targets are read when the wave starts"
            )
        if getattr(wanted.target, "secret", False):
            # Nothing to show, so nothing to read: the console never decrypts a secret.
            return Current(SECRET_MASK, read_at=datetime.now(UTC))
        try:
            with acting_for(wanted.release_id, wanted.application):
                display = handler.snapshot(wanted.target).display
        except Exception as exc:  # any refusal or AWS error: shown, never raised
            text = exc.message if isinstance(exc, ApplicationError) else str(exc)
            first = (text.strip().splitlines() or [type(exc).__name__])[0]
            return Current(None, problem=first[:PROBLEM_CHARS])
        return Current(display or "-", read_at=datetime.now(UTC))

    def _done(self, key: tuple[str, str], future: concurrent.futures.Future[Current]) -> None:
        with self._lock:
            self._reading.pop(key, None)
            if not future.cancelled() and future.exception() is None:
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.clear()
                self._cache[key] = (self._clock(), future.result())

    async def read(self, wanted: Sequence[Wanted]) -> dict[tuple[str, str], Current]:
        """The current value of each of ``wanted``, by (release id, target name)."""
        now = self._clock()
        found: dict[tuple[str, str], Current] = {}
        pending: dict[tuple[str, str], concurrent.futures.Future[Current]] = {}
        with self._lock:
            for item in wanted:
                cached = self._cache.get(item.key)
                if cached is not None and now - cached[0] < CACHE_SECONDS:
                    found[item.key] = cached[1]
                    continue
                reading = self._reading.get(item.key)
                if reading is None:
                    reading = self._pool.submit(self._read, item)
                    self._reading[item.key] = reading
                    reading.add_done_callback(partial(self._done, item.key))
                pending[item.key] = reading
        if pending:
            waiting = {asyncio.wrap_future(f): key for key, f in pending.items()}
            done, _ = await asyncio.wait(waiting, timeout=self.timeout)
            late = f"not read within {self.timeout:g} s (AWS is slow to answer; reload)"
            for answer, key in waiting.items():
                found[key] = answer.result() if answer in done else Current(None, problem=late)
        return found

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
