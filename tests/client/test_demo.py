"""The demo's pieces against moto and the Temporal dev server (no embedded stack).

The scenarios go through ``client.service`` exactly as ``relman demo`` does; only the
address comes from ``TEMPORAL_ADDRESS`` (Temporal's own configuration) and the task queue
is the test's. ``submit`` refuses a release that overlaps a running one, which it finds
through visibility: that needs the dev server, as the time-skipping server has none. Nothing
here waits for workflow time: the bake is a real activity polling CloudWatch every second.
"""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.aws import AwsClients
from client.demo import (
    DEMO_PLAN,
    ROLLBACK_PLAN,
    RollbackOutcome,
    release_scenario,
    rollback_scenario,
    unique_release,
)
from client.demo_aws import RestoreCheck, describe, seed, set_alarm
from models.loader import load_plan
from models.plan import Elbv2WeightsTarget, LambdaAliasTarget, ReleasePlan
from models.status import ReleasePhase, ReleaseStatus

REGION = "eu-west-1"  # the rollback plan's department


@pytest.fixture
def dev_stack(tmp_path, activity_executor, task_queue):  # type: ignore[no-untyped-def]
    """What `relman dev up` sets up for the demo: the dev policy and each person's dev key;
    a worker under that policy, and where each person's key is."""
    from client.stack import ensure_dev_identities
    from common.stack_state import StackConfig
    from worker.main import build_worker

    config = StackConfig(home=tmp_path / "home")
    policy = ensure_dev_identities(config)

    def make(env: WorkflowEnvironment, aws: AwsClients) -> Any:
        return build_worker(
            env.client, task_queue, aws, activity_executor, policy_source=str(policy)
        )

    return make, config.dev_key_path


@pytest.fixture
def rollback_plan() -> ReleasePlan:
    return unique_release(load_plan(ROLLBACK_PLAN))


@pytest.fixture
def temporal_address(dev_env: WorkflowEnvironment, monkeypatch) -> str:
    """Point ``client.service`` at the dev server, as a user's TEMPORAL_ADDRESS would."""
    address = dev_env.client.service_client.config.target_host
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "default")
    monkeypatch.delenv("TEMPORAL_PROFILE", raising=False)
    return address


def alarm_state(aws: AwsClients, name: str) -> str:
    alarms = aws.client("cloudwatch", REGION).describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return str(alarms[0]["StateValue"])


def inventory(aws: AwsClients) -> dict[str, Any]:
    """How many of each demo resource exist: a second seeding must add none."""
    elbv2, lam = aws.client("elbv2", REGION), aws.client("lambda", REGION)
    lbs = elbv2.describe_load_balancers()["LoadBalancers"]
    return {
        "vpcs": len(aws.client("ec2", REGION).describe_vpcs()["Vpcs"]),
        "load_balancers": len(lbs),
        "listeners": sum(
            len(elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"])
            for lb in lbs
        ),
        "target_groups": len(elbv2.describe_target_groups()["TargetGroups"]),
        "versions": len(lam.list_versions_by_function(FunctionName="checkout-api")["Versions"]),
        "aliases": len(lam.list_aliases(FunctionName="checkout-api")["Aliases"]),
    }


def test_seeding_is_idempotent_and_resets_a_previous_run(
    aws: AwsClients, rollback_plan: ReleasePlan
) -> None:
    first = seed(rollback_plan, aws)
    before = describe(first, aws)
    counts = inventory(aws)
    listener = next(t for t in first.targets if isinstance(t, Elbv2WeightsTarget))
    alias = next(t for t in first.targets if isinstance(t, LambdaAliasTarget))
    assert (before["checkout-function"] or {}).get("FunctionVersion") == "1"
    assert (before["checkout-api-version"] or {}).get("Value") == "5.1.0"
    assert alarm_state(aws, "checkout-5xx") == "OK"

    # What a run interrupted mid-release leaves behind: everything moved, alarm firing.
    aws.client("ssm", REGION).put_parameter(
        Name="/checkout/api/version", Value="5.2.0", Type="String", Overwrite=True
    )
    aws.client("lambda", REGION).update_alias(
        FunctionName=alias.function,
        Name=alias.alias,
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    aws.client("elbv2", REGION).modify_listener(
        ListenerArn=listener.listener_arn,
        DefaultActions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": listener.blue_target_group_arn, "Weight": 50},
                        {"TargetGroupArn": listener.green_target_group_arn, "Weight": 50},
                    ]
                },
            }
        ],
    )
    set_alarm(aws, first, first.wave("canary"), "ALARM", "left over")
    assert describe(first, aws) != before

    second = seed(rollback_plan, aws)
    assert second.targets == first.targets  # bound to the same resources, none recreated
    assert describe(second, aws) == before
    assert inventory(aws) == counts
    assert alarm_state(aws, "checkout-5xx") == "OK"


@pytest.mark.devserver
async def test_release_scenario_completes_and_matches_the_plan(
    temporal_address: str,
    dev_env: WorkflowEnvironment,
    aws: AwsClients,
    dev_stack,
    task_queue: str,
) -> None:
    # The demo plan in regions of its own: a release another test left running on the
    # same parameters would (rightly) make submit refuse this one as overlapping.
    plan = unique_release(load_plan(DEMO_PLAN))
    plan = plan.model_copy(
        update={
            "departments": {
                name: dept.model_copy(update={"region": "ap-southeast-2"})
                for name, dept in plan.departments.items()
            }
        }
    )
    said: list[str] = []
    make_dev_worker, key_of = dev_stack
    async with make_dev_worker(dev_env, aws):
        final, checks = await release_scenario(plan, aws, said.append, task_queue, key_of=key_of)
    assert final.phase == ReleasePhase.COMPLETED, final.error
    assert [(c.before, c.actual) for c in checks] == [
        ("2.3.0", "2.4.0"),
        ("ledger-v1", "ledger-v2"),
        ("2.3.0", "2.4.0"),
    ]
    assert any("bob approves wave finance" in line for line in said)


@pytest.mark.devserver
async def test_rollback_scenario_restores_every_resource_exactly(
    temporal_address: str,
    dev_env: WorkflowEnvironment,
    aws: AwsClients,
    dev_stack,
    task_queue: str,
    rollback_plan: ReleasePlan,
) -> None:
    said: list[str] = []
    make_dev_worker, key_of = dev_stack
    async with make_dev_worker(dev_env, aws):
        outcome = await rollback_scenario(
            rollback_plan, aws, said.append, task_queue, key_of=key_of
        )

    final = outcome.final
    assert final.phase == ReleasePhase.ROLLED_BACK, final.error
    assert outcome.alarm == "checkout-5xx"
    assert "checkout-5xx" in (final.error or "")
    assert outcome.succeeded
    during = {c.target.name: c.during or {} for c in outcome.checks}
    # At the first step: 10 % on the new alias version and the green group, config applied.
    assert during["checkout-function"]["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.1}}
    (forward,) = during["checkout-alb"]["DefaultActions"]
    assert [g["Weight"] for g in forward["ForwardConfig"]["TargetGroups"]] == [90, 10]
    assert during["checkout-api-version"]["Value"] == "5.2.0"
    # Full describe output, before and after, field for field.
    for check in outcome.checks:
        assert check.after == check.before, check.differences()
    # Newest change first: the canary's resources, then the config wave's parameter.
    restored = [e.target for e in final.timeline if e.kind == "target_restored"]
    assert restored[-1] == "checkout-api-version"
    assert set(restored[:2]) == {"checkout-function", "checkout-alb"}
    assert any("goes into ALARM" in line for line in said)
    assert alarm_state(aws, "checkout-5xx") == "ALARM"


def test_rollback_counts_only_an_exact_restore(rollback_plan: ReleasePlan) -> None:
    alias = rollback_plan.target("checkout-function")
    before = {"FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {}}}
    during = {"FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1}}}
    # Routes the same traffic, but it is not the configuration the alias had.
    after = {"FunctionVersion": "1"}
    final = ReleaseStatus(
        release_id=rollback_plan.id,
        application="checkout",
        version="5.2.0",
        requested_by="alice",
        phase=ReleasePhase.ROLLED_BACK,
    )

    check = RestoreCheck(alias, before, during, after)
    assert check.changed and not check.restored
    assert check.differences() == ["RoutingConfig"]
    assert not RollbackOutcome(final, [check], alarm="checkout-5xx").succeeded

    restored = RestoreCheck(alias, before, during, dict(before))
    assert RollbackOutcome(final, [restored], alarm="checkout-5xx").succeeded
    # Restored, but the alarm never fired: the rollback was not the one the demo shows.
    assert not RollbackOutcome(final, [restored], alarm=None).succeeded
    # Never moved: "restored" would prove nothing.
    untouched = RestoreCheck(alias, before, dict(before), dict(before))
    assert not RollbackOutcome(final, [untouched], alarm="checkout-5xx").succeeded
