"""AWS errors as Temporal must see them: permanent ones named and final, the rest retried."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.errors import aws_call, raise_aws_error


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
