"""Lambda alias weighted routing against a moto server: steps, re-runs, rollback, bad input.

moto stores functions without running them (nothing here invokes one, so no docker), and
accepts alias weights to versions that do not exist: the handler checks those itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients
from activities.targets.lambda_alias import LambdaAliasHandler
from client.demo_aws import lambda_zip
from models.plan import LambdaAliasTarget
from tests.helpers import writes_of

FUNCTION = "checkout"
ALIAS = "live"


def publish_versions(aws: AwsClients, count: int) -> None:
    """``checkout`` with versions 1..count published."""
    role = aws.client("iam").create_role(RoleName="lambda", AssumeRolePolicyDocument="{}")
    lam = aws.client("lambda")
    lam.create_function(
        FunctionName=FUNCTION,
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="app.handler",
        Code={"ZipFile": lambda_zip(1)},
        Publish=True,
    )
    for revision in range(2, count + 1):
        lam.update_function_code(FunctionName=FUNCTION, ZipFile=lambda_zip(revision), Publish=True)


def alias_state(aws: AwsClients) -> dict[str, Any]:
    """What the alias routes where, with its description (no revision id or metadata)."""
    alias = aws.client("lambda").get_alias(FunctionName=FUNCTION, Name=ALIAS)
    weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return {
        "version": alias["FunctionVersion"],
        "weights": weights,
        "description": alias["Description"],
    }


def target(version: str) -> LambdaAliasTarget:
    return LambdaAliasTarget(
        name="checkout-api", kind="lambda_alias", function=FUNCTION, alias=ALIAS, version=version
    )


@pytest.fixture
def handler(aws: AwsClients) -> LambdaAliasHandler:
    """Versions 1 and 2; the alias on version 1 with no routing."""
    publish_versions(aws, 2)
    aws.client("lambda").create_alias(
        FunctionName=FUNCTION, Name=ALIAS, FunctionVersion="1", Description="production"
    )
    return LambdaAliasHandler(aws)


def test_snapshot_records_version_and_weights(handler: LambdaAliasHandler) -> None:
    snapshot = handler.snapshot(target("2"))

    assert snapshot.exists
    assert snapshot.state == {"function_version": "1", "additional_version_weights": {}}
    assert snapshot.display == "1: 100%"


def test_apply_shifts_traffic_in_steps_and_reruns_write_nothing(
    aws: AwsClients, handler: LambdaAliasHandler
) -> None:
    new = target("2")
    snapshot = handler.snapshot(new)
    steps = [
        (10, "1", {"2": 0.1}, "1: 90% / 2: 10%"),
        (50, "1", {"2": 0.5}, "1: 50% / 2: 50%"),
        (100, "2", {}, "2: 100%"),
    ]
    for percent, version, weights, display in steps:
        result = handler.apply(new, snapshot, percent)
        assert result.changed
        assert result.display == display
        assert alias_state(aws) == {
            "version": version,
            "weights": weights,
            "description": "production",
        }

        writes = writes_of(aws.client("lambda"))
        rerun = handler.apply(new, snapshot, percent)  # e.g. the worker crashed after writing
        assert not rerun.changed
        assert rerun.display == display
        assert writes == []
        assert alias_state(aws)["weights"] == weights


def test_compensate_restores_version_and_routing_exactly(aws: AwsClients) -> None:
    # A canary of version 2 is still running when the release of version 3 starts.
    publish_versions(aws, 3)
    aws.client("lambda").create_alias(
        FunctionName=FUNCTION,
        Name=ALIAS,
        FunctionVersion="1",
        Description="production",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.05}},
    )
    handler = LambdaAliasHandler(aws)
    new = target("3")
    before = alias_state(aws)
    snapshot = handler.snapshot(new)
    assert snapshot.display == "1: 95% / 2: 5%"

    handler.apply(new, snapshot, 50)
    assert alias_state(aws)["weights"] == {"3": 0.5}
    handler.apply(new, snapshot, 100)
    assert alias_state(aws) == {"version": "3", "weights": {}, "description": "production"}

    restored = handler.compensate(new, snapshot)
    assert restored.changed
    assert restored.display == "1: 95% / 2: 5%"
    assert alias_state(aws) == before

    writes = writes_of(aws.client("lambda"))
    again = handler.compensate(new, snapshot)
    assert not again.changed
    assert writes == []
    assert alias_state(aws) == before


def test_unpublished_version_is_refused_before_any_change(
    aws: AwsClients, handler: LambdaAliasHandler
) -> None:
    missing = target("7")
    snapshot = handler.snapshot(missing)

    with pytest.raises(ApplicationError) as raised:
        handler.apply(missing, snapshot, 10)

    assert raised.value.message == (
        "lambda alias checkout:live: version 7 of function checkout does not exist "
        "(publish it before the release)"
    )
    assert raised.value.type == "LambdaVersionNotFound"
    assert raised.value.non_retryable
    assert alias_state(aws) == {"version": "1", "weights": {}, "description": "production"}


def test_missing_alias_names_the_call_and_resource(aws: AwsClients) -> None:
    publish_versions(aws, 2)

    with pytest.raises(ApplicationError) as raised:
        LambdaAliasHandler(aws).snapshot(target("2"))

    assert raised.value.message == (
        "lambda:GetAlias on lambda alias checkout:live failed: ResourceNotFoundException: "
        "Cannot find alias arn: arn:aws:lambda:us-east-1:123456789012:function:checkout:live"
    )
    assert raised.value.non_retryable
