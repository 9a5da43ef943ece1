"""``python -m worker`` for the crash tests, with the two waits a SIGKILL causes made short.

A worker killed outright tells Temporal nothing. The server notices an activity attempt the
worker was running only when that attempt's start-to-close timeout expires (5 minutes for an
apply or a compensation), and a workflow cached on the worker only when its sticky queue's
schedule-to-start timeout expires (10 s). Temporal's time-skipping server would skip those
waits; the dev server the crash tests run on keeps real time. So this module runs relman's
own worker (``worker.main.main``: same workflows, activities, configuration from the
environment) with:

- ``RELMAN_RELIABILITY_ATTEMPT_SECONDS``: the start-to-close timeout of activities that do
  not heartbeat (snapshot, apply, compensate, alarm check) capped at this many seconds (the
  AWS preflight at five times as many), and
  the retry backoff at a third of it (the same number of attempts, closer together);
- ``RELMAN_RELIABILITY_STICKY_SECONDS``: the sticky queue's schedule-to-start timeout.

Unset, it is ``python -m worker`` exactly. Neither changes what a release does, only how soon
a dead worker's share of it is handed to the next one; ``docs/reliability.md`` gives the
figures with the real timeouts too.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from typing import Any

from temporalio import worker as temporal_worker
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from models.preflight import PREFLIGHT

ATTEMPT_ENV = "RELMAN_RELIABILITY_ATTEMPT_SECONDS"
STICKY_ENV = "RELMAN_RELIABILITY_STICKY_SECONDS"


def _seconds(name: str) -> timedelta | None:
    value = float(os.environ.get(name) or 0)
    return timedelta(seconds=value) if value > 0 else None


ATTEMPT_CAP = _seconds(ATTEMPT_ENV)


# The AWS preflight reads every resource of the plan (two calls per SSM target: 86 for the
# failover scenario's 43 targets), read-only and before any crash point: on a loaded machine
# it needs longer than one apply.
PREFLIGHT_CAP_FACTOR = 5


def _shortened(input: Any) -> Any:
    """``input`` (an activity's or a local activity's) with its attempt capped at
    ATTEMPT_CAP and its retries closer together."""
    timeout = input.start_to_close_timeout
    cap = ATTEMPT_CAP
    if cap and input.activity == PREFLIGHT:
        cap = cap * PREFLIGHT_CAP_FACTOR
    heartbeat = getattr(input, "heartbeat_timeout", None)
    if cap and heartbeat is None and timeout and timeout > cap:
        input = dataclasses.replace(input, start_to_close_timeout=cap)
    policy = input.retry_policy
    if ATTEMPT_CAP and policy and (policy.maximum_interval or ATTEMPT_CAP) > ATTEMPT_CAP / 3:
        # The same attempts, closer together: an AWS endpoint that never answers fails
        # the wave in seconds rather than after relman's minutes of backoff.
        policy = dataclasses.replace(policy, maximum_interval=ATTEMPT_CAP / 3)
        input = dataclasses.replace(input, retry_policy=policy)
    return input


class _ShortAttempts(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> Any:
        return super().start_activity(_shortened(input))

    def start_local_activity(self, input: StartLocalActivityInput) -> Any:
        return super().start_local_activity(_shortened(input))


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_ShortAttempts(outbound))


class ShortAttempts(Interceptor):
    """Caps the start-to-close timeout of activities that do not heartbeat."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _Inbound


def main() -> None:
    import worker.main as relman_worker

    sticky = _seconds(STICKY_ENV)

    def worker(*args: Any, **options: Any) -> temporal_worker.Worker:
        if ATTEMPT_CAP:
            options["interceptors"] = [*options.get("interceptors", ()), ShortAttempts()]
        if sticky:
            options["sticky_queue_schedule_to_start_timeout"] = sticky
        return temporal_worker.Worker(*args, **options)

    relman_worker.Worker = worker  # type: ignore[misc,assignment]
    relman_worker.main()


if __name__ == "__main__":
    main()
