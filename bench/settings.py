"""What a benchmark run measures and how often: the command line's flags, as one object."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Settings:
    """Sizes and run counts; ``smoke`` gives tiny ones that finish in seconds."""

    runs: int = 5
    sizes: list[int] = field(default_factory=lambda: [10, 50, 200])
    parked: int = 1000
    parked_runs: int = 3
    # parked: each worker's RELMAN_WORKER_MAX_CACHED_WORKFLOWS (None: the worker's default)
    # and how many workers poll the task queue.
    cache: int | None = None
    workers: int = 1
    # Approval Updates in flight at once while approving the parked releases: one share of
    # them at each level, one after the other (the latency figures are per level).
    approval_concurrency: list[int] = field(default_factory=lambda: [10, 50])
    # parked: approve only this many releases per level of each group (cached, evicted),
    # leaving the rest parked (None: approve every release).
    approval_sample: int | None = None
    rollback_targets: int = 20
    bake_interval_seconds: int = 1
    multiday_runs: int = 5
    # checks: verify_decision calls per run; preflight targets and rounds over them per run.
    verify_calls: int = 1000
    preflight_targets: int = 20
    preflight_rounds: int = 10
    # checks: probes of each check kind (http, lambda_invoke, metric) per run.
    probe_rounds: int = 50
    # checks: releases submitted at once whose resource-lock acquisition is timed.
    lock_releases: int = 50
    # fleet: instances rolled out in batches of 10 %.
    fleet_instances: int = 100
    # Payloads as Temporal stores them: "encrypted" (AES-256-GCM, a key made for the run,
    # as relman deploys) or "clear" (no codec), to measure what encryption costs.
    payloads: str = "encrypted"
    # Record the parked benchmark's worker with py-spy (installed by hand) into this folder.
    profile_dir: str | None = None

    @classmethod
    def smoke(cls) -> Settings:
        return cls(
            runs=1,
            sizes=[3],
            parked=5,
            parked_runs=1,
            approval_concurrency=[2, 5],
            rollback_targets=3,
            multiday_runs=1,
            verify_calls=20,
            preflight_targets=2,
            preflight_rounds=1,
            probe_rounds=2,
            lock_releases=3,
            fleet_instances=10,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
