"""AWS clients: cached per account and region; assumed-role credentials renew themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import botocore.credentials
import pytest
from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients, acting_for, session_name
from activities.policy import PolicyReader
from activities.preflight import PreflightActivities
from models.plan import SsmParameterTarget
from models.preflight import PreflightInput, PreflightProblem, PreflightTarget

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
    session = aws._session(ROLE, "ext-1", "relman")  # noqa: SLF001 - the credentials are the point
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


def test_a_role_is_assumed_in_the_name_of_the_release(aws: AwsClients) -> None:
    with acting_for("payments-2026.12.1", "payments"):
        identity = aws.client("sts", "us-east-1", ROLE).get_caller_identity()
    # What CloudTrail records for every call the release makes with the role.
    assert identity["Arn"] == (
        "arn:aws:sts::111111111111:assumed-role/relman-deployer/relman-payments-2026.12.1"
    )
    # Another release gets a session of its own; calls for no release keep "relman".
    with acting_for("billing-7", "billing"):
        other = aws.client("sts", "us-east-1", ROLE).get_caller_identity()["Arn"]
    assert other.endswith("/relman-deployer/relman-billing-7")
    assert aws.client("sts", "us-east-1", ROLE).get_caller_identity()["Arn"].endswith("/relman")


def test_session_names_keep_to_aws_rules() -> None:
    long_a, long_b = "a" * 90 + "-first", "a" * 90 + "-second"
    assert len(session_name(long_a)) == 64 and session_name(long_a) != session_name(long_b)
    assert session_name(long_a).startswith("relman-aaaa")
    assert session_name("x y/z") == "relman-x-y-z"
    assert session_name(None) == "relman"


def test_the_client_cache_stays_bounded(aws: AwsClients) -> None:
    aws.max_clients = 3
    for n in range(5):
        with acting_for(f"release-{n}", "payments"):
            aws.client("sts", "us-east-1", ROLE)
    assert len(aws._clients) == 3 and len(aws._sessions) == 3  # noqa: SLF001


def write_policy(path, accounts: list[str]) -> None:  # type: ignore[no-untyped-def]
    path.write_text(
        "version: v1\npeople: [{id: alice, name: Alice}]\n"
        f"applications: {{payments: {{aws_accounts: {accounts}}}}}\n"
    )


def test_a_role_the_policy_does_not_allow_is_refused_before_it_is_assumed(
    aws: AwsClients, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "policy.yaml"
    write_policy(policy, ["222222222222"])
    clock = [0.0]
    reader = PolicyReader(str(policy), aws, clock=lambda: clock[0])
    checked = aws.checked_by(reader.role_refusal)
    with acting_for("payments-1", "payments"), pytest.raises(ApplicationError) as refused:
        checked.client("sts", "us-east-1", ROLE)
    assert refused.value.non_retryable and refused.value.type == "RoleNotAllowed"
    assert refused.value.message == (
        f"role {ROLE!r} is not allowed for application 'payments' (the organisation policy "
        "lists the roles and accounts relman may assume for it)"
    )
    assert checked._clients == {}  # noqa: SLF001 - nothing was assumed
    # The platform team allows the account: the next check (a second later) reads it.
    write_policy(policy, ["111111111111"])
    clock[0] += 1.5
    with acting_for("payments-1", "payments"):
        assert checked.client("sts", "us-east-1", ROLE).get_caller_identity()["Account"] == (
            "111111111111"
        )


@pytest.mark.filterwarnings("ignore:Exception\\(STSClientError\\):UserWarning")
def test_a_wrong_external_id_is_refused_and_preflight_names_the_target(
    aws: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sts.exceptions import STSClientError
    from moto.sts.models import STSBackend

    real = STSBackend.assume_role

    def trusting(self, **kwargs):  # type: ignore[no-untyped-def]
        # The role's trust policy, as AWS evaluates it: sts:ExternalId must be "dept-a".
        if kwargs["external_id"] != "dept-a":
            raise STSClientError("AccessDenied", "not authorized to perform sts:AssumeRole")
        return real(self, **kwargs)

    monkeypatch.setattr(STSBackend, "assume_role", trusting)
    target = SsmParameterTarget(
        name="flag", kind="ssm_parameter", parameter="/p/flag", value="on",
        role_arn=ROLE, external_id="dept-b",
    )  # fmt: skip
    result = PreflightActivities(aws).preflight(
        PreflightInput(
            targets=[PreflightTarget(path="targets[0]", target=target)],
            release_id="payments-1",
            application="payments",
        )
    )
    assert result.problems == [
        PreflightProblem(
            path="targets[0]",
            name="flag",
            message="cannot read ssm parameter /p/flag: AccessDenied: not authorized to "
            "perform sts:AssumeRole",
        )
    ]


def test_assuming_a_role_without_credentials_says_so(
    aws: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import NoCredentialsError

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(NoCredentialsError):
        aws.client("sts", "us-east-1", ROLE)
