"""The contract every target kind implements."""

from __future__ import annotations

from typing import Any, ClassVar

from activities.aws import AwsClients
from models.messages import ApplyResult, CompensateResult, Snapshot


class TargetHandler:
    """Snapshot, apply and compensate one kind of AWS resource, idempotently.

    Each method reads the resource first and writes only when it differs from what is
    wanted, so an activity retried after a crash makes no second change.
    """

    kind: ClassVar[str]

    def __init__(self, aws: AwsClients):
        self.aws = aws

    def client(self, service: str, target: Any) -> Any:
        """The boto3 client for ``service`` in the target's region and account."""
        return self.aws.client(service, target.region, target.role_arn, target.external_id)

    def snapshot(self, target: Any) -> Snapshot:
        """Record what the resource is now, so compensation can restore it."""
        raise NotImplementedError

    def apply(self, target: Any, snapshot: Snapshot, percent: int) -> ApplyResult:
        """Make the resource what the release wants, at ``percent`` of traffic.

        Kinds without traffic ignore ``percent`` and apply fully. The result's ``display``
        is read back from the resource after writing (verification), not echoed.
        """
        raise NotImplementedError

    def compensate(self, target: Any, snapshot: Snapshot) -> CompensateResult:
        """Put the resource back exactly as ``snapshot`` recorded it."""
        raise NotImplementedError
