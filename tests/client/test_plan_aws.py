"""``relman plan check --aws``: the AWS preflight from the command line, against moto."""

from __future__ import annotations

from pathlib import Path

from activities.aws import AwsClients
from bench.fixtures import create_alarm
from tests.client.test_cli import relman

PLAN = """\
id: web-1.0.0
application: web
version: "1.0.0"
requested_by: alice
targets:
  - {name: cfg, kind: ssm_parameter, parameter: /web/cfg, value: "2"}
  - {name: api, kind: lambda_alias, function: web-api, alias: live, version: "2"}
waves:
  - {name: prod, department: ops, targets: [cfg, api], alarms: [web-errors]}
"""


def test_plan_check_aws_reports_every_problem_and_exits_2(tmp_path: Path, aws: AwsClients) -> None:
    plan = tmp_path / "web.yaml"
    plan.write_text(PLAN)
    env = {"RELMAN_AWS_ENDPOINT_URL": str(aws.endpoint_url), "AWS_DEFAULT_REGION": "us-east-1"}

    result = relman("plan", "check", str(plan), "--aws", env=env)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-2:] == [
        f"error: {plan}: targets[1] (api): function web-api does not exist",
        f"{plan}: waves[0].alarms (prod): CloudWatch alarm 'web-errors' does not exist in "
        "us-east-1",
    ]
    assert aws.client("ssm").describe_parameters()["Parameters"] == []


def test_plan_check_aws_passes_when_everything_is_there(tmp_path: Path, aws: AwsClients) -> None:
    create_alarm(aws, "web-errors")
    plan = tmp_path / "web.yaml"
    plan.write_text("\n".join(line for line in PLAN.splitlines() if "web-api" not in line))
    plan.write_text(plan.read_text().replace("[cfg, api]", "[cfg]"))
    env = {"RELMAN_AWS_ENDPOINT_URL": str(aws.endpoint_url), "AWS_DEFAULT_REGION": "us-east-1"}

    result = relman("plan", "check", str(plan), "--aws", env=env)

    assert result.returncode == 0, result.stderr
