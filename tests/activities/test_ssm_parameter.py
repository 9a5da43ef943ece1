"""The ssm_parameter target against a moto server over HTTP, as production talks to AWS."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DefaultFailureConverter, DefaultPayloadConverter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.release import TargetActivities
from activities.targets.ssm_parameter import SECRET_MASK, SsmParameterHandler
from models.messages import ApplyInput, CompensateInput, Snapshot, TargetInput
from models.plan import SsmParameterTarget
from tests.helpers import history_length, seed, ssm_values, writes_of

NAME = "/payments/api/version"
SECRET_OLD = "hunter2-old-secret"
SECRET_NEW = "hunter2-new-secret"


def target(
    value: str = "2.4.0", parameter: str = NAME, type_: str = "String"
) -> SsmParameterTarget:
    return SsmParameterTarget(
        name="api-version", kind="ssm_parameter", parameter=parameter, value=value, type=type_
    )


def stored(aws, name: str = NAME) -> dict:  # type: ignore[no-untyped-def]
    return aws.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]


@pytest.fixture
def handler(aws) -> SsmParameterHandler:  # type: ignore[no-untyped-def]
    return SsmParameterHandler(aws)


# --- snapshot ---------------------------------------------------------------------------


def test_snapshot_records_an_existing_parameter(aws, handler):
    seed(aws, {NAME: "2.3.1"})
    snapshot = handler.snapshot(target())
    assert snapshot == Snapshot(
        resource=f"ssm parameter {NAME}",
        exists=True,
        state={"version": 1, "type": "String", "value": "2.3.1"},
        display="2.3.1",
    )


def test_snapshot_of_an_absent_parameter_says_so(aws, handler):
    snapshot = handler.snapshot(target())
    assert (snapshot.exists, snapshot.state, snapshot.display) == (False, {}, "(absent)")


# --- apply ------------------------------------------------------------------------------


def test_apply_changes_the_value_once(aws, handler):
    seed(aws, {NAME: "2.3.1"})
    snapshot = handler.snapshot(target())

    first = handler.apply(target(), snapshot, 100)
    assert (first.changed, first.display) == (True, "2.4.0")
    assert stored(aws)["Value"] == "2.4.0"

    # A retried activity finds the value already there and writes nothing.
    again = handler.apply(target(), snapshot, 100)
    assert (again.changed, again.display) == (False, "2.4.0")
    assert history_length(aws, NAME) == 2


def test_apply_creates_a_parameter_that_did_not_exist(aws, handler):
    snapshot = handler.snapshot(target())
    assert handler.apply(target(), snapshot, 100).changed
    assert stored(aws)["Value"] == "2.4.0" and history_length(aws, NAME) == 1


# --- compensate --------------------------------------------------------------------------


def test_compensate_restores_value_and_type_exactly_and_is_idempotent(aws, handler):
    seed(aws, {NAME: "2.3.1"})
    snapshot = handler.snapshot(target())
    # The release also turns the parameter into a SecureString: compensation undoes both.
    handler.apply(target("2.4.0", type_="SecureString"), snapshot, 100)

    restored = handler.compensate(target(), snapshot)
    assert (restored.changed, restored.display) == (True, "2.3.1")
    assert (stored(aws)["Value"], stored(aws)["Type"]) == ("2.3.1", "String")
    versions = history_length(aws, NAME)

    again = handler.compensate(target(), snapshot)
    assert (again.changed, again.display) == (False, "2.3.1")
    assert history_length(aws, NAME) == versions


def test_compensate_deletes_a_parameter_the_release_created(aws, handler):
    snapshot = handler.snapshot(target())
    handler.apply(target(), snapshot, 100)

    restored = handler.compensate(target(), snapshot)
    assert (restored.changed, restored.display) == (True, "(absent)")
    assert ssm_values(aws, [NAME]) == {NAME: None}
    assert handler.compensate(target(), snapshot).changed is False


def test_secure_string_never_leaves_aws_and_is_restored_from_its_version(aws):
    seed(aws, {NAME: SECRET_OLD}, type_="SecureString")
    env = ActivityEnvironment()
    activities = TargetActivities(aws)
    secret = target(SECRET_NEW, type_="SecureString")

    snapshot = env.run(activities.snapshot_target, TargetInput(release_id="r1", target=secret))
    assert snapshot.display == SECRET_MASK
    assert snapshot.state == {"version": 1, "type": "SecureString", "key_id": "alias/aws/ssm"}
    assert SECRET_OLD not in snapshot.model_dump_json()

    applied = env.run(
        activities.apply_target, ApplyInput(release_id="r1", target=secret, snapshot=snapshot)
    )
    assert applied.display == SECRET_MASK
    assert SECRET_NEW not in applied.model_dump_json()
    assert stored(aws)["Value"] == SECRET_NEW

    compensate = CompensateInput(release_id="r1", target=secret, snapshot=snapshot)
    restored = env.run(activities.compensate_target, compensate)
    assert (restored.changed, restored.display) == (True, SECRET_MASK)
    assert SECRET_OLD not in restored.model_dump_json()
    assert (stored(aws)["Value"], stored(aws)["Type"]) == (SECRET_OLD, "SecureString")
    assert env.run(activities.compensate_target, compensate).changed is False


@pytest.mark.parametrize("source", ["secretsmanager", "ssm"])
def test_a_value_from_a_secret_is_read_at_apply_and_never_leaves_the_activity(aws, source):
    seed(aws, {NAME: SECRET_OLD})
    if source == "secretsmanager":
        arn = aws.client("secretsmanager").create_secret(
            Name="payments/db", SecretString=SECRET_NEW
        )["ARN"]
        value_from = {"secretsmanager": arn}
    else:
        aws.client("ssm").put_parameter(
            Name="/vault/payments/db", Value=SECRET_NEW, Type="SecureString"
        )
        value_from = {"ssm": "/vault/payments/db"}
    secret = SsmParameterTarget.model_validate(
        {"name": "db", "kind": "ssm_parameter", "parameter": NAME, "value_from": value_from}
    )
    env = ActivityEnvironment()
    activities = TargetActivities(aws)

    # The parameter is a plain String, but it holds what a secret held: never shown either.
    snapshot = env.run(activities.snapshot_target, TargetInput(release_id="r1", target=secret))
    assert (snapshot.state, snapshot.display) == ({"version": 1, "type": "String"}, SECRET_MASK)
    applied = env.run(
        activities.apply_target, ApplyInput(release_id="r1", target=secret, snapshot=snapshot)
    )
    assert (applied.changed, applied.display, applied.written) == (
        True, SECRET_MASK, {"version": 2, "type": "String"}
    )  # fmt: skip
    assert stored(aws)["Value"] == SECRET_NEW
    again = ApplyInput(release_id="r1", target=secret, snapshot=snapshot, written=applied.written)
    assert env.run(activities.apply_target, again).changed is False
    restored = env.run(
        activities.compensate_target,
        CompensateInput(release_id="r1", target=secret, snapshot=snapshot, written=applied.written),
    )
    assert (restored.changed, restored.display) == (True, SECRET_MASK)
    assert stored(aws)["Value"] == SECRET_OLD
    for result in (snapshot, applied, restored):
        dumped = result.model_dump_json()
        assert SECRET_NEW not in dumped and SECRET_OLD not in dumped


def test_a_value_from_secret_that_is_gone_fails_naming_it(aws, handler):
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:payments/gone-AbCdEf"
    secret = SsmParameterTarget.model_validate(
        {"name": "db", "kind": "ssm_parameter", "parameter": NAME,
         "value_from": {"secretsmanager": arn}}
    )  # fmt: skip
    with pytest.raises(ApplicationError) as failed:
        handler.apply(secret, handler.snapshot(secret), 100)
    assert failed.value.non_retryable
    assert failed.value.message.startswith(
        f"secretsmanager:GetSecretValue on {arn} failed: ResourceNotFoundException"
    )
    with pytest.raises(ClientError, match="ParameterNotFound"):
        stored(aws)  # nothing was written


def key_of(aws, name: str = NAME) -> str | None:  # type: ignore[no-untyped-def]
    found = aws.client("ssm").describe_parameters(
        ParameterFilters=[{"Key": "Name", "Values": [name]}]
    )["Parameters"]
    return found[0].get("KeyId")


def test_a_secure_string_is_restored_under_the_kms_key_it_had(aws):
    key = aws.client("kms").create_key(Description="payments secrets")["KeyMetadata"]["KeyId"]
    aws.client("ssm").put_parameter(Name=NAME, Value=SECRET_OLD, Type="SecureString", KeyId=key)
    env = ActivityEnvironment()
    activities = TargetActivities(aws)
    secret = target(SECRET_NEW, type_="SecureString")

    snapshot = env.run(activities.snapshot_target, TargetInput(release_id="r1", target=secret))
    assert snapshot.state == {"version": 1, "type": "SecureString", "key_id": key}
    env.run(activities.apply_target, ApplyInput(release_id="r1", target=secret, snapshot=snapshot))
    # AWS encrypts a SecureString written without KeyId under the account's default key (moto
    # keeps the old key on overwrite): the parameter as AWS leaves it after the release.
    aws.client("ssm").put_parameter(
        Name=NAME, Value=SECRET_NEW, Type="SecureString", KeyId="alias/aws/ssm", Overwrite=True
    )
    # The rollback puts the old value back under the customer key.
    env.run(
        activities.compensate_target,
        CompensateInput(release_id="r1", target=secret, snapshot=snapshot),
    )
    assert (stored(aws)["Value"], key_of(aws)) == (SECRET_OLD, key)


# --- errors -------------------------------------------------------------------------------


def test_a_permanent_aws_error_is_non_retryable_and_names_call_and_parameter(aws, handler):
    reserved = target(parameter="/aws/payments/flag")  # AWS reserves the /aws prefix
    snapshot = handler.snapshot(reserved)
    with pytest.raises(ApplicationError) as info:
        handler.apply(reserved, snapshot, 100)
    err = info.value
    assert err.non_retryable and err.type == "AwsOperationError"
    assert err.message.startswith(
        "ssm:PutParameter on ssm parameter /aws/payments/flag failed: AccessDeniedException"
    )


def test_a_missing_secret_version_fails_compensation_naming_it(aws, handler):
    seed(aws, {NAME: SECRET_OLD}, type_="SecureString")
    gone = Snapshot(
        resource=f"ssm parameter {NAME}",
        exists=True,
        state={"version": 7, "type": "SecureString"},
        display=SECRET_MASK,
    )
    with pytest.raises(ApplicationError) as info:
        handler.compensate(target(type_="SecureString"), gone)
    assert info.value.non_retryable
    assert info.value.message.startswith(
        f"ssm:GetParameter on {NAME}:7 failed: ParameterVersionNotFound"
    )


@pytest.mark.parametrize("call", ["get_parameter", "put_parameter"])
def test_throttling_stays_retryable_and_reaches_temporal(aws, handler, call):
    seed(aws, {NAME: "2.3.1"})
    snapshot = handler.snapshot(target())
    current = stored(aws)
    with Stubber(aws.client("ssm")) as stub:
        if call == "put_parameter":
            stub.add_response("get_parameter", {"Parameter": current})
        stub.add_client_error(call, "ThrottlingException", "Rate exceeded", 400)
        with pytest.raises(ClientError) as info:
            handler.apply(target(), snapshot, 100)
    # Left to the activity's retry policy; and it must not be its own cause, or Temporal's
    # failure converter recurses forever instead of reporting it.
    assert info.value.__cause__ is not info.value
    failure = Failure()
    DefaultFailureConverter().to_failure(info.value, DefaultPayloadConverter(), failure)
    assert "ThrottlingException" in failure.message
    assert not failure.application_failure_info.non_retryable


# --- drift: someone else changed the parameter after relman wrote it ----------------------

HOTFIX = "2.4.1-hotfix"


def applied_then_hotfixed(aws, handler):  # type: ignore[no-untyped-def]
    """2.3.1 (version 1), relman writes 2.4.0 (version 2), someone writes a hotfix (3)."""
    seed(aws, {NAME: "2.3.1"})
    snapshot = handler.snapshot(target())
    applied = handler.apply(target(), snapshot, 100)
    aws.client("ssm").put_parameter(Name=NAME, Value=HOTFIX, Type="String", Overwrite=True)
    return snapshot, applied


def test_apply_reports_what_it_wrote_read_back(aws, handler):
    seed(aws, {NAME: "2.3.1"})
    applied = handler.apply(target(), handler.snapshot(target()), 100)
    assert applied.written == {"version": 2, "type": "String", "value": "2.4.0"}
    assert applied.written_display == "version 2 (2.4.0)"


def test_a_secure_string_is_written_as_its_version_only(aws, handler):
    secret = target(SECRET_NEW, type_="SecureString")
    applied = handler.apply(secret, handler.snapshot(secret), 100)
    assert applied.written == {"version": 1, "type": "SecureString"}
    assert applied.written_display == f"version 1 ({SECRET_MASK})"
    assert SECRET_NEW not in applied.model_dump_json()


def test_compensate_leaves_a_hotfix_alone_and_says_why(aws, handler):
    snapshot, applied = applied_then_hotfixed(aws, handler)

    with pytest.raises(ApplicationError) as info:
        handler.compensate(target(), snapshot, applied.written)

    err = info.value
    assert (err.type, err.non_retryable) == ("ResourceDrifted", True)
    assert err.message == (
        "target 'api-version' (ssm parameter /payments/api/version): relman wrote version 2 "
        "(2.4.0), it now holds version 3 (2.4.1-hotfix); not restoring it to 2.3.1 without --force"
    )
    assert err.details[0] == {
        "target": "api-version",
        "resource": f"ssm parameter {NAME}",
        "written": "version 2 (2.4.0)",
        "current": f"version 3 ({HOTFIX})",
        "snapshot": "2.3.1",
    }
    assert stored(aws)["Value"] == HOTFIX and history_length(aws, NAME) == 3


def test_compensate_restores_an_untouched_parameter_and_a_retry_is_a_no_op(aws, handler):
    seed(aws, {NAME: "2.3.1"})
    snapshot = handler.snapshot(target())
    applied = handler.apply(target(), snapshot, 100)

    restored = handler.compensate(target(), snapshot, applied.written)
    assert (restored.changed, stored(aws)["Value"], stored(aws)["Type"]) == (
        True,
        "2.3.1",
        "String",
    )

    # A retry after the restore (the worker crashed before reporting it) finds the snapshot
    # already there: no drift, no write.
    writes = writes_of(aws.client("ssm"))
    assert handler.compensate(target(), snapshot, applied.written).changed is False
    assert writes == []


def test_forced_compensation_overwrites_the_hotfix(aws, handler):
    snapshot, applied = applied_then_hotfixed(aws, handler)
    restored = handler.compensate(target(), snapshot, applied.written, force=True)
    assert restored.changed and stored(aws)["Value"] == "2.3.1"


def test_compensate_leaves_a_parameter_someone_else_rewrote_before_deleting(aws, handler):
    snapshot = handler.snapshot(target())  # absent: the rollback would delete it
    applied = handler.apply(target(), snapshot, 100)
    aws.client("ssm").put_parameter(Name=NAME, Value=HOTFIX, Type="String", Overwrite=True)

    with pytest.raises(ApplicationError) as info:
        handler.compensate(target(), snapshot, applied.written)
    assert info.value.message.endswith(
        f"relman wrote version 1 (2.4.0), it now holds version 2 ({HOTFIX}); "
        "not restoring it to (absent) without --force"
    )
    assert stored(aws)["Value"] == HOTFIX


def test_a_further_step_refuses_a_parameter_changed_since_the_previous_one(aws, handler):
    snapshot, applied = applied_then_hotfixed(aws, handler)

    with pytest.raises(ApplicationError) as info:
        handler.apply(target(), snapshot, 100, applied.written)

    assert info.value.type == "ResourceDrifted"
    assert info.value.message == (
        "target 'api-version' (ssm parameter /payments/api/version): changed by someone else "
        "since relman's previous step: relman wrote version 2 (2.4.0), it now holds version 3 "
        "(2.4.1-hotfix); not applying 2.4.0"
    )
    assert stored(aws)["Value"] == HOTFIX
