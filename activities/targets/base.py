"""The contract every target kind implements, and the drift check they share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients
from models.messages import ApplyResult, CompensateResult, Snapshot


class ResourceDrifted(Exception):
    """The resource no longer holds what relman wrote: someone else changed it since."""


def drift_error(
    target: Any,
    *,
    written: str,
    current: str,
    snapshot: str | None,
    wanted: str | None = None,
) -> ApplicationError:
    """The non-retryable ``ResourceDrifted`` error for a resource someone else changed.

    Without ``wanted`` it refuses a compensation (which would restore ``snapshot``); with
    it, a further traffic step (which would write ``wanted``). The same facts travel as the
    error's first detail, a dict of display strings, for the workflow and the CLI.
    """
    restored = snapshot or "(unknown)"
    where = f"target {target.name!r} ({target.resource})"
    held = f"relman wrote {written}, it now holds {current}"
    if wanted is None:
        message = f"{where}: {held}; not restoring it to {restored} without --force"
    else:
        message = (
            f"{where}: changed by someone else since relman's previous step: {held}; "
            f"not applying {wanted}"
        )
    details = {
        "target": target.name,
        "resource": target.resource,
        "written": written,
        "current": current,
        "snapshot": restored,
    } | ({"wanted": wanted} if wanted is not None else {})
    return ApplicationError(message, details, type=ResourceDrifted.__name__, non_retryable=True)


class TargetHandler:
    """Snapshot, apply and compensate one kind of AWS resource, idempotently.

    Each method reads the resource first and writes only when it differs from what is
    wanted, so an activity retried after a crash makes no second change. Before it writes
    over what an earlier call wrote (``written``), it checks the resource still holds that:
    ``held`` describes the resource in the terms of ``ApplyResult.written``, ``show``
    renders such a description, ``holds`` compares two.
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

    def apply(
        self,
        target: Any,
        snapshot: Snapshot,
        percent: int,
        written: dict[str, Any] | None = None,
    ) -> ApplyResult:
        """Make the resource what the release wants, at ``percent`` of traffic.

        Kinds without traffic ignore ``percent`` and apply fully. The result's ``display``
        and ``written`` are read back from the resource after writing (verification), not
        echoed. ``written`` (the previous step's) must still be what the resource holds,
        unless it already is what this step wants (a re-run).
        """
        raise NotImplementedError

    def compensate(
        self,
        target: Any,
        snapshot: Snapshot,
        written: dict[str, Any] | None = None,
        force: bool = False,
    ) -> CompensateResult:
        """Put the resource back exactly as ``snapshot`` recorded it.

        A no-op if it already is; otherwise, unless ``force``, refused with
        ``ResourceDrifted`` when the resource no longer holds ``written``.
        """
        raise NotImplementedError

    def show(self, target: Any, written: dict[str, Any]) -> str:
        """``written`` for people: ``version 7 (2.4.0)``, ``blue 90 / green 10``..."""
        raise NotImplementedError

    def holds(self, written: dict[str, Any], current: dict[str, Any]) -> bool:
        """Whether a resource described as ``current`` still holds ``written``."""
        return current == written

    def result(
        self, target: Any, changed: bool, display: str | None, held: dict[str, Any]
    ) -> ApplyResult:
        """An apply's result, with what the resource holds now as ``written``."""
        return ApplyResult(
            resource=target.resource,
            changed=changed,
            display=display,
            written=held,
            written_display=self.show(target, held),
        )

    def check_rollback(
        self,
        target: Any,
        snapshot: Snapshot,
        written: dict[str, Any] | None,
        force: bool,
        held: dict[str, Any],
    ) -> None:
        """Refuse to restore ``snapshot`` over a resource (now ``held``) that someone else
        changed since relman wrote ``written``; ``force`` or no ``written`` skip the check."""
        if written is not None and not force and not self.holds(written, held):
            raise self.drifted(target, written, held, snapshot)

    def check_step(
        self,
        target: Any,
        snapshot: Snapshot,
        written: dict[str, Any] | None,
        held: dict[str, Any],
        wanted: str,
    ) -> None:
        """Refuse a further step (which would write ``wanted``) over a resource that
        someone else changed since relman's previous step wrote ``written``."""
        if written is not None and not self.holds(written, held):
            raise self.drifted(target, written, held, snapshot, wanted)

    def on_race(
        self,
        target: Any,
        snapshot: Snapshot,
        written: dict[str, Any] | None,
        wanted: str | None = None,
    ) -> Callable[[dict[str, Any]], ApplicationError] | None:
        """For a conditional write (Lambda ``RevisionId``, a Route 53 DELETE of the record
        as read) refused because the resource changed since it was read: the error to raise,
        built from what it holds then. None where relman checks nothing (no ``written``)."""
        if written is None:
            return None
        checked = written
        return lambda held: self.drifted(target, checked, held, snapshot, wanted)

    def drifted(
        self,
        target: Any,
        written: dict[str, Any],
        held: dict[str, Any],
        snapshot: Snapshot,
        wanted: str | None = None,
    ) -> ApplicationError:
        """The ``ResourceDrifted`` error naming what was written and what is there now."""
        return drift_error(
            target,
            written=self.show(target, written),
            current=self.show(target, held),
            snapshot=snapshot.display,
            wanted=wanted,
        )
