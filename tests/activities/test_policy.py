"""Loading the organisation policy from a file, S3 or SSM (a moto server over HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.policy import POLICY_ENV, PolicyActivities, policy_source, read_policy
from models.policy import LoadPolicyInput, PolicyError

POLICY: dict[str, Any] = {
    "version": "2026-03-01.1",
    "people": [{"id": "bob", "name": "Bob"}, {"id": "carol", "name": "Carol"}],
    "groups": {"finance-cab": ["bob", "carol"]},
    "applications": {"*": {"approvers": {"finance": ["finance-cab"]}}},
}


def load(source: str, aws, known_digest: str | None = None):  # type: ignore[no-untyped-def]
    activities = PolicyActivities(source, aws)
    return ActivityEnvironment().run(
        activities.load_policy, LoadPolicyInput(known_digest=known_digest)
    )


def failure(source: str, aws) -> ApplicationError:  # type: ignore[no-untyped-def]
    with pytest.raises(ApplicationError) as caught:
        load(source, aws)
    assert caught.value.non_retryable
    return caught.value


def test_one_setting_names_the_source():
    assert policy_source({POLICY_ENV: " s3://policies/relman.yaml "}) == "s3://policies/relman.yaml"
    assert policy_source({POLICY_ENV: ""}) is None
    assert policy_source({}) is None


def test_from_a_file(tmp_path: Path, aws):
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY))
    snapshot = load(str(path), aws)
    assert (snapshot.source, snapshot.version, snapshot.dev) == (str(path), "2026-03-01.1", False)
    assert snapshot.policy is not None and snapshot.digest == snapshot.policy.digest
    assert snapshot.policy.members("finance-cab") == ["bob", "carol"]


def test_from_an_s3_object(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="platform-policies")
    s3.put_object(Bucket="platform-policies", Key="relman/policy.json", Body=json.dumps(POLICY))
    snapshot = load("s3://platform-policies/relman/policy.json", aws)
    assert snapshot.policy is not None and snapshot.version == "2026-03-01.1"


def test_from_an_ssm_parameter(aws):
    aws.client("ssm").put_parameter(
        Name="/platform/relman/policy", Value=yaml.safe_dump(POLICY), Type="SecureString"
    )
    snapshot = load("ssm:/platform/relman/policy", aws)
    assert snapshot.policy is not None and snapshot.policy.person("carol") is not None


def test_an_unchanged_policy_is_not_sent_again(aws):
    aws.client("ssm").put_parameter(Name="/relman/policy", Value=json.dumps(POLICY), Type="String")
    first = load("ssm:/relman/policy", aws)
    again = load("ssm:/relman/policy", aws, known_digest=first.digest)
    assert (again.digest, again.version, again.policy) == (first.digest, first.version, None)

    changed = POLICY | {"groups": {"finance-cab": ["bob"]}}
    aws.client("ssm").put_parameter(
        Name="/relman/policy", Value=json.dumps(changed), Type="String", Overwrite=True
    )
    after = load("ssm:/relman/policy", aws, known_digest=first.digest)
    assert after.digest != first.digest
    assert after.policy is not None and after.policy.members("finance-cab") == ["bob"]


def test_an_invalid_policy_fails_for_good_naming_the_field(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="platform-policies")
    broken = POLICY | {"groups": {"finance-cab": ["bob", "zoe"]}}
    s3.put_object(Bucket="platform-policies", Key="policy.yaml", Body=yaml.safe_dump(broken))
    error = failure("s3://platform-policies/policy.yaml", aws)
    assert error.type == PolicyError.__name__
    assert error.message == (
        "s3://platform-policies/policy.yaml: groups.finance-cab[1]: unknown person 'zoe'"
    )


def test_a_missing_policy_fails_for_good_naming_where(tmp_path: Path, aws):
    error = failure("ssm:/relman/absent", aws)
    assert error.type == "AwsOperationError"
    assert error.message.startswith(
        "ssm get_parameter on ssm:/relman/absent failed: ParameterNotFound"
    )
    aws.client("s3").create_bucket(Bucket="platform-policies")
    error = failure("s3://platform-policies/absent.yaml", aws)
    assert error.message.startswith(
        "s3 get_object on s3://platform-policies/absent.yaml failed: NoSuchKey"
    )
    error = failure(str(tmp_path / "absent.yaml"), aws)
    assert error.message == (
        f"{tmp_path / 'absent.yaml'}: cannot read policy: No such file or directory"
    )


def test_an_s3_location_needs_a_bucket_and_a_key(aws):
    with pytest.raises(PolicyError) as caught:
        read_policy("s3://just-a-bucket", aws)
    assert str(caught.value) == "s3://just-a-bucket: write an S3 location as s3://bucket/key"
