"""Checks on a wave: probes that verify a step before the wave starts and during every bake.

Three kinds, each with its own interval and failure threshold (``failures: N`` consecutive
failed probes, or ``failures: M`` of the last ``window: K``):

- ``http``: a request to a URL; expected status set, optional body regex and JSONPath
  assertion, latency limit; headers may come from a secret (never in the plan or history);
- ``lambda_invoke``: invoke a function (qualifier, payload); a FunctionError fails, and an
  expected result (JSONPath equals / regex) may be asserted;
- ``metric``: CloudWatch GetMetricData (a metric or a metric-math expression) compared with
  a threshold over the bake window; "no data" fails, passes or is ignored as configured.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.durations import Duration
from models.secrets import SecretSource

RUN_CHECKS = "run_checks"

CheckName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class _CheckModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(SecretSource):
    """A secret holding header values: a Secrets Manager ARN or an SSM parameter name.
    Its text is a JSON object of header names to values (or, with ``header``, one value)."""

    FIELD = "headers_from"

    header: str | None = None


class JsonAssertion(_CheckModel):
    """A JSONPath into a JSON document, whose first match equals a value or matches a regex."""

    path: str
    equals: Any = None
    regex: str | None = None

    @field_validator("path")
    @classmethod
    def _parses(cls, value: str) -> str:
        from jsonpath_ng import parse  # type: ignore[import-untyped]

        try:
            parse(value)
        except Exception as exc:
            raise ValueError(f"not a JSONPath expression: {exc}") from None
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _check_regex(value)
        return value

    @model_validator(mode="after")
    def _one_expectation(self) -> JsonAssertion:
        if (self.equals is None) == (self.regex is None):
            raise ValueError("a JSONPath assertion has exactly one of equals or regex")
        return self


def _check_regex(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None


class CheckBase(_CheckModel):
    """What every check has: a name, how often it runs, and when it counts as failed."""

    name: CheckName
    interval: Duration = timedelta(seconds=30)
    # N consecutive failed probes fail the step; with ``window`` K: M failures of the last K.
    failures: int = Field(default=1, ge=1)
    window: int | None = Field(default=None, ge=1)
    region: str | None = None
    role_arn: str | None = None
    external_id: str | None = None

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("interval must be positive")
        return value

    @model_validator(mode="after")
    def _window_holds_failures(self) -> CheckBase:
        if self.window is not None and self.window < self.failures:
            raise ValueError(f"window ({self.window}) must be at least failures ({self.failures})")
        return self

    @property
    def failure_rule(self) -> str:
        if self.window is None:
            if self.failures == 1:
                return "1 failure"
            return f"{self.failures} consecutive failures"
        return f"{self.failures} of the last {self.window} probes failing"


class HttpCheck(CheckBase):
    kind: Literal["http"]
    url: str
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=lambda: [200], min_length=1
    )
    body_regex: str | None = None
    json_path: JsonAssertion | None = None
    latency_limit_ms: int | None = Field(default=None, ge=1)
    timeout: Duration = timedelta(seconds=10)
    headers_from: SecretRef | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL with a host")
        return value

    @field_validator("body_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _check_regex(value)
        return value


class LambdaInvokeCheck(CheckBase):
    kind: Literal["lambda_invoke"]
    function: str = Field(min_length=1)
    qualifier: str | None = None
    payload: Any = None
    expect: JsonAssertion | None = None


class MetricQuery(_CheckModel):
    """One CloudWatch metric (namespace, name, dimensions, statistic)."""

    namespace: str
    name: str
    dimensions: dict[str, str] = Field(default_factory=dict)
    statistic: str = "Average"


class MetricCheck(CheckBase):
    kind: Literal["metric"]
    # Exactly one of a metric or a metric-math expression (over metrics named in ``metrics``).
    metric: MetricQuery | None = None
    expression: str | None = None
    metrics: dict[str, MetricQuery] = Field(default_factory=dict)
    period: Duration = timedelta(minutes=1)
    # Over the bake window so far (before the first step: one lookback of this length).
    lookback: Duration = timedelta(minutes=5)
    comparison: Literal[">", ">=", "<", "<="] = ">"
    threshold: float
    label: str | None = None
    unit: str = ""
    no_data: Literal["fail", "pass", "ignore"] = "ignore"

    @model_validator(mode="after")
    def _one_query(self) -> MetricCheck:
        if (self.metric is None) == (self.expression is None):
            raise ValueError("a metric check has exactly one of metric or expression")
        for key in self.metrics:
            if not re.fullmatch(r"[a-z][a-zA-Z0-9_]*", key):
                raise ValueError(f"metrics key {key!r} must start lower-case (a metric-math id)")
        if int(self.period.total_seconds()) % 60 and self.period.total_seconds() not in (
            1,
            5,
            10,
            30,
        ):
            raise ValueError("period must be 1, 5, 10, 30 seconds or a multiple of 60")
        return self


Check = Annotated[HttpCheck | LambdaInvokeCheck | MetricCheck, Field(discriminator="kind")]


# --- what runs, and what it reports ----------------------------------------------------------


class CheckResult(BaseModel):
    """One check's last probe, for status and the timeline."""

    name: str
    kind: str
    ok: bool | None = None  # None: no data, ignored
    message: str
    at: datetime | None = None
    failed: bool = False  # its threshold was reached: it failed the step
    recent: list[bool] = Field(default_factory=list)


def result_state(result: CheckResult) -> str:
    """``ok``, ``failing``, ``no data``, or ``FAILED`` once its threshold failed the step."""
    if result.failed:
        return "FAILED"
    return {True: "ok", False: "failing", None: "no data"}[result.ok]


def result_line(wave: str, result: CheckResult) -> str:
    """How ``relman status`` shows a check's last probe."""
    return f"check {result.name} of wave {wave}: {result_state(result)}: {result.message}"


def summary(check: HttpCheck | LambdaInvokeCheck | MetricCheck) -> str:
    """How ``relman plan check`` shows a check."""
    if isinstance(check, HttpCheck):
        what = f"{check.method} {check.url}"
    elif isinstance(check, LambdaInvokeCheck):
        what = f"invoke {check.function}" + (f":{check.qualifier}" if check.qualifier else "")
    else:
        query = check.expression or (check.metric.name if check.metric else "")
        unit = f" {check.unit}" if check.unit else ""
        what = f"{check.label or query} {check.comparison} {check.threshold:g}{unit}"
    every = int(check.interval.total_seconds())
    return f"{check.kind} {check.name}: {what}, every {every}s, fails at {check.failure_rule}"


class ChecksInput(BaseModel):
    release_id: str
    application: str | None = None
    wave: str
    checks: list[Check]
    # Zero: probe each check once (before the first step); else probe for this long.
    duration: timedelta = timedelta(0)
    percent: int = 0
    region: str | None = None
    role_arn: str | None = None
    external_id: str | None = None


class ChecksProgress(BaseModel):
    """Heartbeat details: a retried attempt resumes the bake's checks from here."""

    started_at: datetime
    results: list[CheckResult] = Field(default_factory=list)
    next_due: dict[str, datetime] = Field(default_factory=dict)


class ChecksResult(BaseModel):
    results: list[CheckResult]
    failure: str | None = None
