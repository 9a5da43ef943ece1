"""A wave's checks (models.checks), probed before its first step and during every bake.

One activity runs all of a wave's checks for a bake, each at its own interval, and returns
as soon as one reaches its failure threshold. It heartbeats its progress (every check's
recent outcomes and when each is due next), so an attempt retried on another worker
resumes the bake's checks where they were, not from zero.

``http`` checks reach only hosts a webhook may (activities.webhook_addresses, with the
worker's ``RELMAN_WEBHOOK_ALLOW_NETWORKS``); their headers may come from a secret read at
probe time, which never enters the plan, the history or the results.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

import workflows.checks as logic
from activities.aws import AwsClients, acting_for
from activities.notify import _checked_opener
from activities.webhook_addresses import IPNetwork, WebhookAddressError, checked_addresses
from models.checks import (
    RUN_CHECKS,
    Check,
    CheckResult,
    ChecksInput,
    ChecksProgress,
    ChecksResult,
    HttpCheck,
    JsonAssertion,
    LambdaInvokeCheck,
    MetricCheck,
    SecretRef,
)

USER_AGENT = "relman-check"
# Bodies are read up to this much (a regex or JSONPath runs over it).
MAX_BODY = 1024 * 1024
# The activity wakes at least this often to heartbeat and notice cancellation.
TICK = 1.0


class CheckSecretUnreadable(Exception):
    """A check's ``headers_from`` secret could not be read or is no JSON object."""


def _now() -> datetime:
    return datetime.now(UTC)


def _pause(seconds: float) -> None:
    """Sleep; a seam for tests."""
    time.sleep(max(seconds, 0.0))


def _ms(seconds: float) -> str:
    return logic.format_value(round(seconds * 1000), "ms")


def json_matches(document: Any, assertion: JsonAssertion) -> tuple[bool, str]:
    """Whether the JSONPath's first match equals / matches; and what was found."""
    from jsonpath_ng import parse  # type: ignore[import-untyped]

    found = [m.value for m in parse(assertion.path).find(document)]
    if not found:
        return False, f"{assertion.path} matched nothing"
    value = found[0]
    shown = json.dumps(value)[:200]
    if assertion.regex is not None:
        ok = re.search(assertion.regex, value if isinstance(value, str) else json.dumps(value))
        if ok:
            return True, f"{assertion.path} = {shown}"
        return False, f"{assertion.path} = {shown}, not matching /{assertion.regex}/"
    if value == assertion.equals:
        return True, f"{assertion.path} = {shown}"
    return False, f"{assertion.path} = {shown}, expected {json.dumps(assertion.equals)[:200]}"


class CheckActivities:
    """Probe checks; boto3 clients come from the worker."""

    def __init__(self, aws: AwsClients, webhook_networks: Sequence[IPNetwork] = ()):
        self.aws = aws
        self.networks = tuple(webhook_networks)

    # --- the activity ----------------------------------------------------------------------

    @activity.defn(name=RUN_CHECKS)
    def run_checks(self, input: ChecksInput) -> ChecksResult:
        """Probe every check once (``duration`` zero), or each at its interval for
        ``duration``; stop at the first check that reaches its failure threshold."""
        progress = self._resume(input)
        results = {r.name: r for r in progress.results}
        once = input.duration <= timedelta(0)
        end = progress.started_at + input.duration
        while True:
            now = _now()
            for check in input.checks:
                due = progress.next_due.get(check.name, progress.started_at)
                if not once and due > now:
                    continue
                previous = results.get(check.name)
                result = self.probe(input, check, progress.started_at)
                recent = logic.remember(
                    previous.recent if previous else [], result.ok, check.window, check.failures
                )
                result.recent = recent
                if once:
                    result.failed = result.ok is False
                else:
                    result.failed = logic.threshold_reached(recent, check.failures, check.window)
                results[check.name] = result
                progress.next_due[check.name] = now + check.interval
                if result.failed:
                    activity.logger.warning(
                        "wave %r: check %r failed: %s", input.wave, check.name, result.message
                    )
                    progress.results = list(results.values())
                    return ChecksResult(results=progress.results, failure=check.name)
            progress.results = [results[c.name] for c in input.checks if c.name in results]
            # A plain JSON dict reads back the same under any data converter.
            activity.heartbeat(progress.model_dump(mode="json"))
            if once:
                return ChecksResult(results=progress.results)
            now = _now()
            if now >= end:
                return ChecksResult(results=progress.results)
            wake = min([end, *progress.next_due.values()])
            _pause(min(max((wake - now).total_seconds(), 0.0), TICK))
            if activity.is_cancelled():
                raise CancelledError(f"checks of wave {input.wave!r} cancelled")

    def _resume(self, input: ChecksInput) -> ChecksProgress:
        details = activity.info().heartbeat_details
        if details:
            try:
                progress = ChecksProgress.model_validate(details[0])
            except ValidationError:
                activity.logger.warning("unreadable checks heartbeat %r: from zero", details)
            else:
                activity.logger.info(
                    "wave %r: resuming checks started at %s", input.wave, progress.started_at
                )
                return progress
        return ChecksProgress(started_at=_now())

    # --- one probe -------------------------------------------------------------------------

    def probe(self, input: ChecksInput, check: Check, since: datetime) -> CheckResult:
        """One probe of ``check``; never raises for what the probe found (that is its
        result), only for errors that make the check itself unusable (a secret unread)."""
        probes: dict[str, Callable[[ChecksInput, Any, datetime], tuple[bool | None, str]]] = {
            "http": self._http,
            "lambda_invoke": self._lambda,
            "metric": self._metric,
        }
        ok, message = probes[check.kind](input, check, since)
        return CheckResult(name=check.name, kind=check.kind, ok=ok, message=message, at=_now())

    def _client(self, service: str, input: ChecksInput, check: Check) -> Any:
        with acting_for(input.release_id, input.application):
            return self.aws.client(
                service,
                check.region or input.region,
                check.role_arn or input.role_arn,
                check.external_id if check.role_arn else input.external_id,
            )

    def _headers(self, input: ChecksInput, check: HttpCheck) -> dict[str, str]:
        ref: SecretRef | None = check.headers_from
        if ref is None:
            return {}
        try:
            if ref.secretsmanager is not None:
                region = ref.secretsmanager.split(":")[3]
                with acting_for(input.release_id, input.application):
                    client = self.aws.client(
                        "secretsmanager",
                        region,
                        check.role_arn or input.role_arn,
                        check.external_id if check.role_arn else input.external_id,
                    )
                text = str(client.get_secret_value(SecretId=ref.secretsmanager)["SecretString"])
            else:
                text = str(
                    self._client("ssm", input, check).get_parameter(
                        Name=ref.ssm, WithDecryption=True
                    )["Parameter"]["Value"]
                )
        except (ClientError, BotoCoreError, KeyError) as exc:
            code = (
                exc.response["Error"]["Code"]
                if isinstance(exc, ClientError)
                else type(exc).__name__
            )
            raise ApplicationError(
                f"check {check.name!r}: headers_from {ref.source} unreadable: {code}",
                type=CheckSecretUnreadable.__name__,
                non_retryable=not isinstance(exc, BotoCoreError),
            ) from None
        if ref.header is not None:
            return {ref.header: text}
        try:
            headers = json.loads(text)
        except ValueError:
            headers = None
        if not isinstance(headers, dict):
            raise ApplicationError(
                f"check {check.name!r}: headers_from {ref.source} holds no JSON object of "
                "headers (or name one with header:)",
                type=CheckSecretUnreadable.__name__,
                non_retryable=True,
            )
        return {str(k): str(v) for k, v in headers.items()}

    def _http(self, input: ChecksInput, check: HttpCheck, since: datetime) -> tuple[bool, str]:
        what = f"{check.method} {check.url}"
        try:
            addresses = checked_addresses(check.url, self.networks)
        except WebhookAddressError as exc:
            return False, f"{what}: {str(exc).replace('webhooks', 'checks')}"
        headers = {"User-Agent": USER_AGENT, **self._headers(input, check)}
        request = urllib.request.Request(check.url, method=check.method, headers=headers)
        started = time.monotonic()
        try:
            with _checked_opener(addresses).open(
                request, timeout=check.timeout.total_seconds()
            ) as response:
                status = response.status
                body = response.read(MAX_BODY)
        except urllib.error.HTTPError as exc:
            status = exc.code
            body = exc.read(MAX_BODY) if exc.fp is not None else b""
            exc.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            return False, f"{what}: unreachable ({reason})"
        latency = time.monotonic() - started
        if status not in check.expect_status:
            expected = ", ".join(str(s) for s in check.expect_status)
            return False, f"{what}: status {status} (expected {expected})"
        text = body.decode("utf-8", "replace")
        if check.body_regex is not None and not re.search(check.body_regex, text):
            return False, f"{what}: body does not match /{check.body_regex}/"
        if check.json_path is not None:
            try:
                document = json.loads(text)
            except ValueError:
                return False, f"{what}: body is not JSON"
            ok, found = json_matches(document, check.json_path)
            if not ok:
                return False, f"{what}: {found}"
        if check.latency_limit_ms is not None and latency * 1000 > check.latency_limit_ms:
            limit = check.latency_limit_ms / 1000
            return False, f"{what}: latency {_ms(latency)} > {_ms(limit)}"
        return True, f"{what}: {status} in {_ms(latency)}"

    def _lambda(
        self, input: ChecksInput, check: LambdaInvokeCheck, since: datetime
    ) -> tuple[bool, str]:
        what = f"lambda {check.function}" + (f":{check.qualifier}" if check.qualifier else "")
        args: dict[str, Any] = {"FunctionName": check.function, "InvocationType": "RequestResponse"}
        if check.qualifier:
            args["Qualifier"] = check.qualifier
        if check.payload is not None:
            args["Payload"] = json.dumps(check.payload).encode()
        try:
            answer = self._client("lambda", input, check).invoke(**args)
        except ClientError as exc:
            return False, f"{what}: {exc.response['Error']['Code']}"
        except BotoCoreError as exc:
            return False, f"{what}: unreachable ({type(exc).__name__})"
        raw = answer["Payload"].read().decode("utf-8", "replace")
        if answer.get("FunctionError"):
            detail = raw
            with contextlib.suppress(ValueError, AttributeError):
                detail = json.loads(raw).get("errorMessage", raw)
            return False, f"{what}: function error {answer['FunctionError']}: {str(detail)[:200]}"
        if check.expect is None:
            return True, f"{what}: ok"
        try:
            document = json.loads(raw) if raw else None
        except ValueError:
            return False, f"{what}: result is not JSON"
        ok, found = json_matches(document, check.expect)
        return ok, f"{what}: {found}"

    def _metric(
        self, input: ChecksInput, check: MetricCheck, since: datetime
    ) -> tuple[bool | None, str]:
        label = check.label or check.name
        end = _now()
        start = min(since, end - check.period)
        if input.duration <= timedelta(0):
            start = end - check.lookback
        queries: list[dict[str, Any]] = []
        period = int(check.period.total_seconds())

        def stat(id_: str, metric: Any, returned: bool) -> dict[str, Any]:
            return {
                "Id": id_,
                "MetricStat": {
                    "Metric": {
                        "Namespace": metric.namespace,
                        "MetricName": metric.name,
                        "Dimensions": [
                            {"Name": k, "Value": v} for k, v in sorted(metric.dimensions.items())
                        ],
                    },
                    "Period": period,
                    "Stat": metric.statistic,
                },
                "ReturnData": returned,
            }

        if check.metric is not None:
            queries.append(stat("value", check.metric, True))
        else:
            queries += [stat(key, m, False) for key, m in check.metrics.items()]
            queries.append(
                {
                    "Id": "value",
                    "Expression": check.expression,
                    "Period": period,
                    "ReturnData": True,
                }
            )
        try:
            answer = self._client("cloudwatch", input, check).get_metric_data(
                MetricDataQueries=queries,
                StartTime=start - check.period,
                EndTime=end + check.period,
            )
        except ClientError as exc:
            return False, f"{label}: GetMetricData failed: {exc.response['Error']['Code']}"
        except BotoCoreError as exc:
            return False, f"{label}: GetMetricData unreachable ({type(exc).__name__})"
        values = [
            float(v)
            for r in answer.get("MetricDataResults", [])
            if r.get("Id") == "value"
            for v in r.get("Values", [])
        ]
        if not values:
            outcome = {"fail": False, "pass": True, "ignore": None}[check.no_data]
            return outcome, f"{label}: no data ({check.no_data})"
        worst = max(values) if check.comparison in (">", ">=") else min(values)
        message = logic.breach_message(label, worst, check.comparison, check.threshold, check.unit)
        return not logic.breaches(worst, check.comparison, check.threshold), message

    def all(self) -> list[Callable[..., Any]]:
        return [self.run_checks]
