"""AWS resources the benchmarks deploy to (in moto), and the plans that deploy them.

Half the targets of a wave are SSM parameters (1.0.0 -> 2.0.0), half Lambda aliases of one
function (version 1 -> 2 through weighted routing): one function with many aliases costs
moto less to set up than many functions, and makes the same calls per target.
"""

from __future__ import annotations

import concurrent.futures
import json
import urllib.request
import uuid
from typing import Any

from activities.aws import AwsClients
from bench.trust import APPLICATION, GROUPS, REQUESTER
from client.demo_aws import lambda_zip
from models.loader import parse_plan
from models.plan import ReleasePlan

OLD_VALUE, NEW_VALUE = "1.0.0", "2.0.0"
FUNCTION = "bench-checkout"
ALIAS_ROLE = "bench-lambda"
# Who decides which gate (the bench's policy, bench.trust): the requester may not approve
# her own release.
APPROVER_OF = {group: members[0] for group, members in GROUPS.items()}
# Below botocore's default pool of 10 connections per client.
SEED_THREADS = 8


def seed_targets(aws: AwsClients, count: int, prefix: str) -> list[dict[str, Any]]:
    """Create ``count`` resources in their old state; return them as plan targets."""
    lambdas = count // 2
    ssm_count = count - lambdas
    ssm = aws.client("ssm")
    targets: list[dict[str, Any]] = [
        {
            "name": f"p{i}",
            "kind": "ssm_parameter",
            "parameter": f"/bench/{prefix}/p{i}",
            "value": NEW_VALUE,
        }
        for i in range(ssm_count)
    ]
    if lambdas:
        lam = aws.client("lambda")
        role = aws.client("iam").create_role(RoleName=ALIAS_ROLE, AssumeRolePolicyDocument="{}")
        lam.create_function(
            FunctionName=FUNCTION,
            Runtime="python3.12",
            Role=role["Role"]["Arn"],
            Handler="app.handler",
            Code={"ZipFile": lambda_zip(1)},
            Publish=True,
        )
        lam.update_function_code(FunctionName=FUNCTION, ZipFile=lambda_zip(2), Publish=True)
        targets += [
            {
                "name": f"a{i}",
                "kind": "lambda_alias",
                "function": FUNCTION,
                "alias": f"{prefix}-a{i}",
                "version": "2",
            }
            for i in range(lambdas)
        ]

    def create(target: dict[str, Any]) -> None:
        if target["kind"] == "ssm_parameter":
            ssm.put_parameter(
                Name=target["parameter"], Value=OLD_VALUE, Type="String", Overwrite=True
            )
        else:
            lam.create_alias(FunctionName=FUNCTION, Name=target["alias"], FunctionVersion="1")

    with concurrent.futures.ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(create, targets))
    return targets


def lambda_without_docker(moto_endpoint: str) -> None:
    """Make ``moto_endpoint``'s Lambda answer invocations itself (it echoes the payload)
    instead of running the function's code in Docker, which no machine here has."""
    request = urllib.request.Request(
        f"{moto_endpoint}/moto-api/config",
        data=json.dumps({"lambda": {"use_docker": False}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).read()


def create_alarm(aws: AwsClients, name: str) -> None:
    """A CloudWatch alarm in state OK (moto never changes it by itself)."""
    cloudwatch = aws.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName="Errors",
        Namespace="AWS/Lambda",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="bench: healthy")


def make_plan(
    targets: list[dict[str, Any]], waves: list[dict[str, Any]], **fields: Any
) -> ReleasePlan:
    """A validated plan with a unique id, requested by alice; it names groups only (who is
    in them is the policy's business)."""
    data: dict[str, Any] = {
        "id": f"bench-{uuid.uuid4().hex[:12]}",
        "application": APPLICATION,
        "version": NEW_VALUE,
        "requested_by": REQUESTER,
        "targets": targets,
        "waves": waves,
    }
    return parse_plan(data | fields)


def one_wave_plan(targets: list[dict[str, Any]], **wave_fields: Any) -> ReleasePlan:
    """Every target in one wave of the ``finance`` department."""
    wave = {"name": "finance", "department": "finance", "targets": [t["name"] for t in targets]}
    return make_plan(targets, [wave | wave_fields])
