"""relman's own metrics, recorded from workflow code through the OpenTelemetry metrics API.

Why from workflow code, through OpenTelemetry: the workflow is where a release starts and
ends, a gate is decided and a wave or rollback finishes, with deterministic workflow time
to measure them by. Temporal's ``workflow.metric_meter()`` would report into the SDK
runtime, but a runtime has a single metrics sink (Prometheus, OTLP *or* a buffer), and
relman gives that sink to the SDK's own metrics on the worker's Prometheus endpoint. So
relman's metrics go through the OpenTelemetry API, to whatever ``OTEL_METRICS_EXPORTER``
names (``worker.telemetry``), with the replay behaviour of ``workflow.metric_meter()``:

- Instruments come from ``temporalio.contrib.opentelemetry.ReplaySafeMeterProvider``, which
  drops recordings made while a workflow replays history. A release counted when it
  started is not counted again when another worker replays it after a restart.
- Recording issues no workflow command, so it needs no ``workflow.patched()`` and leaves
  recorded histories replaying as before.
- Durations are differences of ``workflow.now()``: the workflow's own clock, which in
  Temporal's time-skipping tests is days long where the wall clock took milliseconds.

Workflow modules import it as ``import common.metrics as metrics`` inside
``workflow.unsafe.imports_passed_through()``: the sandbox must use this module as loaded in
the worker process (with the meter provider it was given), not a copy of its own. It lives
outside ``workflows/`` because it is not workflow code: it holds process-wide state behind
a lock, which the determinism rule for ``workflows/`` forbids.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from opentelemetry import metrics as otel_metrics
from temporalio.contrib.opentelemetry import ReplaySafeMeterProvider

METER_NAME = "relman"

RELEASES_STARTED = "relman.releases.started"
RELEASES_FINISHED = "relman.releases.finished"
APPROVAL_WAIT = "relman.approval.wait.duration"
WAVE_ROLLOUT = "relman.wave.rollout.duration"
ROLLBACK = "relman.rollback.duration"

# Bucket bounds in seconds. Releases live for days; the SDK's default buckets end at
# 10,000 s (under 3 h), which would lump every overnight approval wait together.
MINUTE, HOUR = 60.0, 3600.0
APPROVAL_WAIT_BUCKETS = [m * MINUTE for m in (1, 5, 15, 30)] + [
    h * HOUR for h in (1, 4, 12, 24, 48, 96, 168)
]
WAVE_ROLLOUT_BUCKETS = (
    [10.0, 30.0]
    + [m * MINUTE for m in (1, 5, 15, 30)]
    + [h * HOUR for h in (1, 2, 4, 12, 24, 48, 168)]
)
ROLLBACK_BUCKETS = [1.0, 5.0, 10.0, 30.0] + [m * MINUTE for m in (1, 2, 5, 15, 60)]


class ReleaseMetrics:
    """The instruments of relman's metrics, on one meter provider."""

    def __init__(self, provider: otel_metrics.MeterProvider) -> None:
        meter = ReplaySafeMeterProvider(provider).get_meter(METER_NAME)
        self.started = meter.create_counter(
            RELEASES_STARTED, unit="{release}", description="Releases started."
        )
        self.finished = meter.create_counter(
            RELEASES_FINISHED,
            unit="{release}",
            description="Releases ended, by outcome: completed, rolled_back, rejected, "
            "failed, cancelled.",
        )
        self.approval_wait = meter.create_histogram(
            APPROVAL_WAIT,
            unit="s",
            description="How long a wave's approval gate waited until it was decided.",
            explicit_bucket_boundaries_advisory=APPROVAL_WAIT_BUCKETS,
        )
        self.wave_rollout = meter.create_histogram(
            WAVE_ROLLOUT,
            unit="s",
            description="How long a wave's rollout (its child workflow) ran, by outcome.",
            explicit_bucket_boundaries_advisory=WAVE_ROLLOUT_BUCKETS,
        )
        self.rollback = meter.create_histogram(
            ROLLBACK,
            unit="s",
            description="How long a rollback took, until every change was compensated.",
            explicit_bucket_boundaries_advisory=ROLLBACK_BUCKETS,
        )


_lock = threading.Lock()
_provider: otel_metrics.MeterProvider | None = None
_instruments: ReleaseMetrics | None = None


def use_meter_provider(provider: otel_metrics.MeterProvider | None) -> None:
    """Record on ``provider`` from now on; None: the global one (``set_meter_provider``)."""
    global _provider, _instruments
    with _lock:
        _provider, _instruments = provider, None


def _metrics() -> ReleaseMetrics:
    global _instruments
    with _lock:
        if _instruments is None:
            # The global provider is a proxy until worker.telemetry sets the real one;
            # instruments made from it now still record there once it is set.
            _instruments = ReleaseMetrics(_provider or otel_metrics.get_meter_provider())
        return _instruments


def release_started(application: str) -> None:
    """A release started."""
    _metrics().started.add(1, {"application": application})


def release_finished(application: str, outcome: str) -> None:
    """A release ended ``outcome`` (its final phase)."""
    _metrics().finished.add(1, {"application": application, "outcome": outcome})


def approval_waited(
    application: str, wave: str, department: str, decision: str, waited: timedelta
) -> None:
    """A gate was decided: ``approved``, ``rejected``, ``timed_out`` or ``stopped``."""
    _metrics().approval_wait.record(
        waited.total_seconds(),
        {"application": application, "wave": wave, "department": department, "decision": decision},
    )


def wave_rolled_out(
    application: str, wave: str, department: str, outcome: str, took: timedelta
) -> None:
    """A wave's child workflow ended ``completed``, ``failed`` or ``stopped``."""
    _metrics().wave_rollout.record(
        took.total_seconds(),
        {"application": application, "wave": wave, "department": department, "outcome": outcome},
    )


def rollback_finished(application: str, took: timedelta) -> None:
    """A rollback compensated every change it had to."""
    _metrics().rollback.record(took.total_seconds(), {"application": application})
