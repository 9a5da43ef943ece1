"""Canonical resource keys: each spelling of one resource gives one key; different
resources give different keys."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from models.plan import Target
from models.resources import ResourceKey, resource_keys

ACCOUNT = "123456789012"
OTHER = "210987654321"
DEFAULT = "us-east-1"
SAME_ACCOUNT_ROLE = f"arn:aws:iam::{ACCOUNT}:role/deployer"
_TARGET: TypeAdapter[Any] = TypeAdapter(Target)


def keys(**fields: Any) -> list[ResourceKey]:
    target = _TARGET.validate_python({"name": "t"} | fields)
    return resource_keys(target, account=ACCOUNT, default_region=DEFAULT)


SSM = {"kind": "ssm_parameter", "parameter": "/app/version", "value": "2"}
LAMBDA = {"kind": "lambda_alias", "function": "checkout", "alias": "live", "version": "2"}
DNS = {
    "kind": "route53_weighted",
    "hosted_zone_id": "Z123",
    "record_name": "Web.Example.com",
    "blue_set_identifier": "blue",
    "green_set_identifier": "green",
}
ECS = {"kind": "ecs_service", "cluster": "main", "service": "web", "task_definition": "web:2"}
S3 = {
    "kind": "s3_artifact",
    "bucket": "rel",
    "key": "a.zip",
    "source_key": "b",
    "source_version_id": "v",
}


def test_an_ssm_parameter_is_keyed_by_its_arn_in_the_account_and_region() -> None:
    assert keys(**SSM) == [
        ResourceKey(ACCOUNT, DEFAULT, f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/app/version")
    ]


@pytest.mark.parametrize(
    ("spelled", "same_as"),
    [
        pytest.param(SSM | {"region": DEFAULT}, SSM, id="explicit-default-region"),
        pytest.param(SSM | {"role_arn": SAME_ACCOUNT_ROLE}, SSM, id="role-into-same-account"),
        pytest.param(SSM | {"parameter": "app/version"}, SSM, id="parameter-without-slash"),
        pytest.param(
            SSM | {"parameter": f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/app/version"},
            SSM,
            id="parameter-arn",
        ),
        pytest.param(
            LAMBDA | {"function": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:checkout"},
            LAMBDA,
            id="function-arn",
        ),
        pytest.param(
            LAMBDA | {"function": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:checkout:7"},
            LAMBDA,
            id="qualified-function-arn",
        ),
        pytest.param(LAMBDA | {"region": DEFAULT}, LAMBDA, id="lambda-explicit-region"),
        pytest.param(DNS | {"record_name": "web.example.com."}, DNS, id="record-trailing-dot"),
        pytest.param(DNS | {"hosted_zone_id": "/hostedzone/Z123"}, DNS, id="zone-with-prefix"),
        pytest.param(
            DNS | {"role_arn": f"arn:aws:iam::{OTHER}:role/dns"}, DNS, id="zone-through-a-role"
        ),
        pytest.param(
            ECS | {"cluster": f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/main"},
            ECS,
            id="cluster-arn",
        ),
        pytest.param(
            ECS | {"service": f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/main/web"},
            ECS,
            id="service-arn",
        ),
        pytest.param(
            ECS | {"service": f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/web"},
            ECS,
            id="short-service-arn",
        ),
        pytest.param(S3 | {"region": "eu-west-1"}, S3, id="bucket-in-any-region"),
    ],
)
def test_spellings_of_one_resource_give_one_key(
    spelled: dict[str, Any], same_as: dict[str, Any]
) -> None:
    assert keys(**spelled) == keys(**same_as)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param(SSM, SSM | {"region": "eu-west-1"}, id="other-region"),
        pytest.param(
            SSM, SSM | {"role_arn": f"arn:aws:iam::{OTHER}:role/deployer"}, id="other-account"
        ),
        pytest.param(LAMBDA, LAMBDA | {"alias": "beta"}, id="other-alias"),
        pytest.param(DNS, DNS | {"record_type": "A"}, id="other-record-type"),
        pytest.param(ECS, ECS | {"cluster": "batch"}, id="other-cluster"),
        pytest.param(S3, S3 | {"key": "b.zip"}, id="other-key"),
    ],
)
def test_different_resources_give_different_keys(
    one: dict[str, Any], other: dict[str, Any]
) -> None:
    assert not set(keys(**one)) & set(keys(**other))


def test_a_weighted_target_claims_both_of_its_records() -> None:
    found = [k.arn for k in keys(**DNS)]

    assert found == [
        "arn:aws:route53:::hostedzone/Z123/web.example.com./CNAME/blue",
        "arn:aws:route53:::hostedzone/Z123/web.example.com./CNAME/green",
    ]


def test_a_listener_is_keyed_by_the_account_and_region_its_arn_names() -> None:
    listener = f"arn:aws:elasticloadbalancing:eu-west-1:{OTHER}:listener/app/web/1a/2b"
    group = f"arn:aws:elasticloadbalancing:eu-west-1:{OTHER}:targetgroup/blue/1"

    found = keys(
        kind="elbv2_weights",
        listener_arn=listener,
        blue_target_group_arn=group,
        green_target_group_arn=group.replace("blue", "green"),
    )

    assert found == [ResourceKey(OTHER, "eu-west-1", listener)]


def test_a_region_of_another_partition_keys_in_that_partition() -> None:
    (key,) = keys(**SSM, region="cn-north-1")

    assert key.arn == f"arn:aws-cn:ssm:cn-north-1:{ACCOUNT}:parameter/app/version"


def test_the_digest_is_stable_and_short() -> None:
    (key,) = keys(**SSM)

    assert key.digest() == keys(**SSM, region=DEFAULT)[0].digest()
    assert len(key.digest()) == 16
