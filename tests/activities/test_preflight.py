"""AWS preflight against moto over HTTP: present resources pass; each missing piece is one
problem naming the plan field, the target and what is wrong; nothing is changed."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from pydantic import TypeAdapter
from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients
from activities.preflight import PreflightActivities
from activities.webhook_addresses import allowed_networks
from bench.fixtures import create_alarm
from client.demo_aws import lambda_zip
from models.plan import Target
from models.preflight import (
    PreflightAlarms,
    PreflightInput,
    PreflightTarget,
    preflight_input,
)
from tests.activities.test_webhook_addresses import resolving
from tests.helpers import make_plan, ssm, wave

ACCOUNT = "123456789012"
_TARGET: TypeAdapter[Any] = TypeAdapter(Target)


def problems(aws: AwsClients, *targets: dict[str, Any], alarms: list[str] = ()) -> list[str]:
    items = [
        PreflightTarget(path=f"targets[{i}]", target=_TARGET.validate_python(t))
        for i, t in enumerate(targets)
    ]
    sets = (
        [PreflightAlarms(path="waves[0].alarms", wave="prod", alarms=list(alarms))]
        if alarms
        else []
    )
    result = PreflightActivities(aws).preflight(PreflightInput(targets=items, alarms=sets))
    assert result.checked == len(items) + len(sets)
    return [str(p) for p in result.problems]


# --- SSM ---------------------------------------------------------------------------------

SSM = {"name": "cfg", "kind": "ssm_parameter", "parameter": "/app/cfg", "value": "2"}


def test_ssm_parameter_present_or_absent_is_no_problem(aws: AwsClients) -> None:
    aws.client("ssm").put_parameter(Name="/app/cfg", Value="1", Type="String")

    assert problems(aws, SSM, SSM | {"name": "new", "parameter": "/app/new"}) == []
    assert aws.client("ssm").get_parameter(Name="/app/cfg")["Parameter"]["Value"] == "1"


def test_secure_string_with_a_disabled_key_is_a_problem(aws: AwsClients) -> None:
    kms = aws.client("kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    aws.client("ssm").put_parameter(Name="/app/cfg", Value="s", Type="SecureString", KeyId=key)
    assert problems(aws, SSM | {"type": "SecureString"}) == []

    kms.disable_key(KeyId=key)

    assert problems(aws, SSM | {"type": "SecureString"}) == [
        f"targets[0] (cfg): KMS key {key} of ssm parameter /app/cfg is Disabled"
    ]


def test_a_value_from_secret_must_exist_and_is_not_read(aws: AwsClients) -> None:
    secret = aws.client("secretsmanager").create_secret(Name="app/db", SecretString="pw")["ARN"]
    aws.client("ssm").put_parameter(Name="/vault/db", Value="pw", Type="SecureString")
    vaulted = {"name": "cfg", "kind": "ssm_parameter", "parameter": "/app/cfg"}
    assert (
        problems(
            aws,
            vaulted | {"value_from": {"secretsmanager": secret}},
            vaulted | {"name": "b", "value_from": {"ssm": "/vault/db"}},
        )
        == []
    )

    gone = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:app/gone-AbCdEf"
    aws.client("secretsmanager").delete_secret(SecretId=secret, RecoveryWindowInDays=7)
    assert problems(
        aws,
        vaulted | {"value_from": {"secretsmanager": gone}},
        vaulted | {"name": "b", "value_from": {"ssm": "/vault/none"}},
        vaulted | {"name": "c", "value_from": {"secretsmanager": secret}},
    ) == [
        f"targets[0].value_from (cfg): secret {gone} does not exist",
        "targets[1].value_from (b): ssm parameter /vault/none does not exist",
        f"targets[2].value_from (c): secret {secret} is scheduled for deletion",
    ]


# --- Lambda ------------------------------------------------------------------------------

LAMBDA = {"name": "api", "kind": "lambda_alias", "function": "api", "alias": "live", "version": "2"}


@pytest.fixture
def function(aws: AwsClients) -> None:
    lam = aws.client("lambda")
    role = aws.client("iam").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")
    lam.create_function(
        FunctionName="api",
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="app.handler",
        Code={"ZipFile": lambda_zip(1)},
        Publish=True,
    )
    lam.update_function_code(FunctionName="api", ZipFile=lambda_zip(2), Publish=True)
    lam.create_alias(FunctionName="api", Name="live", FunctionVersion="1")


def test_lambda_function_version_and_alias_present(aws: AwsClients, function: None) -> None:
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:api"
    assert problems(aws, LAMBDA, LAMBDA | {"name": "by-arn", "function": arn}) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"function": "nope"}, "function nope does not exist"),
        (
            {"version": "9"},
            "version 9 of function api does not exist (publish it before the release)",
        ),
        ({"alias": "beta"}, "alias beta of function api does not exist"),
    ],
)
def test_lambda_missing_piece(
    aws: AwsClients, function: None, change: dict[str, str], message: str
) -> None:
    assert problems(aws, LAMBDA | change) == [f"targets[0] (api): {message}"]


# --- ELBv2 -------------------------------------------------------------------------------


@pytest.fixture
def elb(aws: AwsClients) -> dict[str, str]:
    ec2, elbv2 = aws.client("ec2"), aws.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in ((1, "a"), (2, "b"))
    ]

    def balancer(name: str) -> str:
        created = elbv2.create_load_balancer(Name=name, Subnets=subnets)
        return str(created["LoadBalancers"][0]["LoadBalancerArn"])

    def group(name: str) -> str:
        created = elbv2.create_target_group(Name=name, Protocol="HTTP", Port=80, VpcId=vpc)
        return str(created["TargetGroups"][0]["TargetGroupArn"])

    def listener(lb: str, groups: list[str]) -> str:
        created = elbv2.create_listener(
            LoadBalancerArn=lb,
            Protocol="HTTP",
            Port=80,
            DefaultActions=[
                {
                    "Type": "forward",
                    "ForwardConfig": {
                        "TargetGroups": [{"TargetGroupArn": g, "Weight": 1} for g in groups]
                    },
                }
            ],
        )
        return str(created["Listeners"][0]["ListenerArn"])

    blue, green, other = group("blue"), group("green"), group("other")
    web = listener(balancer("web"), [blue, green])
    listener(balancer("admin"), [other])
    return {"listener": web, "blue": blue, "green": green, "other": other}


def elb_target(elb: dict[str, str], **change: str) -> dict[str, Any]:
    return {
        "name": "web-lb",
        "kind": "elbv2_weights",
        "listener_arn": elb["listener"],
        "blue_target_group_arn": elb["blue"],
        "green_target_group_arn": elb["green"],
    } | change


def test_listener_and_both_target_groups_present(aws: AwsClients, elb: dict[str, str]) -> None:
    assert problems(aws, elb_target(elb)) == []


def test_missing_listener_and_target_group(aws: AwsClients, elb: dict[str, str]) -> None:
    listener = elb["listener"].rsplit("/", 1)[0] + "/0000000000000000"
    group = elb["green"].rsplit("/", 1)[0] + "/0000000000000000"

    found = problems(aws, elb_target(elb, listener_arn=listener, green_target_group_arn=group))

    assert found == [
        f"targets[0] (web-lb): listener {listener} does not exist",
        f"targets[0] (web-lb): target group {group} does not exist",
    ]


def test_target_group_of_another_load_balancer(aws: AwsClients, elb: dict[str, str]) -> None:
    (found,) = problems(aws, elb_target(elb, green_target_group_arn=elb["other"]))

    assert found.startswith(
        f"targets[0] (web-lb): target group {elb['other']} is not on the listener's load balancer"
    )


# --- Route 53 ----------------------------------------------------------------------------


@pytest.fixture
def zone(aws: AwsClients) -> str:
    route53 = aws.client("route53")
    zone_id = route53.create_hosted_zone(Name="example.com", CallerReference="t")["HostedZone"][
        "Id"
    ].rsplit("/", 1)[-1]

    def record(identifier: str, weight: int) -> dict[str, Any]:
        return {
            "Action": "CREATE",
            "ResourceRecordSet": {
                "Name": "web.example.com.",
                "Type": "CNAME",
                "SetIdentifier": identifier,
                "Weight": weight,
                "TTL": 60,
                "ResourceRecords": [{"Value": f"{identifier}.example.com"}],
            },
        }

    route53.change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": [record("blue", 100), record("green", 0)]}
    )
    return str(zone_id)


def dns_target(zone: str, **change: str) -> dict[str, Any]:
    return {
        "name": "dns",
        "kind": "route53_weighted",
        "hosted_zone_id": zone,
        "record_name": "web.example.com",
        "blue_set_identifier": "blue",
        "green_set_identifier": "green",
    } | change


def test_zone_and_both_weighted_records_present(aws: AwsClients, zone: str) -> None:
    assert problems(aws, dns_target(zone)) == []


def test_missing_zone_and_missing_record(aws: AwsClients, zone: str) -> None:
    assert problems(
        aws, dns_target("ZNOSUCHZONE"), dns_target(zone, green_set_identifier="g2")
    ) == [
        "targets[0] (dns): hosted zone ZNOSUCHZONE does not exist",
        "targets[1] (dns): no weighted CNAME record web.example.com with SetIdentifier 'g2' "
        f"(green) in hosted zone {zone}",
    ]


# --- ECS ---------------------------------------------------------------------------------

ECS = {
    "name": "svc",
    "kind": "ecs_service",
    "cluster": "prod",
    "service": "web",
    "task_definition": "web:1",
}


@pytest.fixture
def cluster(aws: AwsClients) -> None:
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="prod")
    ecs.register_task_definition(
        family="web", containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}]
    )
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition="web:1", desiredCount=1)


def test_cluster_service_and_task_definition_present(aws: AwsClients, cluster: None) -> None:
    assert problems(aws, ECS) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cluster": "staging"}, "ecs cluster staging does not exist"),
        ({"service": "api"}, "ecs service api does not exist in cluster prod"),
        ({"task_definition": "web:7"}, "task definition web:7 is not registered"),
    ],
)
def test_ecs_missing_piece(
    aws: AwsClients, cluster: None, change: dict[str, str], message: str
) -> None:
    assert problems(aws, ECS | change) == [f"targets[0] (svc): {message}"]


# --- S3 ----------------------------------------------------------------------------------


@pytest.fixture
def version(aws: AwsClients) -> str:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="rel")
    s3.put_bucket_versioning(Bucket="rel", VersioningConfiguration={"Status": "Enabled"})
    s3.create_bucket(Bucket="plain")
    return str(s3.put_object(Bucket="rel", Key="app-2.zip", Body=b"2")["VersionId"])


def s3_target(version: str, **change: str) -> dict[str, Any]:
    return {
        "name": "art",
        "kind": "s3_artifact",
        "bucket": "rel",
        "key": "app.zip",
        "source_key": "app-2.zip",
        "source_version_id": version,
    } | change


def test_versioned_bucket_and_source_version_present(aws: AwsClients, version: str) -> None:
    assert problems(aws, s3_target(version)) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bucket": "nosuch"}, "bucket nosuch does not exist"),
        (
            {"bucket": "plain"},
            "bucket plain must have versioning enabled to roll back (it is never enabled)",
        ),
        ({"source_key": "app-3.zip"}, "s3://rel/app-3.zip has no version '{version}'"),
    ],
)
def test_s3_missing_piece(
    aws: AwsClients, version: str, change: dict[str, str], message: str
) -> None:
    assert problems(aws, s3_target(version, **change)) == [
        f"targets[0] (art): {message.format(version=version)}"
    ]


# --- alarms, several problems at once, and the caller's account --------------------------


def test_missing_alarms_are_named_with_the_region(aws: AwsClients) -> None:
    create_alarm(aws, "errors")

    assert problems(aws, alarms=["errors", "latency"]) == [
        "waves[0].alarms (prod): CloudWatch alarm 'latency' does not exist in us-east-1"
    ]


def test_every_problem_of_a_release_is_reported_together(aws: AwsClients, cluster: None) -> None:
    found = problems(aws, SSM, ECS | {"service": "api"}, LAMBDA, alarms=["errors"])

    assert found == [
        "targets[1] (svc): ecs service api does not exist in cluster prod",
        "targets[2] (api): function api does not exist",
        "waves[0].alarms (prod): CloudWatch alarm 'errors' does not exist in us-east-1",
    ]


# --- the plan's webhook -------------------------------------------------------------------

WEBHOOK = "https://hooks.relman.test/hooks/T0KEN"
REFUSED_AS = "webhooks may not reach it (RELMAN_WEBHOOK_ALLOW_NETWORKS lists the networks they may)"


def webhook_problems(aws: AwsClients, url: str, **kwargs: Any) -> list[str]:
    result = PreflightActivities(aws, **kwargs).preflight(PreflightInput(webhook_url=url))
    return [str(p) for p in result.problems]


def test_a_plan_whose_webhook_resolves_privately_is_refused_at_start(
    aws: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolving(monkeypatch, "hooks.relman.test", "93.184.216.34", "10.0.0.5")
    plan = make_plan(
        [ssm("a", "/a", "1")], [wave("w", ["a"])], notifications={"webhook_url": WEBHOOK}
    )

    result = PreflightActivities(aws).preflight(preflight_input(plan))

    assert [p.model_dump() for p in result.problems] == [
        {
            "path": "notifications.webhook_url",
            "name": "https://hooks.relman.test/…",
            "message": f"host 'hooks.relman.test' resolves to a private address: {REFUSED_AS}",
        }
    ]


def test_a_webhook_host_that_does_not_resolve_is_a_problem(
    aws: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    def nowhere(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nowhere)

    assert webhook_problems(aws, WEBHOOK) == [
        "notifications.webhook_url (https://hooks.relman.test/…): host 'hooks.relman.test' "
        "does not resolve"
    ]


def test_a_webhook_in_an_allowed_network_or_public_passes_but_never_metadata(
    aws: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = allowed_networks("10.0.0.0/8,169.254.0.0/16")
    resolving(monkeypatch, "hooks.relman.test", "10.0.0.5")
    assert webhook_problems(aws, WEBHOOK, webhook_networks=allowed) == []
    resolving(monkeypatch, "hooks.relman.test", "93.184.216.34")
    assert webhook_problems(aws, WEBHOOK) == []
    resolving(monkeypatch, "hooks.relman.test", "169.254.169.254")
    assert webhook_problems(aws, WEBHOOK, webhook_networks=allowed) == [
        "notifications.webhook_url (https://hooks.relman.test/…): host 'hooks.relman.test' "
        "resolves to a cloud metadata address: webhooks may never reach it"
    ]


def test_the_workers_own_default_webhook_is_not_checked(aws: AwsClients) -> None:
    url = "http://127.0.0.1:9/hooks/T0KEN"
    assert webhook_problems(aws, url, trusted_webhooks=[url]) == []
    assert webhook_problems(aws, url) == [
        "notifications.webhook_url (http://127.0.0.1:9/…): host '127.0.0.1' resolves to "
        f"a loopback address: {REFUSED_AS}"
    ]


def test_a_dns_server_that_does_not_answer_is_left_to_the_retry_policy(
    aws: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    def silent(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", silent)
    with pytest.raises(ApplicationError) as caught:
        webhook_problems(aws, WEBHOOK)
    assert not caught.value.non_retryable
    assert caught.value.message == (
        "webhook https://hooks.relman.test/…: host 'hooks.relman.test' could not be resolved "
        "now (DNS did not answer)"
    )
