"""`relman plan iam` for job steps: each kind's calls are granted, narrowed where AWS allows."""

from __future__ import annotations

from pathlib import Path

from models.iam import plan_policies
from models.loader import load_plan

EXAMPLE = Path(__file__).parents[2] / "examples" / "migration.yaml"
W = "${aws:PrincipalAccount}"


def test_the_migration_example_grants_what_its_jobs_call() -> None:
    [policy] = plan_policies(load_plan(EXAMPLE))
    statements = {s["Sid"]: s for s in policy.document()["Statement"]}

    assert statements["EcsJobRunTask"]["Action"] == ["ecs:RunTask"]
    assert statements["EcsJobRunTask"]["Resource"] == [
        f"arn:aws:ecs:eu-west-1:{W}:task-definition/orders-migrate:12"
    ]
    assert statements["EcsJobPassTaskRoles"]["Action"] == ["iam:PassRole"]
    assert statements["EcsJobPassTaskRoles"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": ["ecs-tasks.amazonaws.com"]}
    }
    assert statements["LambdaJobs"]["Resource"] == [
        f"arn:aws:lambda:eu-west-1:{W}:function:orders-backfill"
    ]
    assert "lambda:InvokeFunction" in statements["LambdaJobs"]["Action"]
    assert statements["SsmJobCommands"]["Action"] == ["ssm:SendCommand"]
    assert sorted(statements["SsmJobCommands"]["Resource"]) == [
        f"arn:aws:ec2:eu-west-1:{W}:instance/*",
        "arn:aws:ssm:eu-west-1::document/AWS-RunShellScript",
    ]
