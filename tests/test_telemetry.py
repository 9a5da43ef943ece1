"""OpenTelemetry end to end: a release's trace, relman's metrics and the worker's Prometheus
endpoint, on the time-skipping server with the real worker and SSM parameters in moto.

Spans and metrics go to in-memory exporters the tests own; the worker's client runs on a
Temporal runtime serving the SDK's metrics on a free loopback port, as ``relman worker``
serves them on ``RELMAN_METRICS_ADDRESS``.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.service import ServiceClient
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from common import metrics, telemetry
from common.errors import BadInput
from models.status import ReleasePhase
from tests import trust
from tests.conftest import free_port
from tests.helpers import (
    TWO_WAVE_BEFORE,
    approve,
    reject,
    seed,
    ssm_values,
    start_release,
    two_wave_plan,
    wait_for_gate,
)
from tests.trust import build_test_worker
from worker import telemetry as worker_telemetry
from workflows.release import ReleaseWorkflow


@dataclasses.dataclass
class Telemetry:
    """What the code under test exported, and the tracer that exports it."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider

    def finished_spans(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """The data points of metric ``name`` (cumulative since the test began)."""
        data = self.metrics.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def counts(self, name: str, key: str) -> dict[str, int]:
        """Metric ``name``'s counter values, or histogram counts, summed by attribute ``key``."""
        counts: dict[str, int] = {}
        for point in self.points(name):
            value = str(point.attributes[key])
            n = point.count if isinstance(point, HistogramDataPoint) else point.value
            counts[value] = counts.get(value, 0) + int(n)
        return counts


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    """In-memory span and metric exporters; boto3 traced into them for this test."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    metrics.use_meter_provider(MeterProvider(metric_readers=[reader]))
    worker_telemetry.instrument_botocore(tracer_provider)
    try:
        yield Telemetry(spans, reader, tracer_provider)
    finally:
        BotocoreInstrumentor().uninstrument()
        metrics.use_meter_provider(None)


@pytest.fixture
async def traced_client(
    time_skipping_env: WorkflowEnvironment, otel: Telemetry
) -> AsyncIterator[tuple[Client, str]]:
    """A client of the time-skipping server that traces like ``common.connection.connect``,
    on a runtime serving Prometheus metrics like ``relman worker``; and that address."""
    address = f"127.0.0.1:{free_port()}"
    runtime = worker_telemetry.prometheus_runtime(address)
    assert runtime is not None
    env_client = time_skipping_env.client
    service = await ServiceClient.connect(
        dataclasses.replace(env_client.service_client.config, runtime=runtime)
    )
    config = env_client.config()
    interceptor = telemetry.tracing_interceptor(otel.tracer_provider.get_tracer("relman-test"))
    # Keep the environment's own interceptors: they let the server skip time on result().
    config["service_client"] = service
    config["interceptors"] = [*config["interceptors"], interceptor]
    client = Client(**config)
    trust.time_skipping(time_skipping_env, client)
    yield client, address


def by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> list[str]:
    """Names of ``span``'s parent, grandparent, ... among ``spans``."""
    by_id = {s.context.span_id: s for s in spans}
    names = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        span = by_id[parent.span_id]
        names.append(span.name)
        parent = span.parent
    return names


async def test_a_release_is_one_trace_with_aws_calls_and_metrics(
    traced_client, otel, aws, task_queue, activity_executor
):
    client, prometheus_address = traced_client
    seed(aws, TWO_WAVE_BEFORE)
    plan = two_wave_plan()
    async with build_test_worker(client, task_queue, aws, activity_executor):
        handle = await start_release(client, plan, task_queue)
        await wait_for_gate(handle, "finance")
        await approve(handle, "finance", "bob")
        await wait_for_gate(handle, "operations")
        await approve(handle, "operations", "dave")
        result = await handle.result()
    assert result.phase == ReleasePhase.COMPLETED
    assert set(ssm_values(aws, list(TWO_WAVE_BEFORE)).values()) == {"2.4.0", "ledger-v2"}

    spans = otel.finished_spans()
    [start] = by_name(spans, "StartWorkflow:ReleaseWorkflow")
    trace = [s for s in spans if s.context.trace_id == start.context.trace_id]
    names = {s.name for s in trace}
    for expected in (
        "RunWorkflow:ReleaseWorkflow",
        "StartChildWorkflow:WaveWorkflow",
        "RunWorkflow:WaveWorkflow",
        "HandleUpdate:approve",
        "StartActivity:apply_targets",
        "RunActivity:apply_targets",
        "SSM.PutParameter",
    ):
        assert expected in names, f"{expected} not in the release's trace: {sorted(names)}"

    # Temporal's interceptor parents what a workflow does on the span that started it (its
    # own RunWorkflow span is a zero-length sibling: a workflow cannot hold a span open
    # across replays). So a wave is under the release's start, and every parameter the
    # release wrote is a span under the activity that wrote it, under its wave.
    assert len(by_name(trace, "RunWorkflow:WaveWorkflow")) == 2
    for run in by_name(trace, "RunWorkflow:WaveWorkflow"):
        assert ancestors(run, trace) == [
            "StartChildWorkflow:WaveWorkflow",
            "StartWorkflow:ReleaseWorkflow",
        ]
    [run] = by_name(trace, "RunWorkflow:ReleaseWorkflow")
    assert run.parent is not None and run.parent.span_id == start.context.span_id
    puts = by_name(trace, "SSM.PutParameter")
    assert len(puts) == len(TWO_WAVE_BEFORE)
    for put in puts:
        assert ancestors(put, trace) == [
            "RunActivity:apply_targets",
            "StartActivity:apply_targets",
            "StartChildWorkflow:WaveWorkflow",
            "StartWorkflow:ReleaseWorkflow",
        ]
        assert put.attributes is not None and put.attributes["rpc.service"] == "SSM"
    # Each approval is handled in the release's trace, linked to the client's update call.
    updates = {s.context.span_id for s in by_name(spans, "StartWorkflowUpdate:approve")}
    handled = by_name(trace, "HandleUpdate:approve")
    assert len(handled) == 2
    assert all({link.context.span_id for link in h.links} <= updates for h in handled)
    assert all(h.links for h in handled)

    assert otel.counts(metrics.RELEASES_STARTED, "application") == {"payments": 1}
    assert otel.counts(metrics.RELEASES_FINISHED, "outcome") == {"completed": 1}
    assert otel.counts(metrics.WAVE_ROLLOUT, "wave") == {"finance": 1, "operations": 1}
    assert otel.counts(metrics.APPROVAL_WAIT, "decision") == {"approved": 2}
    assert all(p.sum >= 0 for p in otel.points(metrics.WAVE_ROLLOUT))
    assert otel.points(metrics.ROLLBACK) == []

    # Another worker replaying the release (after a restart) counts nothing twice.
    replayer = Replayer(
        workflows=[ReleaseWorkflow],
        data_converter=handle._client.data_converter,  # noqa: SLF001
        interceptors=[telemetry.tracing_interceptor(otel.tracer_provider.get_tracer("replay"))],
    )
    await replayer.replay_workflow(await handle.fetch_history())
    assert otel.counts(metrics.RELEASES_STARTED, "application") == {"payments": 1}
    assert otel.counts(metrics.RELEASES_FINISHED, "outcome") == {"completed": 1}
    assert otel.counts(metrics.APPROVAL_WAIT, "decision") == {"approved": 2}

    # The Temporal SDK's own metrics, on the worker's Prometheus endpoint.
    with urllib.request.urlopen(f"http://{prometheus_address}/metrics", timeout=5) as page:
        scraped = page.read().decode()
    for expected in ("temporal_workflow_completed", "temporal_activity_execution_latency"):
        assert expected in scraped
    assert f'task_queue="{task_queue}"' in scraped


async def test_a_rejected_release_counts_its_rollback(
    traced_client, otel, aws, task_queue, activity_executor
):
    client, _ = traced_client
    seed(aws, TWO_WAVE_BEFORE)
    async with build_test_worker(client, task_queue, aws, activity_executor):
        handle = await start_release(client, two_wave_plan(), task_queue)
        await wait_for_gate(handle, "finance")
        await approve(handle, "finance", "bob")
        await wait_for_gate(handle, "operations")
        await reject(handle, "operations", "dave", "not this week")
        result = await handle.result()
    assert result.phase == ReleasePhase.REJECTED
    assert ssm_values(aws, list(TWO_WAVE_BEFORE)) == TWO_WAVE_BEFORE

    assert otel.counts(metrics.RELEASES_FINISHED, "outcome") == {"rejected": 1}
    assert otel.counts(metrics.APPROVAL_WAIT, "wave") == {"finance": 1, "operations": 1}
    assert otel.counts(metrics.APPROVAL_WAIT, "decision") == {"approved": 1, "rejected": 1}
    assert otel.counts(metrics.ROLLBACK, "application") == {"payments": 1}
    # The compensations' AWS calls are spans under the activities that made them.
    spans = otel.finished_spans()
    restores = [s for s in by_name(spans, "SSM.PutParameter") if s.parent is not None]
    compensations = {s.context.span_id for s in by_name(spans, "RunActivity:compensate_target")}
    assert len(compensations) == 2
    assert sum(1 for s in restores if s.parent.span_id in compensations) == 2


# --- configuration from the environment ----------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, ["otlp_proto_grpc"]),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp,console",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            ["otlp_proto_http", "console"],
        ),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, []),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_trace_exporters_follow_the_standard_variables(env, expected):
    assert telemetry.exporter_names("traces", env) == expected


def test_exporters_read_their_own_settings():
    env = {"OTEL_METRICS_EXPORTER": "console"}
    [exporter] = telemetry.exporters("metrics", env)
    assert type(exporter).__name__ == "ConsoleMetricExporter"
    assert telemetry.meter_provider("relman-worker", env) is not None
    assert telemetry.tracer_provider("relman-worker", env) is None  # no traces asked for


def test_bad_telemetry_settings_are_named():
    with pytest.raises(BadInput, match="OTEL_TRACES_EXPORTER: unknown exporter 'jaegerr'"):
        telemetry.exporters("traces", {"OTEL_TRACES_EXPORTER": "jaegerr"})
    with pytest.raises(BadInput, match="OTEL_EXPORTER_OTLP_PROTOCOL: unsupported 'http/json'"):
        telemetry.exporter_names(
            "traces", {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
        )
    with pytest.raises(BadInput, match="RELMAN_METRICS_ADDRESS: expected host:port"):
        worker_telemetry.metrics_address({"RELMAN_METRICS_ADDRESS": "9464"})


def test_metrics_address_defaults_to_loopback_and_can_be_turned_off():
    assert worker_telemetry.metrics_address({}) == "127.0.0.1:9464"
    address = worker_telemetry.metrics_address({"RELMAN_METRICS_ADDRESS": "0.0.0.0:9100"})
    assert address == "0.0.0.0:9100"
    assert worker_telemetry.metrics_address({"RELMAN_METRICS_ADDRESS": "off"}) is None
    assert worker_telemetry.metrics_address({"RELMAN_METRICS_ADDRESS": ""}) is None


def test_a_busy_metrics_port_does_not_stop_the_worker(caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with caplog.at_level(logging.WARNING, logger="relman.telemetry"):
            assert worker_telemetry.prometheus_runtime(address) is None
    assert f"not served on {address}" in caplog.text
