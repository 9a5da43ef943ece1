"""Re-verify a release's recorded decisions offline: ``relman history --verify``.

Every decision in a release's timeline keeps what its actor signed (``evidence``) and the
digest of the organisation policy it was verified against. :func:`verify_record` checks
each one again, with no Temporal and no clock: the signature against that policy's keys
for the actor, the payload against the release, its plan and the kind of decision, and the
event as recorded against the payload (actor, comment, wave, target). A decision whose
policy version is not at hand cannot be vouched for, and says so.

Skew is not checked again: when a decision was accepted is the workflow's to judge, and
the recorded event time is when it was recorded, not when it was accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from models.messages import SYSTEM_ACTOR
from models.policy import Policy
from models.signing import DecisionAction, DecisionRefused, verify_decision
from models.status import TimelineEvent

# The timeline event each signed decision records, and the action its actor signed.
SIGNED_KINDS: dict[str, DecisionAction] = {
    "started": "submit",
    "approved": "approve",
    "rejected": "reject",
    "paused": "pause",
    "resumed": "resume",
    "aborted": "abort",
    "freeze_added": "freeze_add",
    "window_overridden": "override_window",
    "retry": "retry",
    "rollback": "rollback",
    "rollback_retry": "rollback",
    "target_skipped": "skip_target",
    "rollback_skipped": "skip_target",
}

Outcome = Literal["verified", "failed", "unverifiable"]


class Verdict(BaseModel):
    """Whether one recorded decision re-verifies, and if not, why."""

    index: int  # the event's position in the timeline
    at: datetime
    kind: str
    actor: str | None
    outcome: Outcome
    reason: str = ""
    policy_digest: str | None = None
    policy_version: str | None = None

    @property
    def verified(self) -> bool:
        return self.outcome == "verified"


def _recorded_mismatch(event: TimelineEvent) -> str:
    """How the event as recorded differs from what its actor signed ("" if it does not)."""
    assert event.evidence is not None
    payload = event.evidence.payload
    checks = [("actor", event.actor, payload.actor)]
    # Only what the event records is compared: a submission's event carries no comment,
    # a target skip may name its wave although the signed payload names the target only.
    if event.comment is not None:
        checks.append(("comment", event.comment, payload.comment))
    if payload.wave is not None:
        checks.append(("wave", event.wave, payload.wave))
    if payload.target is not None:
        checks.append(("target", event.target, payload.target))
    for what, recorded, signed in checks:
        if recorded != signed:
            return f"the event records {what} {recorded!r} but {signed!r} was signed"
    return ""


def verify_event(
    index: int,
    event: TimelineEvent,
    policies: dict[str, Policy],
    *,
    release_id: str,
    plan_digest: str | None,
) -> Verdict | None:
    """The verdict on one timeline event; None for an event that is no signed decision."""
    action = SIGNED_KINDS.get(event.kind)
    person = event.actor not in (None, SYSTEM_ACTOR)
    if action is None or (event.evidence is None and not person):
        return None

    def verdict(outcome: Outcome, reason: str = "", policy: Policy | None = None) -> Verdict:
        return Verdict(
            index=index,
            at=event.at,
            kind=event.kind,
            actor=event.actor,
            outcome=outcome,
            reason=reason,
            policy_digest=event.policy_digest,
            policy_version=policy.version if policy else None,
        )

    if event.evidence is None:
        return verdict("failed", f"the decision of {event.actor!r} carries no signature")
    policy = policies.get(event.policy_digest or "")
    if policy is None:
        known = f"policy {event.policy_digest}" if event.policy_digest else "no policy digest"
        return verdict(
            "unverifiable",
            f"{known}: that policy version is not at hand (give it with --policy FILE)",
        )
    payload = event.evidence.payload
    try:
        verify_decision(
            event.evidence,
            policy,
            release_id=release_id,
            plan_digest=plan_digest or payload.plan_digest,
            action=action,
            wave=payload.wave,
            target=payload.target,
            now=payload.issued_at,
        )
    except DecisionRefused as refused:
        return verdict("failed", refused.reason, policy)
    mismatch = _recorded_mismatch(event)
    if mismatch:
        return verdict("failed", mismatch, policy)
    return verdict("verified", policy=policy)


def verify_record(
    events: Sequence[TimelineEvent],
    policies: Iterable[Policy],
    *,
    release_id: str,
    plan_digest: str | None,
) -> list[Verdict]:
    """A verdict on every signed decision in ``events`` of release ``release_id`` (whose
    plan has ``plan_digest``), against the policy versions in ``policies``."""
    by_digest = {policy.digest: policy for policy in policies}
    verdicts = (
        verify_event(i, event, by_digest, release_id=release_id, plan_digest=plan_digest)
        for i, event in enumerate(events)
    )
    return [v for v in verdicts if v is not None]
