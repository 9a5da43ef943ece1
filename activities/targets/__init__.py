"""One module per target kind; each knows how to snapshot, apply and compensate its resource."""

from __future__ import annotations

from activities.aws import AwsClients
from activities.targets.base import TargetHandler
from activities.targets.ssm_parameter import SsmParameterHandler

_HANDLER_CLASSES: dict[str, type[TargetHandler]] = {
    SsmParameterHandler.kind: SsmParameterHandler,
}
SUPPORTED_KINDS = frozenset(_HANDLER_CLASSES)


def build_handlers(aws: AwsClients) -> dict[str, TargetHandler]:
    """One handler per supported kind, sharing ``aws``'s clients."""
    return {kind: cls(aws) for kind, cls in _HANDLER_CLASSES.items()}
