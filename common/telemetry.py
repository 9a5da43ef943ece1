"""OpenTelemetry providers from the standard ``OTEL_*`` variables, and Temporal's tracing
interceptor: what every relman process (the CLI and workers) configures.

- Traces: Temporal's ``TracingInterceptor`` on the client (``common.connection``) and the
  worker, so a release's workflow, its wave children, updates and activities form one
  trace, started by the client that submitted the release.
- relman's metrics (``common.metrics``) go to the global meter provider set here.
- Exporters: ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` name them (``otlp``,
  ``console``, ``none``, or any installed OpenTelemetry exporter entry point);
  ``OTEL_EXPORTER_OTLP_PROTOCOL`` picks ``grpc`` (default) or ``http/protobuf``; endpoint,
  headers, service name and intervals are read by the SDK itself. Unlike the SDK's own
  default, nothing is exported unless a variable asks for it: a laptop worker does not
  retry an OTLP collector that is not there.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from temporalio.contrib.opentelemetry import TracingInterceptor

from common.errors import BadInput

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

# The default service.name of workers and the CLI alike (OTEL_SERVICE_NAME overrides it):
# `relman worker` connects once as a client before it is a worker.
SERVICE_NAME = "relman"

# The OTLP exporter entry point each OTEL_EXPORTER_OTLP_PROTOCOL value selects.
OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
SIGNALS = {
    # signal: (exporter names, its OTLP endpoint, its OTLP protocol, entry point group)
    "traces": (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "opentelemetry_traces_exporter",
    ),
    "metrics": (
        "OTEL_METRICS_EXPORTER",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "opentelemetry_metrics_exporter",
    ),
}

log = logging.getLogger("relman.telemetry")
_lock = threading.Lock()
_configured: set[str] = set()


def exporter_names(signal: str, env: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters ``env`` configures for ``signal`` (``traces`` or ``metrics``), as
    entry point names: ``OTEL_<SIGNAL>_EXPORTER``, else ``otlp`` when an OTLP endpoint is
    set, else none."""
    names_var, endpoint_var, protocol_var, _ = SIGNALS[signal]
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    value = env.get(names_var)
    if value is None:
        value = "otlp" if env.get(endpoint_var) or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") else ""
    names = [n.strip() for n in value.split(",") if n.strip() and n.strip() != "none"]
    protocol_var = protocol_var if env.get(protocol_var) else "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = (env.get(protocol_var) or "grpc").strip()
    if "otlp" in names and protocol not in OTLP_BY_PROTOCOL:
        raise BadInput(
            f"{protocol_var}: unsupported {protocol!r} (use {' or '.join(OTLP_BY_PROTOCOL)})"
        )
    return [OTLP_BY_PROTOCOL[protocol] if n == "otlp" else n for n in names]


def exporters(signal: str, env: Mapping[str, str] = os.environ) -> list[Any]:
    """New exporter instances for ``signal``; each reads its own ``OTEL_EXPORTER_*``."""
    names_var, _, _, group = SIGNALS[signal]
    found = {ep.name: ep for ep in entry_points(group=group)}
    made = []
    for name in exporter_names(signal, env):
        if name not in found:
            raise BadInput(
                f"{names_var}: unknown exporter {name!r} (installed: {', '.join(sorted(found))})"
            )
        made.append(found[name].load()())
    return made


def _resource(default_service_name: str) -> Any:
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource

    # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES override relman's default name.
    return Resource.create({"service.name": default_service_name}).merge(
        OTELResourceDetector().detect()
    )


def tracer_provider(
    service_name: str = SERVICE_NAME, env: Mapping[str, str] = os.environ
) -> TracerProvider | None:
    """A tracer provider exporting as ``env`` says; None when nothing is to be exported."""
    made = exporters("traces", env)
    if not made:
        return None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=_resource(service_name))
    for exporter in made:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def meter_provider(
    service_name: str = SERVICE_NAME, env: Mapping[str, str] = os.environ
) -> MeterProvider | None:
    """A meter provider exporting as ``env`` says; None when nothing is to be exported."""
    made = exporters("metrics", env)
    if not made:
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    # The reader's interval comes from OTEL_METRIC_EXPORT_INTERVAL.
    readers = [PeriodicExportingMetricReader(exporter) for exporter in made]
    return MeterProvider(metric_readers=readers, resource=_resource(service_name))


def configure_tracing() -> None:
    """Set the process's tracer provider from ``OTEL_*``, once (the SDK flushes at exit).

    A setting it cannot use is a warning, not an error: telemetry must not keep anyone from
    approving a release or a worker from running one."""
    with _lock:
        if "traces" in _configured:
            return
        _configured.add("traces")
        try:
            provider = tracer_provider()
        except BadInput as err:
            log.warning("traces are not exported: %s", err)
            return
        if provider is not None:
            trace.set_tracer_provider(provider)


def configure_metrics() -> None:
    """Set the process's meter provider from ``OTEL_*``, once (the SDK flushes at exit);
    like ``configure_tracing``, a setting it cannot use is a warning."""
    with _lock:
        if "metrics" in _configured:
            return
        _configured.add("metrics")
        try:
            provider = meter_provider()
        except BadInput as err:
            log.warning("relman's metrics are not exported: %s", err)
            return
        if provider is not None:
            otel_metrics.set_meter_provider(provider)


def tracing_interceptor(tracer: trace.Tracer | None = None) -> TracingInterceptor:
    """Temporal's OpenTelemetry interceptor; without ``tracer`` it uses the global one.

    Workflow spans are made only under a client span (the SDK's default): spans made
    without one would lose their parent when another worker replays the workflow."""
    return TracingInterceptor(tracer)
