"""Preflight cost per target against moto: ``python -m bench.preflight [TARGETS] [ROUNDS]``.

No Temporal: the preflight is one activity whose cost is its AWS calls, so this times
``PreflightActivities.preflight`` on one target at a time (half SSM parameters, half Lambda
aliases, as the other scenarios deploy) and prints the median and p99 per target, with the
AWS calls each kind makes. The moto server runs in its own process. The ``checks``
benchmark (``python -m bench checks``) runs :func:`measure` against the bench's moto.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from activities.preflight import PreflightActivities
from bench.fixtures import one_wave_plan, seed_targets
from bench.report import load_average, median, percentile
from bench.stack import AWS_MAX_ATTEMPTS, CountingAwsClients, MotoServer, use_local_aws_credentials
from models.preflight import PreflightInput, preflight_input


def main(targets: int = 20, rounds: int = 10) -> dict[str, Any]:
    """Time the preflight of each of ``targets`` targets ``rounds`` times, on a moto of its
    own."""
    use_local_aws_credentials()
    moto = MotoServer(Path(tempfile.mkdtemp(prefix="relman-bench-preflight-")))
    try:
        return measure(moto, targets, rounds)
    finally:
        moto.stop()


def measure(moto: MotoServer, targets: int, rounds: int) -> dict[str, Any]:
    """Seed ``targets`` targets in ``moto`` (reset first) and time the preflight of each of
    them ``rounds`` times: milliseconds per target, overall and by kind."""
    moto.reset()
    aws = CountingAwsClients(endpoint_url=moto.endpoint, max_attempts=AWS_MAX_ATTEMPTS)
    plan = one_wave_plan(seed_targets(aws, targets, "pf"))
    items = preflight_input(plan).targets
    activities = PreflightActivities(aws)
    activities.preflight(PreflightInput(targets=items))  # untimed: build the clients
    seconds: dict[str, list[float]] = {}
    calls: dict[str, int] = {}
    load = load_average()
    for _ in range(rounds):
        for item in items:
            aws.counter.take()
            began = time.perf_counter()
            result = activities.preflight(PreflightInput(targets=[item]))
            seconds.setdefault(item.target.kind, []).append(time.perf_counter() - began)
            calls[item.target.kind] = sum(aws.counter.take().values())
            if not result.ok:
                raise RuntimeError(f"preflight found problems: {result.problems}")
    every = [s for values in seconds.values() for s in values]
    return {
        "targets": targets,
        "rounds": rounds,
        "load_average": load,
        "per_target_ms": {
            "median": round(median(every) * 1000, 2),
            "p99": round(percentile(every, 99) * 1000, 2),
        },
        "by_kind": {
            kind: {
                "median_ms": round(median(values) * 1000, 2),
                "p99_ms": round(percentile(values, 99) * 1000, 2),
                "aws_calls": calls[kind],
            }
            for kind, values in seconds.items()
        },
    }


if __name__ == "__main__":
    print(json.dumps(main(*(int(a) for a in sys.argv[1:3])), indent=2))
