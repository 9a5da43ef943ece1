"""What a wave's checks cost per bake interval: ``python -m bench.probes [ROUNDS]``.

A baking wave probes each of its checks once per interval (``interval``, 30 s by default),
in one heartbeating activity. This times one probe of each kind as that activity makes it
(``CheckActivities.probe``): an ``http`` check against a local HTTP server in this process,
a ``lambda_invoke`` check and a ``metric`` check (``GetMetricData`` over a five-minute
lookback) against moto, ``ROUNDS`` times each: wall time and this process's CPU time per
probe. The ``checks`` benchmark (``python -m bench checks``) runs :func:`measure` against
the bench's moto.
"""

from __future__ import annotations

import http.server
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from activities.aws import AwsClients
from activities.checks import CheckActivities
from activities.webhook_addresses import allowed_networks
from bench.fixtures import FUNCTION, lambda_without_docker, seed_targets
from bench.report import median, percentile
from bench.stack import AWS_MAX_ATTEMPTS, MotoServer, use_local_aws_credentials
from models.checks import ChecksInput

NAMESPACE, METRIC = "Bench", "LatencyP99"


class _Healthy(http.server.BaseHTTPRequestHandler):
    """A health endpoint: 200 with a small JSON body, as an internal service answers."""

    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({"status": "ok", "version": "2.0.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def _health_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health"
    finally:
        server.shutdown()


def _checks(url: str) -> list[dict[str, Any]]:
    """One check of each kind, as a plan writes them."""
    return [
        {
            "name": "health",
            "kind": "http",
            "url": url,
            "json_path": {"path": "$.status", "equals": "ok"},
            "latency_limit_ms": 500,
        },
        {
            "name": "smoke",
            "kind": "lambda_invoke",
            "function": FUNCTION,
            "payload": {"status": "pass"},
            "expect": {"path": "$.status", "equals": "pass"},
        },
        {
            "name": "latency",
            "kind": "metric",
            "metric": {"namespace": NAMESPACE, "name": METRIC, "statistic": "Maximum"},
            "threshold": 500,
            "unit": "ms",
        },
    ]


def main(rounds: int = 50) -> dict[str, Any]:
    """Time ``rounds`` probes of each kind, on a moto of its own."""
    use_local_aws_credentials()
    moto = MotoServer(Path(tempfile.mkdtemp(prefix="relman-bench-probes-")))
    try:
        return measure(moto, rounds)
    finally:
        moto.stop()


def measure(moto: MotoServer, rounds: int) -> dict[str, Any]:
    """Seed what the checks read in ``moto`` (reset first) and time ``rounds`` probes of
    each kind: milliseconds of wall and CPU time per probe, by kind, and for one bake
    interval of a wave with one check of each kind."""
    moto.reset()
    aws = AwsClients(endpoint_url=moto.endpoint, max_attempts=AWS_MAX_ATTEMPTS)
    seed_targets(aws, 2, "probe")  # the Lambda function the aliases route to
    lambda_without_docker(moto.endpoint)
    aws.client("cloudwatch").put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[{"MetricName": METRIC, "Value": 212.0, "Timestamp": datetime.now(UTC)}],
    )
    activities = CheckActivities(aws, allowed_networks("127.0.0.0/8"))
    with _health_endpoint() as url:
        input = ChecksInput.model_validate(
            {"release_id": "bench-probes", "wave": "eu", "checks": _checks(url)}
        )
        since = datetime.now(UTC)
        for check in input.checks:  # untimed: build the clients, open the connections
            result = activities.probe(input, check, since)
            if not result.ok:
                raise RuntimeError(f"check {check.name} did not pass: {result.message}")
        wall: dict[str, list[float]] = {c.kind: [] for c in input.checks}
        cpu: dict[str, list[float]] = {c.kind: [] for c in input.checks}
        for _ in range(rounds):
            for check in input.checks:
                began, began_cpu = time.perf_counter(), time.process_time()
                activities.probe(input, check, since)
                wall[check.kind].append(time.perf_counter() - began)
                cpu[check.kind].append(time.process_time() - began_cpu)
    by_kind = {
        kind: {
            "median_ms": round(median(seconds) * 1000, 2),
            "p99_ms": round(percentile(seconds, 99) * 1000, 2),
            "cpu_median_ms": round(median(cpu[kind]) * 1000, 2),
        }
        for kind, seconds in wall.items()
    }
    return {
        "rounds": rounds,
        "by_kind": by_kind,
        "interval_ms": round(sum(k["median_ms"] for k in by_kind.values()), 2),
        "interval_cpu_ms": round(sum(k["cpu_median_ms"] for k in by_kind.values()), 2),
    }


if __name__ == "__main__":
    print(json.dumps(main(*(int(a) for a in sys.argv[1:2])), indent=2))
