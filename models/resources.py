"""The canonical identity of the AWS resource each target changes, however the plan spells it.

A key is (account, region, ARN). An omitted region and the explicit default region, a Lambda
function's name and its ARN, a record name with or without its trailing dot, a role into the
worker's own account and no role: each pair gives one key. Route 53 zones and S3 buckets are
named globally (zone ids everywhere, bucket names within a partition), so their keys carry
no account or region, and two spellings through different accounts still meet.

Pure: the worker's account is passed in (the ``resource_locks`` activity asks STS for it);
plan validation passes a placeholder for it and for the default region.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from models import arns
from models.plan import (
    Department,
    Ec2FleetTarget,
    EcsServiceTarget,
    Elbv2WeightsTarget,
    LambdaAliasTarget,
    ReleasePlan,
    Route53WeightedTarget,
    S3ArtifactTarget,
    SsmParameterTarget,
    Target,
)

# What plan validation knows without asking AWS: no role means the worker's account, and no
# region the worker's default one, whatever they turn out to be.
WORKER_ACCOUNT = "(worker account)"
DEFAULT_REGION = "(default region)"


@dataclass(frozen=True, order=True)
class ResourceKey:
    """One AWS resource: the account and region it lives in and its ARN (for a Route 53
    record, which has none, ``arn:PARTITION:route53:::hostedzone/ZONE/NAME/TYPE/SET``)."""

    account: str
    region: str
    arn: str

    def __str__(self) -> str:
        return f"{self.account}|{self.region}|{self.arn}"

    def digest(self, chars: int = 16) -> str:
        """A short stable digest of the key, for search attributes and lock workflow ids."""
        return hashlib.sha256(str(self).encode()).hexdigest()[:chars]


def resolve(target: Target, department: Department | None) -> Target:
    """``target`` with its region, role and external id inherited from ``department``."""
    if department is None:
        return target
    return target.model_copy(
        update={
            "region": target.region or department.region,
            "role_arn": target.role_arn or department.role_arn,
            "external_id": target.external_id or department.external_id,
        }
    )


def resolved_targets(plan: ReleasePlan) -> list[Target]:
    """The plan's targets in plan order, each resolved through the department of its wave."""
    department_of = {name: w.department for w in plan.waves for name in w.targets}
    return [resolve(t, plan.departments.get(department_of.get(t.name, ""))) for t in plan.targets]


def resource_keys(target: Target, *, account: str, default_region: str) -> list[ResourceKey]:
    """The resources ``target`` (already resolved) changes, canonically.

    ``account`` is the worker's own, used when the target assumes no role; ``default_region``
    the region used when neither the target nor its department names one. An ARN in the plan
    names its own account and region. A Route 53 target changes two records, so it has two
    keys; every other kind has one.
    """
    if target.role_arn:
        role = arns.parse_arn(target.role_arn)
        assert role is not None  # plan validation checked it
        account, partition = role.account, role.partition
    else:
        partition = arns.partition_of(target.region or default_region)
    region = target.region or default_region

    def named(arn_text: str) -> ResourceKey:
        arn = arns.parse_arn(arn_text)
        assert arn is not None
        return ResourceKey(arn.account, arn.region, arn_text)

    def local(service: str, resource: str) -> ResourceKey:
        return ResourceKey(
            account, region, f"arn:{partition}:{service}:{region}:{account}:{resource}"
        )

    match target:
        case SsmParameterTarget(parameter=parameter):
            if parameter.startswith("arn:"):
                return [named(parameter)]
            return [local("ssm", f"parameter/{parameter.removeprefix('/')}")]
        case LambdaAliasTarget(function=function, alias=alias):
            if function.startswith("arn:"):
                # Without its qualifier: the alias, not the version the ARN may name.
                function_arn = ":".join(function.split(":")[:7])
                return [named(f"{function_arn}:{alias}")]
            return [local("lambda", f"function:{function}:{alias}")]
        case Elbv2WeightsTarget(listener_arn=listener_arn):
            return [named(listener_arn)]
        case Route53WeightedTarget():
            zone = arns.hosted_zone(target.hosted_zone_id)
            name = target.record_name.lower().removesuffix(".") + "."
            return [
                ResourceKey(
                    "",
                    "",
                    f"arn:{partition}:route53:::hostedzone/{zone}/{name}/{target.record_type}/"
                    f"{identifier}",
                )
                for identifier in (target.blue_set_identifier, target.green_set_identifier)
            ]
        case EcsServiceTarget(cluster=cluster, service=service):
            if service.startswith("arn:"):
                arn = arns.parse_arn(service)
                assert arn is not None
                parts = arn.resource.split("/")
                if len(parts) == 3:  # service/CLUSTER/NAME, the long ARN format
                    return [named(service)]
                # The short format (service/NAME) does not name the cluster: add it.
                cluster_name = cluster.rsplit("/", 1)[-1]
                full = f"{service.rsplit(':', 1)[0]}:service/{cluster_name}/{parts[-1]}"
                return [named(full)]
            if cluster.startswith("arn:"):
                arn = arns.parse_arn(cluster)
                assert arn is not None
                cluster_name = arn.resource.split("/", 1)[1]
                return [named(f"{cluster.rsplit(':', 1)[0]}:service/{cluster_name}/{service}")]
            return [local("ecs", f"service/{cluster}/{service}")]
        case S3ArtifactTarget(bucket=bucket, key=key):
            return [ResourceKey("", "", f"arn:{partition}:s3:::{bucket}/{key}")]
        case Ec2FleetTarget(instances=chosen):
            # The fleet as the plan chooses it: its group, or its tags (two releases of one
            # fleet choose it alike).
            if chosen.auto_scaling_group:
                return [local("autoscaling", f"autoScalingGroupName/{chosen.auto_scaling_group}")]
            tags = ",".join(f"{k}={v}" for k, v in sorted(chosen.tags.items()))
            return [local("ec2", f"instance/tag:{tags}")]
    raise AssertionError(f"unknown target kind {target.kind!r}")


def plan_resource_keys(
    plan: ReleasePlan, *, account: str = WORKER_ACCOUNT, default_region: str = DEFAULT_REGION
) -> list[tuple[Target, list[ResourceKey]]]:
    """Each target of the plan, resolved, with the keys of the resources it changes, in
    plan order."""
    return [
        (t, resource_keys(t, account=account, default_region=default_region))
        for t in resolved_targets(plan)
    ]
