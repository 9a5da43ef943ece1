"""Signed decisions: the canonical payload a person signs, and its pure verification.

Every decision (submit, approve, reject, operator actions) is a :class:`DecisionPayload`
signed with the actor's SSH key in the standard SSH signature format (``ssh-keygen -Y sign
-n relman``, see ``client.signer``). :func:`verify_decision` checks it against the
organisation policy's keys for that actor and against what the decision is for. It is pure
and deterministic (no clock, no I/O): a workflow's Update validator calls it with
``workflow.now()``, and an auditor re-runs it offline on the recorded decisions.

``sshsig`` stands on ``cryptography``, whose native extension cannot be loaded a second
time inside Temporal's workflow sandbox: a worker whose workflows import this module (or
``models.policy``) passes :data:`SANDBOX_PASSTHROUGH` through the sandbox
(``SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH)``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import sshsig
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from models.canonical import canonical_json, model_digest
from models.durations import format_duration
from models.plan import ReleasePlan
from models.policy import Person, Policy

# Modules the workflow sandbox must pass through (see the module docstring).
SANDBOX_PASSTHROUGH = ("sshsig", "cryptography")
# The SSH signature namespace: a signature made for git or for ssh login never verifies here.
NAMESPACE = "relman"
# How far a decision's issued-at may be from workflow time, either way: room for clock
# drift and for an Update that waits for a worker, small enough that a captured signature
# cannot be replayed days later.
DEFAULT_MAX_SKEW = timedelta(minutes=10)

DecisionAction = Literal[
    "submit",
    "approve",
    "reject",
    "pause",
    "resume",
    "abort",
    "freeze_add",
    "override_window",
    "retry",
    "rollback",
    "skip_target",
]


class DecisionPayload(BaseModel):
    """What a person signs: who decides what, on which release, plan, wave or target, when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    release_id: str = Field(min_length=1)
    plan_digest: str = Field(min_length=1)
    action: DecisionAction
    wave: str | None = None
    target: str | None = None
    comment: str = ""
    # What else the decision fixes, canonically (a freeze's period, an override's scope).
    details: str = ""
    actor: str = Field(min_length=1)
    issued_at: AwareDatetime
    # Set when an attester of the organisation policy (the web console) signed for the actor
    # after single sign-on: its name and the OIDC identity it authenticated.
    via: str | None = None
    oidc_issuer: str | None = None
    oidc_subject: str | None = None

    @field_validator("issued_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # One spelling of each instant, so the signed bytes do not depend on the signer's zone.
        return value.astimezone(UTC)

    def canonical_bytes(self) -> bytes:
        """The bytes that are signed: sorted-key compact JSON in UTF-8.

        Fields at their defaults are left out, so a later relman that adds a field with a
        default still re-verifies the decisions recorded before it.
        """
        return canonical_json(self.model_dump(mode="json", exclude_defaults=True))

    def attestation(self) -> str:
        """How the actor was identified, for people: "" when they signed themselves."""
        if not self.via:
            return ""
        return f"via {self.via}, OIDC subject {self.oidc_subject} from issuer {self.oidc_issuer}"


class SignedDecision(BaseModel):
    """A decision payload and its armored SSH signature (empty: unsigned)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    payload: DecisionPayload
    signature: str = ""


class DecisionRefused(Exception):
    """A decision that must not be accepted; ``reason`` says why, for the caller and audit."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def plan_digest(plan: ReleasePlan) -> str:
    """``sha256:<hex>`` over the plan's canonical JSON; the CLI signs it, the workflow checks it."""
    return model_digest(plan)


def _when(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _signer_keys(payload: DecisionPayload, person: Person, policy: Policy) -> tuple[list[str], str]:
    """The keys that may sign ``payload`` and who holds them: the actor's own, or (for a
    decision made through an attester) the attester's, once the policy confirms that the
    OIDC identity the attester vouches for is the actor's."""
    actor = payload.actor
    if not payload.via:
        if not person.ssh_keys:
            raise DecisionRefused(f"{actor!r} has no SSH key in the organisation policy")
        return list(person.ssh_keys), repr(actor)
    attester = next((a for a in policy.attesters if a.name == payload.via), None)
    if attester is None:
        raise DecisionRefused(
            f"signed via {payload.via!r}, which the organisation policy does not list as an "
            "attester"
        )
    oidc = person.oidc
    if oidc is None or (oidc.issuer, oidc.subject) != (payload.oidc_issuer, payload.oidc_subject):
        raise DecisionRefused(
            f"{payload.via!r} vouched for OIDC subject {payload.oidc_subject!r} from issuer "
            f"{payload.oidc_issuer!r}, which is not {actor!r}'s in the organisation policy"
        )
    return [attester.ssh_key], f"attester {attester.name!r}"


def verify_decision(
    signed: SignedDecision | None,
    policy: Policy,
    *,
    release_id: str,
    plan_digest: str,
    action: DecisionAction,
    wave: str | None,
    now: datetime,
    target: str | None = None,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> None:
    """Accept ``signed`` as a decision for exactly this release, plan, action, wave and
    target at ``now``, signed by one of its actor's keys in ``policy`` (or by the attester
    it names, vouching for the actor's OIDC identity in ``policy``); else raise
    :class:`DecisionRefused` naming the first reason.
    """
    if signed is None or not signed.signature.strip():
        raise DecisionRefused("unsigned decision: relman accepts only signed decisions")
    payload = signed.payload
    actor = payload.actor
    person = policy.person(actor)
    if person is None:
        raise DecisionRefused(f"unknown actor {actor!r}: not a person in the organisation policy")
    keys, signer = _signer_keys(payload, person, policy)
    try:
        key = sshsig.check_signature(payload.canonical_bytes(), signed.signature, NAMESPACE)
    except (sshsig.InvalidSignature, NotImplementedError, ValueError):
        raise DecisionRefused(
            f"bad signature: it does not verify for this decision by {actor!r} "
            f"(SSH signature, namespace {NAMESPACE!r})"
        ) from None
    if key not in [sshsig.PublicKey.from_openssh_str(k) for k in keys]:
        raise DecisionRefused(
            f"signed with key {key.sha256_str()}, which the organisation policy does not list "
            f"for {signer}"
        )
    for what, got, expected in (
        ("release", payload.release_id, release_id),
        ("plan", payload.plan_digest, plan_digest),
        ("action", payload.action, action),
        ("wave", payload.wave, wave),
        ("target", payload.target, target),
    ):
        if got != expected:
            raise DecisionRefused(f"signed for {what} {got!r}, not {expected!r}")
    skew = payload.issued_at - now
    if abs(skew) > max_skew:
        side = "after" if skew > timedelta(0) else "before"
        raise DecisionRefused(
            f"signed at {_when(payload.issued_at)}, {format_duration(abs(skew))} {side} "
            f"workflow time {_when(now)}: more than the allowed skew of "
            f"{format_duration(max_skew)}"
        )
