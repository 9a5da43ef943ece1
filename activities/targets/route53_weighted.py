"""Route 53 weighted records: traffic moves from the blue record to the green one.

Both records (same name and type, ``SetIdentifier`` blue and green) must exist; the release
only changes their weights, blue = 100 - percent and green = percent, in one UPSERT batch so
the two never disagree. The snapshot keeps both complete record sets (values, TTL, health
check...), which compensation UPSERTs back.
"""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

from activities.errors import aws_call
from activities.targets.base import TargetHandler
from models.messages import ApplyResult, CompensateResult, Snapshot
from models.plan import Route53WeightedTarget

# Route 53 accepts weights 0..255; moto accepts anything, so check before writing.
MAX_WEIGHT = 255
_PAGE_SIZE = "100"


class WeightedRecordNotFound(Exception):
    """The blue or green weighted record the plan names does not exist."""


class InvalidWeight(Exception):
    """A record weight outside Route 53's 0..255."""


def _invalid(
    target: Route53WeightedTarget, error: type[Exception], reason: str
) -> ApplicationError:
    return ApplicationError(f"{target.resource}: {reason}", type=error.__name__, non_retryable=True)


def _dns_name(name: str) -> str:
    """A record name as Route 53 lists it: lower case, fully qualified, ``*`` escaped."""
    name = name.lower().replace("*", "\\052")
    return name if name.endswith(".") else name + "."


def _canonical(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    values = sorted(r["Value"] for r in record.get("ResourceRecords", []))
    return {**record, "ResourceRecords": values}


def _describe(records: dict[str, dict[str, Any] | None]) -> str:
    """``blue 90 / green 10``."""
    return " / ".join(
        f"{color} {'(absent)' if r is None else r.get('Weight')}" for color, r in records.items()
    )


class Route53WeightedHandler(TargetHandler):
    """``route53_weighted`` targets."""

    kind = "route53_weighted"

    def _records(self, target: Route53WeightedTarget) -> dict[str, dict[str, Any] | None]:
        """The blue and green record sets (None where one is missing)."""
        name = _dns_name(target.record_name)
        by_identifier: dict[str, dict[str, Any]] = {}
        params: dict[str, Any] = {
            "HostedZoneId": target.hosted_zone_id,
            "StartRecordName": name,
            "StartRecordType": target.record_type,
            "MaxItems": _PAGE_SIZE,
        }
        # Listing starts at (name, type) in Route 53's order; page until we pass it.
        while True:
            with aws_call("route53:ListResourceRecordSets", target.resource):
                page = self.client("route53", target).list_resource_record_sets(**params)
            sets = page["ResourceRecordSets"]
            for record in sets:
                same = record["Name"] == name and record["Type"] == target.record_type
                if same and "SetIdentifier" in record:
                    by_identifier[record["SetIdentifier"]] = record
            passed = any(r["Name"] != name or r["Type"] != target.record_type for r in sets)
            if passed or not page.get("IsTruncated"):
                break
            params.update(
                StartRecordName=page["NextRecordName"], StartRecordType=page["NextRecordType"]
            )
            if page.get("NextRecordIdentifier"):
                params["StartRecordIdentifier"] = page["NextRecordIdentifier"]
        return {
            "blue": by_identifier.get(target.blue_set_identifier),
            "green": by_identifier.get(target.green_set_identifier),
        }

    def _existing(self, target: Route53WeightedTarget) -> dict[str, dict[str, Any]]:
        """Both records, each weighted; an error naming the one that is not."""
        records = self._records(target)
        found: dict[str, dict[str, Any]] = {}
        for color, record in records.items():
            identifier = getattr(target, f"{color}_set_identifier")
            if record is None or "Weight" not in record:
                raise _invalid(
                    target,
                    WeightedRecordNotFound,
                    f"no weighted {target.record_type} record with SetIdentifier "
                    f"{identifier!r} ({color})",
                )
            found[color] = record
        return found

    def _upsert(self, target: Route53WeightedTarget, records: list[dict[str, Any]]) -> None:
        for record in records:
            if not 0 <= record["Weight"] <= MAX_WEIGHT:
                raise _invalid(
                    target,
                    InvalidWeight,
                    f"weight {record['Weight']} for {record['SetIdentifier']!r} "
                    f"is outside 0..{MAX_WEIGHT}",
                )
        changes = [{"Action": "UPSERT", "ResourceRecordSet": r} for r in records]
        with aws_call("route53:ChangeResourceRecordSets", target.resource):
            self.client("route53", target).change_resource_record_sets(
                HostedZoneId=target.hosted_zone_id,
                ChangeBatch={"Comment": "relman", "Changes": changes},
            )

    def snapshot(self, target: Route53WeightedTarget) -> Snapshot:
        records = self._existing(target)
        return Snapshot(
            resource=target.resource,
            exists=True,
            state={"records": records},
            display=_describe(dict(records)),
        )

    def apply(self, target: Route53WeightedTarget, snapshot: Snapshot, percent: int) -> ApplyResult:
        current = self._existing(target)
        wanted = {
            "blue": {**current["blue"], "Weight": 100 - percent},
            "green": {**current["green"], "Weight": percent},
        }
        changes = [wanted[c] for c in wanted if wanted[c] != current[c]]
        if changes:
            self._upsert(target, changes)
        return ApplyResult(
            resource=target.resource,
            changed=bool(changes),
            display=_describe(self._records(target)) if changes else _describe(dict(current)),
        )

    def compensate(self, target: Route53WeightedTarget, snapshot: Snapshot) -> CompensateResult:
        previous: dict[str, dict[str, Any]] = snapshot.state["records"]
        current = self._records(target)
        # A record deleted since the snapshot is created again by the UPSERT.
        changes = [
            previous[c] for c in previous if _canonical(previous[c]) != _canonical(current[c])
        ]
        if changes:
            self._upsert(target, changes)
            current = self._records(target)
        return CompensateResult(
            resource=target.resource,
            changed=bool(changes),
            display=_describe(current),
        )
