"""Lambda alias weighted routing against a moto server: steps, re-runs, rollback, bad input.

moto stores functions without running them (nothing here invokes one, so no docker), and
accepts alias weights to versions that do not exist: the handler checks those itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber
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


def alias_on_version_1(aws: AwsClients, versions: int) -> LambdaAliasHandler:
    """Versions 1..``versions``; the alias on version 1 with no routing."""
    publish_versions(aws, versions)
    aws.client("lambda").create_alias(
        FunctionName=FUNCTION, Name=ALIAS, FunctionVersion="1", Description="production"
    )
    return LambdaAliasHandler(aws)


@pytest.fixture
def handler(aws: AwsClients) -> LambdaAliasHandler:
    """Versions 1 and 2; the alias on version 1 with no routing."""
    return alias_on_version_1(aws, 2)


def test_snapshot_records_version_and_weights(handler: LambdaAliasHandler) -> None:
    snapshot = handler.snapshot(target("2"))

    assert snapshot.exists
    assert snapshot.state == {"function_version": "1", "additional_version_weights": {}}
    assert snapshot.display == "version 1 (all traffic)"


def test_apply_shifts_traffic_in_steps_and_reruns_write_nothing(
    aws: AwsClients, handler: LambdaAliasHandler
) -> None:
    new = target("2")
    snapshot = handler.snapshot(new)
    steps = [
        (10, "1", {"2": 0.1}, "version 1 90% / version 2 10%"),
        (50, "1", {"2": 0.5}, "version 1 50% / version 2 50%"),
        (100, "2", {}, "version 2 (all traffic)"),
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
    assert snapshot.display == "version 1 95% / version 2 5%"

    handler.apply(new, snapshot, 50)
    assert alias_state(aws)["weights"] == {"3": 0.5}
    handler.apply(new, snapshot, 100)
    assert alias_state(aws) == {"version": "3", "weights": {}, "description": "production"}

    restored = handler.compensate(new, snapshot)
    assert restored.changed
    assert restored.display == "version 1 95% / version 2 5%"
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


# --- drift: someone else moved the alias after relman wrote it ----------------------------


def hotfix(aws: AwsClients, version: str) -> None:
    """Someone points the alias at ``version`` by hand, dropping relman's routing."""
    aws.client("lambda").update_alias(
        FunctionName=FUNCTION, Name=ALIAS, FunctionVersion=version, RoutingConfig={}
    )


@pytest.fixture
def three(aws: AwsClients) -> LambdaAliasHandler:
    """Versions 1..3; the alias on version 1 with no routing."""
    return alias_on_version_1(aws, 3)


def test_apply_reports_version_routing_and_revision_read_back(
    aws: AwsClients, handler: LambdaAliasHandler
) -> None:
    applied = handler.apply(target("2"), handler.snapshot(target("2")), 10)
    revision = aws.client("lambda").get_alias(FunctionName=FUNCTION, Name=ALIAS)["RevisionId"]
    assert applied.written == {
        "function_version": "1",
        "additional_version_weights": {"2": 0.1},
        "revision_id": revision,
    }
    assert applied.written_display == "version 1 90% / version 2 10%"


def test_compensate_leaves_a_hotfixed_alias_alone(
    aws: AwsClients, three: LambdaAliasHandler
) -> None:
    new = target("2")
    snapshot = three.snapshot(new)
    applied = three.apply(new, snapshot, 50)
    hotfix(aws, "3")

    with pytest.raises(ApplicationError) as raised:
        three.compensate(new, snapshot, applied.written)

    assert (raised.value.type, raised.value.non_retryable) == ("ResourceDrifted", True)
    assert raised.value.message == (
        "target 'checkout-api' (lambda alias checkout:live): relman wrote version 1 50% / "
        "version 2 50%, it now holds version 3 (all traffic); not restoring it to version 1 "
        "(all traffic) without --force"
    )
    assert raised.value.details[0] == {
        "target": "checkout-api",
        "resource": "lambda alias checkout:live",
        "written": "version 1 50% / version 2 50%",
        "current": "version 3 (all traffic)",
        "snapshot": "version 1 (all traffic)",
    }
    assert alias_state(aws) == {"version": "3", "weights": {}, "description": "production"}


def test_compensate_restores_an_untouched_alias_and_a_retry_is_a_no_op(
    aws: AwsClients, handler: LambdaAliasHandler
) -> None:
    new = target("2")
    snapshot = handler.snapshot(new)
    before = alias_state(aws)
    applied = handler.apply(new, snapshot, 50)

    assert handler.compensate(new, snapshot, applied.written).changed
    assert alias_state(aws) == before
    writes = writes_of(aws.client("lambda"))
    assert not handler.compensate(new, snapshot, applied.written).changed
    assert writes == []


def test_forced_compensation_overwrites_the_hotfix(
    aws: AwsClients, three: LambdaAliasHandler
) -> None:
    new = target("2")
    snapshot = three.snapshot(new)
    applied = three.apply(new, snapshot, 50)
    hotfix(aws, "3")

    assert three.compensate(new, snapshot, applied.written, force=True).changed
    assert alias_state(aws) == {"version": "1", "weights": {}, "description": "production"}


def test_a_further_step_refuses_an_alias_changed_since_the_previous_one(
    aws: AwsClients, three: LambdaAliasHandler
) -> None:
    new = target("2")
    snapshot = three.snapshot(new)
    first = three.apply(new, snapshot, 10)
    # A re-run of the same step (the worker crashed after writing) is still a no-op.
    assert not three.apply(new, snapshot, 10, first.written).changed
    hotfix(aws, "3")

    with pytest.raises(ApplicationError) as raised:
        three.apply(new, snapshot, 50, first.written)

    assert raised.value.type == "ResourceDrifted"
    assert raised.value.message == (
        "target 'checkout-api' (lambda alias checkout:live): changed by someone else since "
        "relman's previous step: relman wrote version 1 90% / version 2 10%, it now holds "
        "version 3 (all traffic); not applying version 1 50% / version 2 50%"
    )
    assert alias_state(aws)["version"] == "3"


def test_a_step_routes_from_the_version_the_alias_holds_not_the_snapshots(
    aws: AwsClients, three: LambdaAliasHandler
) -> None:
    new = target("3")
    snapshot = three.snapshot(new)  # on version 1
    hotfix(aws, "2")  # moved before the release's first step

    first = three.apply(new, snapshot, 10)
    assert alias_state(aws)["version"] == "2" and alias_state(aws)["weights"] == {"3": 0.1}
    three.apply(new, snapshot, 50, first.written)
    assert alias_state(aws)["version"] == "2" and alias_state(aws)["weights"] == {"3": 0.5}


def test_moto_neither_enforces_nor_moves_the_revision_id(
    aws: AwsClients, handler: LambdaAliasHandler
) -> None:
    """Why the handler compares routing before writing: moto takes any RevisionId and keeps
    one revision id for the alias's whole life (AWS refuses a stale one with
    PreconditionFailedException, which the handler turns into ResourceDrifted)."""
    lam = aws.client("lambda")
    revision = lam.get_alias(FunctionName=FUNCTION, Name=ALIAS)["RevisionId"]
    lam.update_alias(FunctionName=FUNCTION, Name=ALIAS, FunctionVersion="2", RevisionId="stale")
    assert lam.get_alias(FunctionName=FUNCTION, Name=ALIAS)["RevisionId"] == revision


def test_a_write_refused_for_a_stale_revision_is_a_drift(
    aws: AwsClients, handler: LambdaAliasHandler
) -> None:
    """AWS's answer to a RevisionId that no longer matches, stubbed (moto never gives it):
    the alias changed between the handler's read and its write."""
    new = target("2")
    snapshot = handler.snapshot(new)
    applied = handler.apply(new, snapshot, 50)
    alias = dict(aws.client("lambda").get_alias(FunctionName=FUNCTION, Name=ALIAS))
    alias.pop("ResponseMetadata")
    moved = {**alias, "FunctionVersion": "2", "RoutingConfig": {"AdditionalVersionWeights": {}}}
    with Stubber(aws.client("lambda")) as stub:
        stub.add_response("get_alias", alias)
        stub.add_client_error("update_alias", "PreconditionFailedException", "stale", 412)
        stub.add_response("get_alias", moved)
        with pytest.raises(ApplicationError) as raised:
            handler.compensate(new, snapshot, applied.written)
    assert raised.value.type == "ResourceDrifted"
    assert (
        "it now holds version 2 (all traffic); not restoring it to version 1 (all traffic) "
        "without --force"
    ) in (raised.value.message)
