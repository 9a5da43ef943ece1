"""``relman demo``: a real release on the embedded stack, end to end, checked against AWS.

It uses the same paths a person would: the plan file, ``submit``, the approval Update that
``relman approve`` sends, and the status Query; then it reads the resources back from the
local AWS endpoint and compares them with the plan.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from client import service
from client.errors import CliError
from models.plan import ReleasePlan, SsmParameterTarget
from models.status import ReleasePhase, ReleaseStatus

DEMO_PLAN = Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"
DEMO_TIMEOUT_SECONDS = 90.0
POLL_SECONDS = 0.3
# What the demo's parameters hold before the release (the running version).
SEED_VALUES = {
    "/payments/finance/api/version": "2.3.0",
    "/payments/finance/settlement/engine": "ledger-v1",
    "/payments/operations/api/version": "2.3.0",
}


@dataclass
class ResourceCheck:
    """One resource after the demo: what it was, what the plan wants, what AWS says."""

    resource: str
    before: str
    expected: str
    actual: str | None

    @property
    def ok(self) -> bool:
        return self.actual == self.expected


def _region(plan: ReleasePlan, target: Any) -> str | None:
    wave = next(w for w in plan.waves if target.name in w.targets)
    dept = plan.departments.get(wave.department)
    return target.region or (dept.region if dept else None)


def _ssm_targets(plan: ReleasePlan) -> list[SsmParameterTarget]:
    return [t for t in plan.targets if isinstance(t, SsmParameterTarget)]


def seed(plan: ReleasePlan, aws: Any) -> None:
    """Put every SSM target back to its pre-release value (so the demo can run again)."""
    for target in _ssm_targets(plan):
        aws.client("ssm", _region(plan, target)).put_parameter(
            Name=target.parameter,
            Value=SEED_VALUES.get(target.parameter, "previous"),
            Type=target.type,
            Overwrite=True,
        )


def verify(plan: ReleasePlan, aws: Any) -> list[ResourceCheck]:
    """Read every SSM target back from AWS and compare it with the plan."""
    checks = []
    for target in _ssm_targets(plan):
        parameter = aws.client("ssm", _region(plan, target)).get_parameter(
            Name=target.parameter, WithDecryption=True
        )["Parameter"]
        checks.append(
            ResourceCheck(
                resource=target.resource,
                before=SEED_VALUES.get(target.parameter, "previous"),
                expected=target.value,
                actual=parameter["Value"],
            )
        )
    return checks


async def drive(release_id: str, say: Any) -> ReleaseStatus:
    """Approve each gate as its first eligible approver, narrating events, until the end."""
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
        for pending in st.pending_approvals:
            if not pending.eligible_approvers or (pending.wave, "") in decided:
                continue
            approver = pending.eligible_approvers[0]
            if (pending.wave, approver) in decided:
                continue
            decided.add((pending.wave, approver))
            result = await service.decide(
                release_id, pending.wave, approver, "approved in relman demo", True
            )
            say(f"  -> {approver} approves wave {pending.wave}: {result.message}")
        await asyncio.sleep(POLL_SECONDS)
    raise CliError(f"demo release {release_id} did not finish within {DEMO_TIMEOUT_SECONDS:.0f}s")


def use_local_aws(endpoint: str) -> Any:
    """Clients for the local endpoint with local-only credentials (never real AWS)."""
    from activities.aws import AwsClients
    from client.stack import LOCAL_AWS_ENV

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(LOCAL_AWS_ENV)
    return AwsClients(endpoint_url=endpoint, max_attempts=2)


def run_release_demo(
    plan_path: Path, aws: Any, say: Any
) -> tuple[ReleaseStatus, list[ResourceCheck]]:
    """Seed, submit, approve, watch and verify one release of the demo plan."""
    from models.loader import load_plan

    base = load_plan(plan_path)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    plan = base.model_copy(update={"id": f"{base.id}-demo-{stamp}"})
    seed(plan, aws)
    say(f"seeded {len(_ssm_targets(plan))} SSM parameters at their pre-release values")
    release_id = asyncio.run(service.submit(plan))
    say(f"submitted release {release_id}")
    final = asyncio.run(drive(release_id, say))
    return final, verify(plan, aws)


def demo_succeeded(final: ReleaseStatus, checks: list[ResourceCheck]) -> bool:
    """The release completed and every resource is what the plan says."""
    return final.phase == ReleasePhase.COMPLETED and all(c.ok for c in checks)
