"""Route 53 blue/green weighted records against a moto server."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients
from activities.targets.route53_weighted import Route53WeightedHandler
from models.plan import Route53WeightedTarget
from tests.helpers import writes_of

NAME = "app.example.com"


def weighted(identifier: str, weight: int, value: str, ttl: int) -> dict[str, Any]:
    return {
        "Action": "CREATE",
        "ResourceRecordSet": {
            "Name": NAME,
            "Type": "CNAME",
            "SetIdentifier": identifier,
            "Weight": weight,
            "TTL": ttl,
            "ResourceRecords": [{"Value": value}],
        },
    }


@pytest.fixture
def zone(aws: AwsClients) -> str:
    """A zone with blue (weight 100, TTL 60) and green (weight 0, TTL 30) records."""
    route53 = aws.client("route53")
    zone_id = route53.create_hosted_zone(Name="example.com", CallerReference="relman")[
        "HostedZone"
    ]["Id"]
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                weighted("blue", 100, "blue.example.com", 60),
                weighted("green", 0, "green.example.com", 30),
                # A neighbour the handler must leave alone.
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": "zz.example.com",
                        "Type": "A",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": "192.0.2.1"}],
                    },
                },
            ]
        },
    )
    return str(zone_id)


def records(aws: AwsClients, zone_id: str) -> list[dict[str, Any]]:
    """Every record set in the zone, as ListResourceRecordSets returns them."""
    return list(
        aws.client("route53").list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    )


def weights(aws: AwsClients, zone_id: str) -> dict[str, int]:
    return {r["SetIdentifier"]: r["Weight"] for r in records(aws, zone_id) if "Weight" in r}


def target(zone_id: str, green: str = "green") -> Route53WeightedTarget:
    return Route53WeightedTarget(
        name="app-dns",
        kind="route53_weighted",
        hosted_zone_id=zone_id,
        record_name=NAME,
        blue_set_identifier="blue",
        green_set_identifier=green,
    )


def test_snapshot_records_both_record_sets(aws: AwsClients, zone: str) -> None:
    snapshot = Route53WeightedHandler(aws).snapshot(target(zone))

    assert snapshot.state == {
        "records": {
            color: {
                "Name": "app.example.com.",
                "Type": "CNAME",
                "SetIdentifier": color,
                "Weight": weight,
                "TTL": ttl,
                "ResourceRecords": [{"Value": f"{color}.example.com"}],
            }
            for color, weight, ttl in (("blue", 100, 60), ("green", 0, 30))
        }
    }
    assert snapshot.display == "blue 100 / green 0"


def test_apply_shifts_weights_in_steps_and_reruns_write_nothing(aws: AwsClients, zone: str) -> None:
    handler, new = Route53WeightedHandler(aws), target(zone)
    snapshot = handler.snapshot(new)

    for percent in (10, 50, 100):
        result = handler.apply(new, snapshot, percent)
        assert result.changed
        assert result.display == f"blue {100 - percent} / green {percent}"
        assert weights(aws, zone) == {"blue": 100 - percent, "green": percent}

        writes = writes_of(aws.client("route53"))
        rerun = handler.apply(new, snapshot, percent)
        assert not rerun.changed
        assert rerun.display == result.display
        assert writes == []

    ttls = {r["SetIdentifier"]: r["TTL"] for r in records(aws, zone) if "Weight" in r}
    assert ttls == {"blue": 60, "green": 30}


def test_compensate_restores_both_records_exactly(aws: AwsClients, zone: str) -> None:
    handler, new = Route53WeightedHandler(aws), target(zone)
    before = records(aws, zone)
    snapshot = handler.snapshot(new)
    handler.apply(new, snapshot, 50)
    handler.apply(new, snapshot, 100)

    restored = handler.compensate(new, snapshot)
    assert restored.changed
    assert restored.display == "blue 100 / green 0"
    assert records(aws, zone) == before

    writes = writes_of(aws.client("route53"))
    again = handler.compensate(new, snapshot)
    assert not again.changed
    assert writes == []
    assert records(aws, zone) == before


def test_missing_green_record_is_refused_before_any_change(aws: AwsClients, zone: str) -> None:
    before = records(aws, zone)

    with pytest.raises(ApplicationError) as raised:
        Route53WeightedHandler(aws).snapshot(target(zone, green="canary"))

    assert raised.value.message == (
        f"route53 record app.example.com in {zone}: "
        "no weighted CNAME record with SetIdentifier 'canary' (green)"
    )
    assert raised.value.type == "WeightedRecordNotFound"
    assert raised.value.non_retryable
    assert records(aws, zone) == before


def test_unknown_zone_names_the_call(aws: AwsClients) -> None:
    with pytest.raises(ApplicationError) as raised:
        Route53WeightedHandler(aws).snapshot(target("Z0000000NOSUCH"))

    assert raised.value.message == (
        "route53:ListResourceRecordSets on route53 record app.example.com in Z0000000NOSUCH "
        "failed: NoSuchHostedZone: No hosted zone found with ID: Z0000000NOSUCH"
    )
    assert raised.value.non_retryable
