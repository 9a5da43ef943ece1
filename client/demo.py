"""``relman demo``: two real releases on the embedded stack, end to end, checked against AWS.

It uses the same paths a person would: the plan file, ``submit``, the approval Update that
``relman approve`` sends, and the status Query; then it reads the resources back from the
local AWS endpoint. The first release completes and must leave AWS as the plan says. The
second shifts a Lambda alias and a load balancer in steps; while it bakes at its first
step the demo puts its CloudWatch alarm into ALARM through the CloudWatch API (as a real
alarm changes state), and the release must roll back and leave every resource exactly as
it was before, compared as full describe snapshots.

The resources themselves are seeded and read back by ``client.demo_aws``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from client import service
from client.demo_aws import (
    ResourceCheck,
    RestoreCheck,
    describe,
    label,
    seed,
    set_alarm,
    show,
    ssm_targets,
    verify,
)
from common.errors import CliError
from models.plan import ReleasePlan
from models.status import ReleasePhase, ReleaseStatus, WavePhase

Say = Callable[[str], None]
# Where a person's signing key is: the demo signs as each person with their dev key.
KeyOf = Callable[[str], Path]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEMO_PLAN = EXAMPLES / "demo.yaml"
ROLLBACK_PLAN = EXAMPLES / "rollback-demo.yaml"
DEMO_TIMEOUT_SECONDS = 90.0
POLL_SECONDS = 0.3
# Worded like CloudWatch's own reasons, since the demo plays the part of the metric.
ALARM_REASON = (
    "Threshold Crossed: 1 out of the last 1 datapoints [42.0] was greater than or equal to "
    "the threshold (5.0) (minimum 1 datapoint for OK -> ALARM transition)."
)


def unique_release(plan: ReleasePlan) -> ReleasePlan:
    """The plan under a release id of its own: a release id is usable once only."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return plan.model_copy(update={"id": f"{plan.id}-demo-{stamp}"})


# --- driving a release --------------------------------------------------------------------


def dev_keys() -> KeyOf:
    """Each demo person's dev key, as ``relman dev up`` wrote it under ``RELMAN_HOME``."""
    from common.stack_state import StackConfig

    return StackConfig.from_env().dev_key_path


async def drive(
    release_id: str,
    say: Say,
    on_status: Callable[[ReleaseStatus], Awaitable[None]] | None = None,
    key_of: KeyOf | None = None,
) -> ReleaseStatus:
    """Approve each gate as its first eligible approver, signed with their key
    (``key_of``, default: :func:`dev_keys`), narrating events, until the end.

    ``on_status`` sees every status polled before the release ends (to act at a phase).
    """
    key_of = key_of or dev_keys()
    shown = 0
    decided: set[tuple[str, str]] = set()
    deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        st = await service.status(release_id)
        for event in st.timeline[shown:]:
            actor = f" [{event.actor}]" if event.actor else ""
            say(f"  {event.at.astimezone(UTC):%H:%M:%S} {event.kind:<22}{actor} {event.message}")
        shown = len(st.timeline)
        if st.finished:
            return st
        if on_status is not None:
            await on_status(st)
        for pending in st.pending_approvals:
            if not pending.eligible_approvers:
                continue
            approver = pending.eligible_approvers[0]
            if (pending.wave, approver) in decided:
                continue
            decided.add((pending.wave, approver))
            result = await service.decide(
                release_id, pending.wave, approver, "approved in relman demo", True,
                key_of(approver),
            )  # fmt: skip
            say(f"  -> {approver} approves wave {pending.wave}: {result.message}")
        await asyncio.sleep(POLL_SECONDS)
    raise CliError(f"demo release {release_id} did not finish within {DEMO_TIMEOUT_SECONDS:.0f}s")


async def release_scenario(
    plan: ReleasePlan, aws: Any, say: Say, queue: str | None = None, key_of: KeyOf | None = None
) -> tuple[ReleaseStatus, list[ResourceCheck]]:
    """Seed, submit, approve, watch and verify a release that should complete; each person
    signs with their key (``key_of``, default: :func:`dev_keys`)."""
    key_of = key_of or dev_keys()
    plan = await asyncio.to_thread(seed, plan, aws)
    say(f"seeded {len(ssm_targets(plan))} SSM parameters at their pre-release values")
    release_id = await service.submit(plan, key_of(plan.requested_by), queue)
    say(f"submitted release {release_id} as {plan.requested_by} (signed)")
    final = await drive(release_id, say, key_of=key_of)
    return final, await asyncio.to_thread(verify, plan, aws)


@dataclass
class RollbackOutcome:
    """How the alarm release ended and what each resource was before, during and after."""

    final: ReleaseStatus
    checks: list[RestoreCheck]
    alarm: str | None  # the alarm put into ALARM; None if the canary never baked

    @property
    def succeeded(self) -> bool:
        """Rolled back after the alarm, every resource moved and then restored exactly."""
        return (
            self.final.phase == ReleasePhase.ROLLED_BACK
            and self.alarm is not None
            and all(c.changed and c.restored for c in self.checks)
        )


async def rollback_scenario(
    plan: ReleasePlan, aws: Any, say: Say, queue: str | None = None, key_of: KeyOf | None = None
) -> RollbackOutcome:
    """Seed, snapshot, submit, approve (signed as in :func:`release_scenario`); fire the
    alarm in the first bake; compare after."""
    key_of = key_of or dev_keys()
    canary = next((w for w in plan.waves if w.alarms and w.bake), None)
    if canary is None:
        raise CliError(f"plan {plan.id} has no wave that bakes watching an alarm")
    plan = await asyncio.to_thread(seed, plan, aws)
    before = await asyncio.to_thread(describe, plan, aws)
    say(
        f"seeded {len(plan.targets)} resources at their pre-release state and alarm "
        f"{', '.join(canary.alarms)} (OK):"
    )
    for target in plan.targets:
        say(f"  {label(target)}: {show(target, before[target.name])}")
    during: dict[str, dict[str, Any] | None] = {}
    fired: list[str] = []

    async def fire_alarm_in_first_bake(st: ReleaseStatus) -> None:
        wave = st.wave(canary.name)
        if fired or wave.phase != WavePhase.BAKING or wave.step != 0:
            return
        during.update(await asyncio.to_thread(describe, plan, aws))
        say(f"  wave {canary.name} is baking at {wave.percent}%:")
        for target in plan.targets:
            say(f"    {label(target)}: {show(target, during[target.name])}")
        fired.append(await asyncio.to_thread(set_alarm, aws, plan, canary, "ALARM", ALARM_REASON))
        say(f"  -> CloudWatch alarm {fired[0]} goes into ALARM (5xx above its threshold)")

    release_id = await service.submit(plan, key_of(plan.requested_by), queue)
    say(f"submitted release {release_id} as {plan.requested_by} (signed)")
    final = await drive(release_id, say, on_status=fire_alarm_in_first_bake, key_of=key_of)
    after = await asyncio.to_thread(describe, plan, aws)
    checks = [
        RestoreCheck(t, before[t.name], during.get(t.name), after[t.name]) for t in plan.targets
    ]
    return RollbackOutcome(final=final, checks=checks, alarm=fired[0] if fired else None)


# --- the command's entry points -------------------------------------------------------------


def use_local_aws(endpoint: str) -> Any:
    """Clients for the local endpoint with local-only credentials (never real AWS)."""
    from activities.aws import AwsClients
    from client.stack import LOCAL_AWS_ENV

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(LOCAL_AWS_ENV)
    return AwsClients(endpoint_url=endpoint, max_attempts=2)


def load_demo_plan(plan_path: Path) -> ReleasePlan:
    """The plan at ``plan_path`` under a fresh release id; a bad plan is bad input."""
    from common.errors import BadInput
    from models.loader import PlanError, load_plan

    try:
        return unique_release(load_plan(plan_path))
    except PlanError as exc:
        raise BadInput(str(exc)) from None


def run_release_demo(
    plan: ReleasePlan, aws: Any, say: Say
) -> tuple[ReleaseStatus, list[ResourceCheck]]:
    """Seed, submit, approve, watch and verify one release of the demo plan."""
    return asyncio.run(release_scenario(plan, aws, say))


def run_rollback_demo(plan: ReleasePlan, aws: Any, say: Say) -> RollbackOutcome:
    """Run the alarm release and compare its resources before and after."""
    return asyncio.run(rollback_scenario(plan, aws, say))


def demo_succeeded(final: ReleaseStatus, checks: list[ResourceCheck]) -> bool:
    """The release completed and every resource is what the plan says."""
    return final.phase == ReleasePhase.COMPLETED and all(c.ok for c in checks)
