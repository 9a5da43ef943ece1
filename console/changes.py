"""What a target will change, as an approver reads it: never a secret value."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from models.plan import (
    EcsServiceTarget,
    Elbv2WeightsTarget,
    LambdaAliasTarget,
    ReleasePlan,
    Route53WeightedTarget,
    S3ArtifactTarget,
    SsmParameterTarget,
    Target,
    Wave,
)

SECRET = "(secret, not shown)"


def planned_value(target: Target) -> str:
    """The value the release gives ``target``."""
    if isinstance(target, SsmParameterTarget):
        return SECRET if target.secret else str(target.value)
    if isinstance(target, LambdaAliasTarget):
        return f"version {target.version}"
    if isinstance(target, Elbv2WeightsTarget):
        return f"all traffic to {target.green_target_group_arn.rsplit('/', 2)[-2]}"
    if isinstance(target, Route53WeightedTarget):
        return f"all weight to {target.green_set_identifier}"
    if isinstance(target, EcsServiceTarget):
        count = f", {target.desired_count} tasks" if target.desired_count is not None else ""
        return f"task definition {target.task_definition}{count}"
    if isinstance(target, S3ArtifactTarget):
        return f"{target.source_key} version {target.source_version_id}"
    return "-"


def planned_values(plan: ReleasePlan | None, wave: str) -> dict[str, str]:
    """Target name -> planned value, for the targets of ``wave`` (none without the plan)."""
    if plan is None:
        return {}
    found = next((w for w in plan.waves if w.name == wave), None)
    if found is None:
        return {}
    return {t: planned_value(plan.target(t)) for t in found.targets}


def wave_window(plan: ReleasePlan | None, wave: str) -> Wave | None:
    """The plan's wave named ``wave``, for its window."""
    if plan is None:
        return None
    return next((w for w in plan.waves if w.name == wave), None)


def in_zone(instant: datetime | None, zone: str) -> str:
    """``instant`` in time zone ``zone``, as people there read it."""
    if instant is None:
        return "-"
    return instant.astimezone(ZoneInfo(zone)).strftime("%a %Y-%m-%d %H:%M %Z")
