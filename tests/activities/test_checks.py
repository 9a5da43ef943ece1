"""A wave's checks: the threshold logic, and each probe against a local HTTP server and moto.

The HTTP server runs in the test (healthy, slow, failing, flapping endpoints). Probes are
real: the activity runs in Temporal's ActivityEnvironment with short intervals.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import workflows.checks as logic
from activities.aws import AwsClients
from activities.checks import CheckActivities
from models.checks import ChecksInput, ChecksProgress
from models.plan import Wave
from tests.activities.test_jobs import lambda_job
from tests.conftest import LOOPBACK_NETWORKS


class Handler(http.server.BaseHTTPRequestHandler):
    flaps = 0

    def do_GET(self) -> None:  # noqa: N802
        path = self.path
        if path == "/slow":
            time.sleep(0.3)
        if path == "/flap":
            Handler.flaps += 1
            path = "/fail" if Handler.flaps % 2 == 0 else "/healthy"
        if path == "/auth" and self.headers.get("Authorization") != "Bearer s3cret":
            path = "/fail"
        status = 503 if path == "/fail" else 200
        body = json.dumps({"status": "ok" if status == 200 else "down", "version": "2.4.0"})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def run(aws: AwsClients, checks: list[dict[str, Any]], duration: float = 0, **kw: Any) -> Any:
    input = ChecksInput.model_validate(
        {"release_id": "shop-2.4.0", "wave": "eu", "checks": checks, "duration": duration} | kw
    )
    env = ActivityEnvironment()
    return env.run(CheckActivities(aws, LOOPBACK_NETWORKS).run_checks, input)


# --- pure logic ------------------------------------------------------------------------------


def test_thresholds_n_consecutive_and_m_of_k() -> None:
    assert logic.threshold_reached([True, False, False], 2, None)
    assert not logic.threshold_reached([False, True, False], 2, None)
    assert logic.threshold_reached([False, True, False], 2, 3)
    assert not logic.threshold_reached([False, True, True, False], 2, 3)
    assert logic.remember([True] * 5, False, 3, 2) == [True, True, False]
    assert logic.remember([True], None, None, 1) == [True]


def test_measured_values_are_shown_with_their_unit() -> None:
    assert logic.breach_message("p99 latency", 812.0, ">", 500, "ms") == (
        "p99 latency 812 ms > 500 ms"
    )
    assert logic.breach_message("error rate", 0.25, ">", 1, "%") == "error rate 0.25 %"


def test_bad_checks_are_refused_naming_the_field() -> None:
    base = {"name": "eu", "department": "finance", "targets": ["a"]}
    with pytest.raises(ValidationError, match="window \\(2\\) must be at least failures"):
        Wave.model_validate(
            base
            | {
                "checks": [
                    {"name": "h", "kind": "http", "url": "http://x", "failures": 3, "window": 2}
                ]
            }
        )
    with pytest.raises(ValidationError, match="url must be an http"):
        Wave.model_validate(base | {"checks": [{"name": "h", "kind": "http", "url": "ftp://x"}]})
    with pytest.raises(ValidationError, match="exactly one of metric or expression"):
        Wave.model_validate(base | {"checks": [{"name": "m", "kind": "metric", "threshold": 1}]})
    with pytest.raises(ValidationError, match="check names must be unique"):
        Wave.model_validate(
            base
            | {
                "checks": [
                    {"name": "h", "kind": "http", "url": "http://x"},
                    {"name": "h", "kind": "http", "url": "http://y"},
                ]
            }
        )


# --- http ------------------------------------------------------------------------------------


def test_http_checks_pass_on_a_healthy_endpoint_and_report_status_and_latency(
    aws: AwsClients, server: str
) -> None:
    result = run(
        aws,
        [
            {
                "name": "health",
                "kind": "http",
                "url": f"{server}/healthy",
                "body_regex": "ok",
                "json_path": {"path": "$.version", "regex": "^2\\.4"},
            }
        ],
    )
    assert result.failure is None
    [probe] = result.results
    assert probe.ok and probe.message.startswith(f"GET {server}/healthy: 200 in ")


def test_http_checks_fail_on_status_latency_and_assertion(aws: AwsClients, server: str) -> None:
    failing = run(aws, [{"name": "h", "kind": "http", "url": f"{server}/fail"}])
    assert failing.failure == "h"
    assert failing.results[0].message == f"GET {server}/fail: status 503 (expected 200)"
    slow = run(
        aws, [{"name": "h", "kind": "http", "url": f"{server}/slow", "latency_limit_ms": 100}]
    )
    assert slow.results[0].message.startswith(f"GET {server}/slow: latency 3")
    assert slow.results[0].message.endswith(" ms > 100 ms")
    wrong = run(
        aws,
        [
            {
                "name": "h",
                "kind": "http",
                "url": f"{server}/healthy",
                "json_path": {"path": "$.version", "equals": "2.5.0"},
            }
        ],
    )
    assert wrong.results[0].message.endswith('$.version = "2.4.0", expected "2.5.0"')


def test_a_flapping_endpoint_fails_only_at_its_threshold(aws: AwsClients, server: str) -> None:
    Handler.flaps = 0
    check = {"name": "flap", "kind": "http", "url": f"{server}/flap", "interval": "1s"}
    # Up, down, up, down...: never two failures in a row, so a 2-consecutive check passes.
    ok = run(aws, [check | {"failures": 2}], duration=2.5)
    assert ok.failure is None and ok.results[0].recent[-2:] in ([True, False], [False, True])
    Handler.flaps = 0
    # Two of the last three fail the step.
    bad = run(aws, [check | {"failures": 2, "window": 3}], duration=5)
    assert bad.failure == "flap" and bad.results[0].recent == [True, False, True, False][-3:]


def test_http_check_headers_come_from_a_secret(aws: AwsClients, server: str) -> None:
    arn = aws.client("secretsmanager").create_secret(
        Name="health-token", SecretString=json.dumps({"Authorization": "Bearer s3cret"})
    )["ARN"]
    check = {"name": "h", "kind": "http", "url": f"{server}/auth"}
    assert run(aws, [check]).failure == "h"
    result = run(aws, [check | {"headers_from": {"secretsmanager": arn}}])
    assert result.failure is None
    assert "s3cret" not in result.model_dump_json()


def test_http_checks_may_not_reach_refused_addresses(aws: AwsClients) -> None:
    result = run(aws, [{"name": "h", "kind": "http", "url": "http://169.254.169.254/latest"}])
    assert result.failure == "h"
    assert "cloud metadata address: checks may never reach it" in result.results[0].message
    env = ActivityEnvironment()
    input = ChecksInput.model_validate(
        {
            "release_id": "r",
            "wave": "eu",
            "checks": [{"name": "h", "kind": "http", "url": "http://127.0.0.1:9/"}],
        }
    )
    refused = env.run(CheckActivities(aws).run_checks, input)
    assert "may not reach it" in refused.results[0].message


# --- lambda_invoke -----------------------------------------------------------------------------


def test_lambda_checks_assert_the_result(aws: AwsClients, moto_endpoint: str) -> None:
    lambda_job(aws, moto_endpoint)  # "backfill" echoes its payload
    check = {
        "name": "smoke",
        "kind": "lambda_invoke",
        "function": "backfill",
        "payload": {"status": "pass"},
        "expect": {"path": "$.status", "equals": "pass"},
    }
    assert run(aws, [check]).results[0].message == 'lambda backfill: $.status = "pass"'
    bad = run(aws, [check | {"payload": {"status": "fail"}}])
    assert bad.failure == "smoke"
    assert bad.results[0].message == 'lambda backfill: $.status = "fail", expected "pass"'


# --- metric ------------------------------------------------------------------------------------


def test_metric_checks_compare_the_bake_window_with_the_threshold(aws: AwsClients) -> None:
    cloudwatch = aws.client("cloudwatch")
    metric = {"namespace": "Shop", "name": "LatencyP99", "dimensions": {"Api": "orders"}}
    cloudwatch.put_metric_data(
        Namespace="Shop",
        MetricData=[
            {
                "MetricName": "LatencyP99",
                "Dimensions": [{"Name": "Api", "Value": "orders"}],
                "Value": 812.0,
                "Timestamp": datetime.now(UTC),
            }
        ],
    )
    check = {
        "name": "latency",
        "kind": "metric",
        "metric": metric | {"statistic": "Maximum"},
        "threshold": 500,
        "label": "p99 latency",
        "unit": "ms",
    }
    result = run(aws, [check])
    assert result.failure == "latency"
    assert result.results[0].message == "p99 latency 812 ms > 500 ms"
    assert run(aws, [check | {"threshold": 1000}]).failure is None
    # No data, as configured.
    quiet = check | {"metric": metric | {"name": "Nothing"}}
    assert run(aws, [quiet | {"no_data": "fail"}]).failure == "latency"
    assert run(aws, [quiet | {"no_data": "ignore"}]).results[0].ok is None
    assert run(aws, [quiet | {"no_data": "ignore"}]).results[0].message == (
        "p99 latency: no data (ignore)"
    )


def test_a_retried_bake_resumes_its_checks_from_the_heartbeat(aws: AwsClients, server: str) -> None:
    """The progress heartbeated by a dead worker's attempt: the bake ends at its deadline,
    not a whole bake later, and keeps the outcomes already seen."""
    started = datetime.now(UTC) - timedelta(seconds=9)
    progress = ChecksProgress(started_at=started, results=[])
    env = ActivityEnvironment()
    env.info = env.info.__class__(
        **{**env.info.__dict__, "heartbeat_details": [progress.model_dump(mode="json")]}
    )
    input = ChecksInput.model_validate(
        {
            "release_id": "r",
            "wave": "eu",
            "duration": 10,
            "checks": [{"name": "h", "kind": "http", "url": f"{server}/healthy", "interval": "1s"}],
        }
    )
    began = time.monotonic()
    result = env.run(CheckActivities(aws, LOOPBACK_NETWORKS).run_checks, input)
    assert time.monotonic() - began < 3
    assert result.failure is None and result.results[0].recent


def test_an_unreadable_header_secret_fails_the_check_for_good(aws: AwsClients, server: str) -> None:
    check = {
        "name": "h",
        "kind": "http",
        "url": f"{server}/healthy",
        "headers_from": {"ssm": "/missing/token"},
    }
    with pytest.raises(ApplicationError, match="headers_from ssm parameter /missing/token"):
        run(aws, [check])


def test_plan_iam_covers_what_checks_call() -> None:
    from models.iam import plan_policies
    from tests.helpers import make_plan, ssm, wave

    plan = make_plan(
        [ssm("api-version", "/shop/api/version", "2.4.0")],
        [
            wave(
                "eu",
                ["api-version"],
                checks=[
                    {"name": "smoke", "kind": "lambda_invoke", "function": "smoke"},
                    {
                        "name": "p99",
                        "kind": "metric",
                        "metric": {"namespace": "Shop", "name": "LatencyP99"},
                        "threshold": 500,
                    },
                    {
                        "name": "health",
                        "kind": "http",
                        "url": "http://10.0.0.5/health",
                        "headers_from": {"ssm": "/shop/health-token"},
                    },
                ],
            )
        ],
    )
    actions = {
        action
        for policy in plan_policies(plan)
        for statement in policy.statements
        for action in statement.actions
    }
    assert {"lambda:InvokeFunction", "cloudwatch:GetMetricData", "ssm:GetParameter"} <= actions


def test_preflight_finds_a_missing_check_function(aws: AwsClients, moto_endpoint: str) -> None:
    from activities.preflight import PreflightActivities
    from models.preflight import preflight_input
    from tests.helpers import make_plan, ssm, wave

    lambda_job(aws, moto_endpoint)
    checks = [
        {"name": "smoke", "kind": "lambda_invoke", "function": "backfill"},
        {"name": "gone", "kind": "lambda_invoke", "function": "gone"},
    ]
    plan = make_plan([ssm("v", "/shop/v", "1")], [wave("eu", ["v"], checks=checks)])
    result = ActivityEnvironment().run(
        PreflightActivities(aws).preflight, preflight_input(plan, ["eu"])
    )
    assert [str(p) for p in result.problems] == [
        "waves[0].checks[1] (eu): Lambda function 'gone' does not exist in us-east-1"
    ]


def test_plan_check_shows_checks_and_refuses_bad_ones(tmp_path: Any) -> None:
    import yaml

    from tests.client.test_cli import DEMO, relman

    plan = yaml.safe_load(DEMO.read_text())
    plan["waves"][0]["checks"] = [
        {
            "name": "p99",
            "kind": "metric",
            "metric": {"namespace": "Shop", "name": "LatencyP99"},
            "threshold": 500,
            "label": "p99 latency",
            "unit": "ms",
            "failures": 2,
            "window": 3,
        }
    ]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    shown = relman("plan", "check", str(path), env={"COLUMNS": "400"})
    assert shown.returncode == 0, shown.stderr
    assert "check metric p99: p99 latency > 500" in shown.stdout
    plan["waves"][0]["checks"][0]["window"] = 1
    path.write_text(yaml.safe_dump(plan))
    bad = relman("plan", "check", str(path))
    assert bad.returncode == 2
    assert "waves[0].checks[0].metric" in bad.stderr
    assert "window (1) must be at least failures (2)" in bad.stderr


def test_the_organisation_policy_governs_the_hosts_http_checks_probe() -> None:
    from models.policy import load_policy, plan_violations
    from tests import trust
    from tests.helpers import make_plan, ssm, wave

    checks = [
        {"name": "ok", "kind": "http", "url": "http://127.0.0.1:8080/health"},
        {"name": "far", "kind": "http", "url": "https://internal.example.com/health"},
    ]
    plan = make_plan([ssm("v", "/shop/v", "1")], [wave("eu", ["v"], checks=checks)])
    assert [
        v for v in plan_violations(plan, load_policy(trust.policy_path())) if "checks" in v
    ] == [
        "waves[0].checks[1].url: host 'internal.example.com' is not one the organisation "
        f"policy lets {plan.application!r} checks probe (check_hosts)"
    ]


def test_a_function_error_fails_a_lambda_check(aws: AwsClients, monkeypatch: Any) -> None:
    """moto's Lambda without Docker only echoes: the error answer is Lambda's documented one."""
    import io

    class Lambda:
        def invoke(self, **args: Any) -> dict[str, Any]:
            body = json.dumps({"errorMessage": "orders table unreachable"}).encode()
            return {"FunctionError": "Unhandled", "Payload": io.BytesIO(body)}

    monkeypatch.setattr(CheckActivities, "_client", lambda self, *a: Lambda())
    result = run(aws, [{"name": "smoke", "kind": "lambda_invoke", "function": "smoke"}])
    assert result.failure == "smoke"
    assert result.results[0].message == (
        "lambda smoke: function error Unhandled: orders table unreachable"
    )


def test_metric_math_expressions(aws: AwsClients) -> None:
    """moto evaluates an expression only when it names another query's id (no arithmetic):
    this shows the query plumbing; AWS does the arithmetic."""
    cloudwatch = aws.client("cloudwatch")
    cloudwatch.put_metric_data(
        Namespace="Shop",
        MetricData=[{"MetricName": "Errors", "Value": 5.0, "Timestamp": datetime.now(UTC)}],
    )
    check = {
        "name": "errors",
        "kind": "metric",
        "expression": "errors",
        "metrics": {"errors": {"namespace": "Shop", "name": "Errors", "statistic": "Sum"}},
        "threshold": 1,
        "label": "5xx count",
    }
    result = run(aws, [check])
    assert result.results[0].message == "5xx count 5 > 1"
