"""What a worker process adds to relman's OpenTelemetry (``common.telemetry``): AWS calls
as spans, tracing on the worker, and the Temporal SDK's own metrics on a Prometheus endpoint.

- boto3 calls are child spans of the activity that made them
  (``opentelemetry-instrumentation-botocore``).
- ``RELMAN_METRICS_ADDRESS`` (``host:port``, default ``127.0.0.1:9464``; empty or ``off``
  disables) is where ``relman worker`` serves the SDK runtime's metrics for Prometheus.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry import trace
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from common.errors import BadInput
from common.telemetry import configure_metrics, configure_tracing, tracing_interceptor

if TYPE_CHECKING:
    from temporalio.client import Client

METRICS_ADDRESS_ENV = "RELMAN_METRICS_ADDRESS"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"
DISABLED = ("", "off", "none", "false", "0")

log = logging.getLogger("relman.telemetry")


def instrument_botocore(provider: trace.TracerProvider | None = None) -> None:
    """Trace every boto3 call as a span, a child of the activity span that made it.

    Instrumentation patches botocore process-wide, so it is done once per process."""
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

    instrumentor = BotocoreInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)


def worker_interceptors(client: Client) -> list[TracingInterceptor]:
    """The interceptors a worker adds: tracing, unless its client already traces (a
    worker takes over its client's interceptors, and two would trace everything twice)."""
    if any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"]):
        return []
    return [tracing_interceptor()]


def metrics_address(env: Mapping[str, str] = os.environ) -> str | None:
    """Where the worker serves Prometheus metrics (``RELMAN_METRICS_ADDRESS``); None: off."""
    address = env.get(METRICS_ADDRESS_ENV, DEFAULT_METRICS_ADDRESS).strip()
    if address.lower() in DISABLED:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise BadInput(
            f"{METRICS_ADDRESS_ENV}: expected host:port (like {DEFAULT_METRICS_ADDRESS}) "
            f"or off, got {address!r}"
        )
    return address


def prometheus_runtime(address: str | None) -> Runtime | None:
    """A Temporal runtime serving the SDK's metrics (``temporal_*``) on ``address``.

    Returns None (the default runtime, no endpoint) when ``address`` is None, or when it
    cannot be bound: a busy metrics port must not keep a worker from running releases."""
    if address is None:
        return None
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
    except ValueError as err:
        log.warning("Temporal SDK metrics not served on %s: %s", address, err)
        return None


def configure_worker() -> Runtime | None:
    """Everything a worker process needs: tracer and meter providers from ``OTEL_*``,
    boto3 instrumentation, and the runtime for its client (Prometheus endpoint)."""
    address = metrics_address()
    configure_tracing()
    configure_metrics()
    instrument_botocore()
    runtime = prometheus_runtime(address)
    if runtime is not None:
        log.info("Temporal SDK metrics for Prometheus on http://%s/metrics", address)
    return runtime
