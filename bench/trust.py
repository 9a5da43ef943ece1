"""The bench's organisation: its people's SSH keys, the policy its workers read, and every
decision signed the way the CLI signs it.

Keys are made once per ``python -m bench`` run with ``ssh-keygen -t ed25519 -N ''`` in the
run's temporary folder; the policy names the bench's people, groups and application, and is
what ``RELMAN_POLICY`` / ``policy_source`` of every bench worker points at. Submissions and
decisions are signed with ``client.signer`` (``ssh-keygen -Y sign``), over the payloads
``models.signing`` and ``models.messages.decision_payload`` build, so the workflow verifies
exactly what it verifies for ``relman submit`` and ``relman approve``.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

from client.binaries import find_binary
from client.signer import sign_decision
from models.messages import DecisionInput, ReleaseInput, decision_payload
from models.plan import ReleasePlan
from models.signing import DecisionPayload, SignedDecision, plan_digest

APPLICATION = "checkout"
# alice requests every bench release (and so may not approve it); one approver per group.
REQUESTER = "alice"
GROUPS: dict[str, list[str]] = {
    "finance-cab": ["bob"],
    "ops-leads": ["dave"],
    "apac-leads": ["kenji"],
}
# department -> the groups that approve its waves (the multi-day plan has all three).
APPROVERS: dict[str, list[str]] = {
    "finance": ["finance-cab"],
    "operations": ["ops-leads"],
    "apac": ["apac-leads"],
}
PEOPLE = (REQUESTER, *(m for members in GROUPS.values() for m in members))
# ssh-keygen processes signing at once: about one per core keeps them off the worker's back.
SIGN_THREADS = 2

T = TypeVar("T")


@dataclass(frozen=True)
class Organisation:
    """The bench's people with their private key files, and the policy file naming them."""

    keys: dict[str, Path]
    policy_path: Path

    @classmethod
    def create(cls, directory: Path) -> Organisation:
        """Make a key per person in ``directory`` and write the policy beside them."""
        directory.mkdir(parents=True, exist_ok=True)
        keys, public = {}, {}
        for person in PEOPLE:
            path = directory / person
            subprocess.run(
                [find_binary("ssh-keygen"), "-q", "-t", "ed25519", "-N", "",
                 "-C", f"{person}@relman-bench", "-f", str(path)],
                check=True,
                capture_output=True,
            )  # fmt: skip
            keys[person] = path
            public[person] = path.with_name(person + ".pub").read_text().strip()
        policy = {
            "version": "bench-1",
            "description": "written by python -m bench for its own stack",
            "people": [{"id": p, "name": p.capitalize(), "ssh_keys": [public[p]]} for p in PEOPLE],
            "groups": GROUPS,
            "applications": {APPLICATION: {"approvers": APPROVERS}},
        }
        policy_path = directory / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))
        return cls(keys, policy_path)

    def sign(self, payload: DecisionPayload) -> SignedDecision:
        """``payload`` signed with its actor's key by ``ssh-keygen`` (``client.signer``)."""
        return sign_decision(payload, self.keys[payload.actor])

    def release_input(self, plan: ReleasePlan, issued_at: datetime | None = None) -> ReleaseInput:
        """``plan`` with its requester's signed submission, as ``relman submit`` sends it."""
        payload = DecisionPayload(
            release_id=plan.id,
            plan_digest=plan_digest(plan),
            action="submit",
            actor=plan.requested_by,
            issued_at=issued_at or datetime.now(UTC),
        )
        return ReleaseInput(plan=plan, submission=self.sign(payload))

    def approval(
        self,
        plan: ReleasePlan,
        wave: str,
        approver: str,
        comment: str = "",
        issued_at: datetime | None = None,
    ) -> DecisionInput:
        """``approver``'s signed approval of ``wave``, as ``relman approve`` sends it."""
        decision = DecisionInput(wave=wave, approver=approver, comment=comment)
        payload = decision_payload(
            "approve",
            decision,
            release_id=plan.id,
            plan_digest=plan_digest(plan),
            issued_at=issued_at or datetime.now(UTC),
        )
        return decision.model_copy(update={"signed": self.sign(payload)})


def sign_all(make: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
    """``make(item)`` for every item, ``SIGN_THREADS`` ssh-keygen processes at a time."""
    with concurrent.futures.ThreadPoolExecutor(SIGN_THREADS) as pool:
        return list(pool.map(make, items))
