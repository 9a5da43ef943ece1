"""Route 53 blue/green weighted records against a moto server."""

from __future__ import annotations

from types import SimpleNamespace
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


# --- drift: someone else changed a record after relman wrote it ---------------------------


@pytest.fixture
def upserted_zone(aws: AwsClients) -> str:
    """The ``zone`` records, written with UPSERT.

    moto refuses a CREATE identical to any earlier CREATE in the zone's change journal while
    a record of that name exists, even after a DELETE in the same batch (AWS does not): a
    checked rollback CREATEs the snapshot's records, so they must not have been CREATEd.
    """
    route53 = aws.client("route53")
    zone_id = route53.create_hosted_zone(Name="example.com", CallerReference="relman")[
        "HostedZone"
    ]["Id"]
    changes = [
        {**weighted("blue", 100, "blue.example.com", 60), "Action": "UPSERT"},
        {**weighted("green", 0, "green.example.com", 30), "Action": "UPSERT"},
    ]
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    return str(zone_id)


def set_weight(aws: AwsClients, zone_id: str, identifier: str, weight: int) -> None:
    """Someone changes one record's weight by hand."""
    (record,) = [r for r in records(aws, zone_id) if r.get("SetIdentifier") == identifier]
    aws.client("route53").change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [{"Action": "UPSERT", "ResourceRecordSet": {**record, "Weight": weight}}]
        },
    )


BLUE, GREEN = "(blue.example.com)", "(green.example.com)"


def test_apply_reports_both_records_it_wrote(aws: AwsClients, upserted_zone: str) -> None:
    handler, new = Route53WeightedHandler(aws), target(upserted_zone)
    applied = handler.apply(new, handler.snapshot(new), 10)
    assert applied.written == {
        "records": {
            "blue": {
                "set_identifier": "blue",
                "weight": 90,
                "ttl": 60,
                "values": ["blue.example.com"],
            },
            "green": {
                "set_identifier": "green",
                "weight": 10,
                "ttl": 30,
                "values": ["green.example.com"],
            },
        }
    }
    assert applied.written_display == f"blue 90 {BLUE} / green 10 {GREEN}"


def test_compensate_leaves_a_record_someone_else_changed_alone(
    aws: AwsClients, upserted_zone: str
) -> None:
    zone = upserted_zone
    handler, new = Route53WeightedHandler(aws), target(zone)
    snapshot = handler.snapshot(new)
    applied = handler.apply(new, snapshot, 50)
    set_weight(aws, zone, "green", 70)
    after_them = records(aws, zone)

    with pytest.raises(ApplicationError) as raised:
        handler.compensate(new, snapshot, applied.written)

    assert (raised.value.type, raised.value.non_retryable) == ("ResourceDrifted", True)
    assert raised.value.message == (
        f"target 'app-dns' (route53 record app.example.com in {zone}): relman wrote "
        f"blue 50 {BLUE} / green 50 {GREEN}, it now holds blue 50 {BLUE} / green 70 {GREEN}; "
        "not restoring it to blue 100 / green 0 without --force"
    )
    assert raised.value.details[0] == {
        "target": "app-dns",
        "resource": f"route53 record app.example.com in {zone}",
        "written": f"blue 50 {BLUE} / green 50 {GREEN}",
        "current": f"blue 50 {BLUE} / green 70 {GREEN}",
        "snapshot": "blue 100 / green 0",
    }
    assert records(aws, zone) == after_them

    assert handler.compensate(new, snapshot, applied.written, force=True).changed
    assert weights(aws, zone) == {"blue": 100, "green": 0}


def test_compensate_restores_untouched_records_exactly_and_a_retry_is_a_no_op(
    aws: AwsClients, upserted_zone: str
) -> None:
    zone = upserted_zone
    handler, new = Route53WeightedHandler(aws), target(zone)
    before = sorted(records(aws, zone), key=lambda r: r.get("SetIdentifier", ""))
    snapshot = handler.snapshot(new)
    first = handler.apply(new, snapshot, 50)
    second = handler.apply(new, snapshot, 100, first.written)

    assert handler.compensate(new, snapshot, second.written).changed
    # DELETE + CREATE moves the records to the end of moto's listing: compare as sets.
    assert sorted(records(aws, zone), key=lambda r: r.get("SetIdentifier", "")) == before
    writes = writes_of(aws.client("route53"))
    assert not handler.compensate(new, snapshot, second.written).changed
    assert writes == []


def test_a_further_step_refuses_records_changed_since_the_previous_one(
    aws: AwsClients, upserted_zone: str
) -> None:
    zone = upserted_zone
    handler, new = Route53WeightedHandler(aws), target(zone)
    snapshot = handler.snapshot(new)
    first = handler.apply(new, snapshot, 10)
    assert not handler.apply(new, snapshot, 10, first.written).changed  # a re-run
    set_weight(aws, zone, "blue", 100)

    with pytest.raises(ApplicationError) as raised:
        handler.apply(new, snapshot, 50, first.written)

    assert raised.value.type == "ResourceDrifted"
    assert raised.value.message == (
        f"target 'app-dns' (route53 record app.example.com in {zone}): changed by someone "
        f"else since relman's previous step: relman wrote blue 90 {BLUE} / green 10 {GREEN}, "
        f"it now holds blue 100 {BLUE} / green 10 {GREEN}; not applying blue 50 / green 50"
    )
    assert weights(aws, zone) == {"blue": 100, "green": 10}


def test_a_batch_refused_because_a_record_changed_since_it_was_read_is_a_drift(
    aws: AwsClients, upserted_zone: str
) -> None:
    """Someone changes green between the handler's read and its write, so Route 53 refuses
    the DELETE of the record as read. moto does not (it checks a DELETE against its change
    journal, not the current record): the change is made for real and AWS's answer to the
    batch is staged."""
    zone = upserted_zone
    handler, new = Route53WeightedHandler(aws), target(zone)
    snapshot = handler.snapshot(new)
    applied = handler.apply(new, snapshot, 50)
    route53 = aws.client("route53")
    event = "before-call.route53.ChangeResourceRecordSets"

    def someone_changes_green_first(**_: object) -> tuple[object, dict[str, object]]:
        route53.meta.events.unregister(event, someone_changes_green_first)
        set_weight(aws, zone, "green", 70)
        refused = "Tried to delete resource record set but the values do not match"
        return SimpleNamespace(status_code=400), {
            "Error": {"Code": "InvalidChangeBatch", "Message": refused},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    route53.meta.events.register(event, someone_changes_green_first)
    with pytest.raises(ApplicationError) as raised:
        handler.compensate(new, snapshot, applied.written)

    assert (raised.value.type, raised.value.non_retryable) == ("ResourceDrifted", True)
    assert raised.value.details[0]["current"] == f"blue 50 {BLUE} / green 70 {GREEN}"
    assert weights(aws, zone) == {"blue": 50, "green": 70}
