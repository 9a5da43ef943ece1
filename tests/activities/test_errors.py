"""AWS errors as Temporal must see them: permanent ones named and final, the rest retried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.aws import AwsClients
from activities.errors import aws_call, classified, permanent_error, raise_aws_error
from activities.release import TargetActivities
from models.messages import CompensateInput, Snapshot
from models.plan import SsmParameterTarget
from tests.helpers import seed, ssm_values


def client_error(code: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "GetFunctionConfiguration")


@pytest.mark.parametrize("code", ["ThrottlingException", "ServiceUnavailable", "InternalError"])
def test_transient_errors_propagate_unchanged_for_the_retry_policy(code: str) -> None:
    error = client_error(code)
    with pytest.raises(ClientError) as raised:
        raise_aws_error(error, "lambda:GetFunctionConfiguration", "lambda alias api:live")
    assert raised.value is error
    # Never its own cause: Temporal's failure converter walks the chain.
    assert raised.value.__cause__ is not error


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "ResourceNotFoundException", "NoSuchHostedZone"]
)
def test_permanent_errors_are_final_and_name_the_call_and_resource(code: str) -> None:
    with pytest.raises(ApplicationError) as raised, aws_call("lambda:UpdateAlias", "alias x"):
        raise client_error(code, "nope")
    assert raised.value.non_retryable
    assert raised.value.message == f"lambda:UpdateAlias on alias x failed: {code}: nope"


# --- errors botocore raises itself, and snapshots of another shape: through the activities ---

PARAM = "/errors/flag"


def compensate(activities: TargetActivities, state: dict[str, Any]) -> Any:
    """Restore PARAM to a snapshot holding ``state``, as the compensation activity."""
    target = SsmParameterTarget(name="flag", kind="ssm_parameter", parameter=PARAM, value="on")
    snapshot = Snapshot(resource=target.resource, exists=True, state=state, display="off")
    return ActivityEnvironment().run(
        activities.compensate_target,
        CompensateInput(release_id="rel-errors", target=target, snapshot=snapshot),
    )


def test_invalid_request_parameters_are_final_not_retried(aws: AwsClients) -> None:
    seed(aws, {PARAM: "on"})
    # botocore refuses the request before sending it (a value that is not a string).
    with pytest.raises(ApplicationError) as raised:
        compensate(TargetActivities(aws), {"type": "String", "value": 7, "version": 1})
    assert raised.value.non_retryable
    assert raised.value.message.startswith(
        f"ssm parameter {PARAM}: ParamValidationError: Parameter validation failed:"
    )
    assert ssm_values(aws, [PARAM]) == {PARAM: "on"}


def test_a_worker_without_credentials_fails_at_once_naming_it(
    aws: AwsClients, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seed(aws, {PARAM: "on"})
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bare = AwsClients(endpoint_url=aws.endpoint_url, default_region="us-east-1", max_attempts=1)
    with pytest.raises(ApplicationError) as raised:
        compensate(TargetActivities(bare), {"type": "String", "value": "off", "version": 1})
    assert raised.value.non_retryable
    assert raised.value.message == (
        f"ssm parameter {PARAM}: NoCredentialsError: Unable to locate credentials"
    )
    assert ssm_values(aws, [PARAM]) == {PARAM: "on"}


def test_a_snapshot_this_worker_cannot_read_is_final_and_says_so(aws: AwsClients) -> None:
    seed(aws, {PARAM: "on"})
    with pytest.raises(ApplicationError) as raised:
        compensate(TargetActivities(aws), {"value": "off"})  # no "type": another shape
    assert raised.value.non_retryable and raised.value.type == "SnapshotUnreadable"
    assert raised.value.message == (
        f"ssm parameter {PARAM}: this worker cannot read the state recorded for it "
        "(KeyError: 'type'); was it recorded by another relman version?"
    )
    assert ssm_values(aws, [PARAM]) == {PARAM: "on"}


def test_an_unreachable_endpoint_stays_transient_for_the_retry_policy() -> None:
    unreachable = EndpointConnectionError(endpoint_url="http://127.0.0.1:1/")
    assert permanent_error(unreachable, "ssm parameter /x") is None
    with pytest.raises(EndpointConnectionError), classified("ssm parameter /x"):
        raise unreachable
