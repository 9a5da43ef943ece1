"""Route 53 weighted records: traffic moves from the blue record to the green one.

Both records (same name and type, ``SetIdentifier`` blue and green) must exist; the release
only changes their weights, blue = 100 - percent and green = percent, in one change batch
so the two never disagree. The snapshot keeps both complete record sets (values, TTL, health
check...), which compensation writes back.

Where relman checks for drift (a further step, a rollback without ``--force``), the batch
DELETEs each record exactly as it was just read and CREATEs its new version: Route 53
refuses the whole batch (InvalidChangeBatch) if a record changed in between, which is then
``ResourceDrifted``. Unchecked writes UPSERT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.errors import aws_call, error_code, raise_aws_error
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


def _held(records: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Both records as ``ApplyResult.written`` records them: identifier, weight, TTL and
    values (an alias's target) by color, None for a missing record."""
    held: dict[str, Any] = {}
    for color, record in records.items():
        if record is None:
            held[color] = None
            continue
        alias = (record.get("AliasTarget") or {}).get("DNSName")
        values = (
            [f"alias {alias}"]
            if alias
            else sorted(r["Value"] for r in record.get("ResourceRecords", []))
        )
        held[color] = {
            "set_identifier": record["SetIdentifier"],
            "weight": record.get("Weight"),
            "ttl": record.get("TTL"),
            "values": values,
        }
    return {"records": held}


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

    def _existing(
        self,
        target: Route53WeightedTarget,
        records: dict[str, dict[str, Any] | None] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Both records (as read now, or ``records``), each weighted; an error naming the
        one that is not."""
        records = self._records(target) if records is None else records
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

    def _write(
        self,
        target: Route53WeightedTarget,
        current: dict[str, dict[str, Any] | None],
        wanted: dict[str, dict[str, Any]],
        on_race: Callable[[dict[str, Any]], ApplicationError] | None = None,
    ) -> None:
        """Write the ``wanted`` records in one batch.

        With ``on_race`` (where relman checks for drift) each record is DELETEd exactly as
        ``current`` holds it and CREATEd anew, so Route 53 refuses the batch if someone
        changed it since it was read; ``on_race`` builds the error from what is there then.
        """
        for record in wanted.values():
            if not 0 <= record["Weight"] <= MAX_WEIGHT:
                raise _invalid(
                    target,
                    InvalidWeight,
                    f"weight {record['Weight']} for {record['SetIdentifier']!r} "
                    f"is outside 0..{MAX_WEIGHT}",
                )
        changes: list[dict[str, Any]] = []
        for color, record in wanted.items():
            existing = current[color]
            if on_race is None:
                changes.append({"Action": "UPSERT", "ResourceRecordSet": record})
                continue
            if existing is not None:
                changes.append({"Action": "DELETE", "ResourceRecordSet": existing})
            changes.append({"Action": "CREATE", "ResourceRecordSet": record})
        try:
            self._change(target, changes)
        except ClientError as exc:
            # AWS answers InvalidChangeBatch for a DELETE that no longer matches (moto,
            # which checks a DELETE's values only, InvalidInput). Reading again tells a
            # record changed in between from a batch refused for another reason.
            if on_race is None or error_code(exc) not in ("InvalidChangeBatch", "InvalidInput"):
                raise_aws_error(exc, "route53:ChangeResourceRecordSets", target.resource)
            now = _held(self._records(target))
            if now != _held(current):
                raise on_race(now) from exc
            if "already exists" not in str(exc):
                raise_aws_error(exc, "route53:ChangeResourceRecordSets", target.resource)
            # Unchanged, yet the CREATE after its exact DELETE was refused: endpoints such
            # as moto refuse to CREATE a record identical to one created before, whatever
            # the batch deletes first. The DELETE still guards against a race; UPSERT writes.
            upserts = [{**c, "Action": "UPSERT"} if c["Action"] == "CREATE" else c for c in changes]
            try:
                self._change(target, upserts)
            except ClientError as again:
                raise_aws_error(again, "route53:ChangeResourceRecordSets", target.resource)

    def _change(self, target: Route53WeightedTarget, changes: list[dict[str, Any]]) -> None:
        self.client("route53", target).change_resource_record_sets(
            HostedZoneId=target.hosted_zone_id,
            ChangeBatch={"Comment": "relman", "Changes": changes},
        )

    def show(self, target: Route53WeightedTarget, written: dict[str, Any]) -> str:
        shown = []
        for color, record in written["records"].items():
            if record is None:
                shown.append(f"{color} (absent)")
            else:
                shown.append(f"{color} {record['weight']} ({', '.join(record['values'])})")
        return " / ".join(shown)

    def snapshot(self, target: Route53WeightedTarget) -> Snapshot:
        records = self._existing(target)
        return Snapshot(
            resource=target.resource,
            exists=True,
            state={"records": records},
            display=_describe(dict(records)),
        )

    def apply(
        self,
        target: Route53WeightedTarget,
        snapshot: Snapshot,
        percent: int,
        written: dict[str, Any] | None = None,
    ) -> ApplyResult:
        records = self._records(target)
        weights = {"blue": 100 - percent, "green": percent}
        wanted_display = f"blue {weights['blue']} / green {weights['green']}"
        if any((records[c] or {}).get("Weight") != weights[c] for c in weights):
            # Before the records' shape is checked: a record someone else deleted or
            # changed is a drift to report as such.
            self.check_step(target, snapshot, written, _held(records), wanted_display)
        current = self._existing(target, records)
        wanted = {c: {**current[c], "Weight": weights[c]} for c in weights}
        changes = {c: wanted[c] for c in wanted if wanted[c] != current[c]}
        if changes:
            on_race = self.on_race(target, snapshot, written, wanted_display)
            self._write(target, dict(current), changes, on_race)
            records = self._records(target)
        return self.result(target, bool(changes), _describe(records), _held(records))

    def compensate(
        self,
        target: Route53WeightedTarget,
        snapshot: Snapshot,
        written: dict[str, Any] | None = None,
        force: bool = False,
    ) -> CompensateResult:
        previous: dict[str, dict[str, Any]] = snapshot.state["records"]
        current = self._records(target)
        # A record deleted since the snapshot is created again.
        changes = {
            c: previous[c] for c in previous if _canonical(previous[c]) != _canonical(current[c])
        }
        if changes:
            self.check_rollback(target, snapshot, written, force, _held(current))
            on_race = self.on_race(target, snapshot, None if force else written)
            self._write(target, current, changes, on_race)
            current = self._records(target)
        return CompensateResult(
            resource=target.resource,
            changed=bool(changes),
            display=_describe(current),
        )
