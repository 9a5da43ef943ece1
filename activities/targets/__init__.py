"""One module per target kind; each knows how to snapshot, apply and compensate its resource."""

from __future__ import annotations

from activities.aws import AwsClients
from activities.targets.base import TargetHandler
from activities.targets.ec2_fleet import Ec2FleetHandler
from activities.targets.ecs_service import EcsServiceHandler
from activities.targets.elbv2_weights import Elbv2WeightsHandler
from activities.targets.lambda_alias import LambdaAliasHandler
from activities.targets.route53_weighted import Route53WeightedHandler
from activities.targets.s3_artifact import S3ArtifactHandler
from activities.targets.ssm_parameter import SsmParameterHandler

_HANDLER_CLASSES: dict[str, type[TargetHandler]] = {
    cls.kind: cls
    for cls in (
        SsmParameterHandler,
        LambdaAliasHandler,
        Elbv2WeightsHandler,
        Route53WeightedHandler,
        EcsServiceHandler,
        S3ArtifactHandler,
        Ec2FleetHandler,
    )
}
SUPPORTED_KINDS = frozenset(_HANDLER_CLASSES)


def build_handlers(aws: AwsClients) -> dict[str, TargetHandler]:
    """One handler per supported kind, sharing ``aws``'s clients."""
    return {kind: cls(aws) for kind, cls in _HANDLER_CLASSES.items()}
