"""The activities a release runs against its targets, dispatched by target kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients
from activities.targets import build_handlers
from activities.targets.base import TargetHandler
from models.messages import (
    APPLY_TARGET,
    COMPENSATE_TARGET,
    SNAPSHOT_TARGET,
    ApplyInput,
    ApplyResult,
    CompensateInput,
    CompensateResult,
    Snapshot,
    TargetInput,
)
from models.plan import Target


class UnsupportedTargetKind(Exception):
    """A plan names a target kind this worker cannot execute."""


class TargetActivities:
    """Snapshot, apply and compensate targets; boto3 clients come from the worker."""

    def __init__(self, aws: AwsClients):
        self.handlers = build_handlers(aws)

    def _handler(self, target: Target) -> TargetHandler:
        handler = self.handlers.get(target.kind)
        if handler is None:
            raise ApplicationError(
                f"target {target.name!r}: kind {target.kind!r} is not supported by this worker",
                type=UnsupportedTargetKind.__name__,
                non_retryable=True,
            )
        return handler

    @activity.defn(name=SNAPSHOT_TARGET)
    def snapshot_target(self, input: TargetInput) -> Snapshot:
        """Record the target's current state (read-only)."""
        return self._handler(input.target).snapshot(input.target)

    @activity.defn(name=APPLY_TARGET)
    def apply_target(self, input: ApplyInput) -> ApplyResult:
        """Make the target what the release wants; a no-op if it already is."""
        result = self._handler(input.target).apply(input.target, input.snapshot, input.percent)
        activity.logger.info(
            "applied %s (%s)", result.resource, "changed" if result.changed else "unchanged"
        )
        return result

    @activity.defn(name=COMPENSATE_TARGET)
    def compensate_target(self, input: CompensateInput) -> CompensateResult:
        """Restore the target to its snapshot; a no-op if it already is."""
        result = self._handler(input.target).compensate(input.target, input.snapshot)
        activity.logger.info(
            "restored %s (%s)", result.resource, "changed" if result.changed else "unchanged"
        )
        return result

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [self.snapshot_target, self.apply_target, self.compensate_target]
