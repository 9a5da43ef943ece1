"""AWS clients: cached per account and region; assumed-role credentials renew themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import botocore.credentials
import pytest

from activities.aws import AwsClients

ROLE = "arn:aws:iam::111111111111:role/relman-deployer"


def test_clients_are_built_once_per_service_region_and_role(aws: AwsClients) -> None:
    assert aws.client("ssm", "eu-west-1") is aws.client("ssm", "eu-west-1")
    assert aws.client("ssm", "eu-west-1") is not aws.client("ssm", "us-east-1")
    assert aws.client("ssm", "eu-west-1", ROLE) is not aws.client("ssm", "eu-west-1")


def test_assumed_role_works_in_the_other_account(aws: AwsClients) -> None:
    identity = aws.client("sts", "us-east-1", ROLE).get_caller_identity()
    assert identity["Account"] == "111111111111"
    assert ":assumed-role/relman-deployer/relman" in identity["Arn"]


def test_assumed_role_credentials_renew_before_they_expire(
    aws: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = aws._session(ROLE, "ext-1")  # noqa: SLF001 - the credentials are the point
    credentials = session.get_credentials()
    first = credentials.get_frozen_credentials()
    # A release that runs for days outlives the hour an assumed role lasts: move botocore's
    # clock close to the expiry and the next use assumes the role again.
    later = datetime.now(UTC) + timedelta(minutes=48)  # inside the 15-minute refresh window
    monkeypatch.setattr(botocore.credentials, "_local_now", lambda: later)
    monkeypatch.setattr(credentials, "_time_fetcher", lambda: later)
    renewed = credentials.get_frozen_credentials()
    assert renewed.access_key != first.access_key
    assert aws.client("sts", "us-east-1", ROLE).get_caller_identity()["Account"] == "111111111111"


def test_each_external_id_assumes_the_role_with_its_own(
    aws: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    import activities.aws

    asked: list[str | None] = []
    real = activities.aws.AssumeRoleCredentialFetcher

    def recording(**kwargs: object) -> object:
        asked.append(kwargs["extra_args"].get("ExternalId"))  # type: ignore[attr-defined]
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(activities.aws, "AssumeRoleCredentialFetcher", recording)
    first = aws.client("sts", "us-east-1", ROLE, "department-a")
    first.get_caller_identity()
    # Another plan naming the same role with another external id (or none) must not ride
    # on the first plan's session: each assumes the role with its own.
    second = aws.client("sts", "us-east-1", ROLE, "department-b")
    second.get_caller_identity()
    none = aws.client("sts", "us-east-1", ROLE)
    none.get_caller_identity()
    assert len({id(first), id(second), id(none)}) == 3
    assert asked == ["department-a", "department-b", None]
    assert aws.client("sts", "us-east-1", ROLE, "department-a") is first
