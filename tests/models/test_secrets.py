"""One rule for where a secret lives, whether the plan's value_from or a check's headers_from
names it: exactly one source, each of the right shape, errors naming the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.checks import SecretRef
from models.plan import ValueFrom

ARN = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:payments/db-AbCdEf"


@pytest.mark.parametrize(
    ("model", "field"), [(ValueFrom, "value_from"), (SecretRef, "headers_from")]
)
def test_a_secret_comes_from_exactly_one_source_named_in_the_error(model, field) -> None:
    with pytest.raises(ValidationError, match=f"{field} names exactly one of secretsmanager"):
        model(secretsmanager=ARN, ssm="/payments/db")
    with pytest.raises(ValidationError, match=f"{field} names exactly one of secretsmanager"):
        model()


@pytest.mark.parametrize("model", [ValueFrom, SecretRef])
def test_both_sources_are_checked_and_named_alike(model) -> None:
    with pytest.raises(ValidationError, match="secretsmanager"):
        model(secretsmanager="arn:aws:ssm:eu-west-1:111122223333:parameter/x")
    assert model(secretsmanager=ARN).source == f"secretsmanager {ARN}"
    assert model(ssm="/payments/db").source == "ssm parameter /payments/db"
