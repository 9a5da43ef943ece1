"""`relman history --verify`: recorded decisions re-verified offline, tampering caught."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from client.audit import verify_record
from client.signer import sign_decision
from client.views import VerifiedHistoryView
from models.policy import Policy, parse_policy
from models.signing import DecisionPayload, SignedDecision
from models.status import ReleasePhase, ReleaseStatus, TimelineEvent
from tests.ssh_keys import SshKey, make_key

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "payments-2.4.0"
PLAN = "sha256:" + "ab" * 32
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SshKey]:
    directory = tmp_path_factory.mktemp("keys")
    return {person: make_key(directory, person) for person in ("alice", "bob", "mallory")}


def policy_of(keys: dict[str, SshKey], version: str = "v1") -> Policy:
    return parse_policy(
        {
            "version": version,
            "people": [{"id": p, "name": p, "ssh_keys": [k.public]} for p, k in keys.items()],
            "groups": {"finance-cab": ["bob"]},
            "applications": {"*": {"approvers": {"*": ["finance-cab"]}}},
        }
    )


def decision(
    keys: dict[str, SshKey],
    policy: Policy,
    kind: str,
    action: str,
    actor: str,
    *,
    minute: int,
    wave: str | None = None,
    comment: str = "",
    recorded_comment: str | None = None,
) -> TimelineEvent:
    at = T0 + timedelta(minutes=minute)
    payload = DecisionPayload(
        release_id=RELEASE,
        plan_digest=PLAN,
        action=action,  # type: ignore[arg-type]
        wave=wave,
        comment=comment,
        actor=actor,
        issued_at=at,
    )
    return TimelineEvent(
        at=at,
        kind=kind,
        message=f"{actor} {kind}",
        actor=actor,
        wave=wave,
        comment=recorded_comment,
        evidence=sign_decision(payload, keys[actor].path),
        policy_digest=policy.digest,
    )


@pytest.fixture(scope="module")
def record(keys: dict[str, SshKey]) -> tuple[list[TimelineEvent], Policy]:
    policy = policy_of(keys)
    events = [
        decision(keys, policy, "started", "submit", "alice", minute=0),
        TimelineEvent(at=T0, kind="policy", message="policy v1", actor="relman"),
        decision(
            keys,
            policy,
            "approved",
            "approve",
            "bob",
            minute=5,
            wave="finance",
            comment="CAB-1234 ok",
            recorded_comment="CAB-1234 ok",
        ),  # fmt: skip
        decision(
            keys,
            policy,
            "paused",
            "pause",
            "alice",
            minute=9,
            comment="incident INC-7",
            recorded_comment="incident INC-7",
        ),  # fmt: skip
        TimelineEvent(at=T0, kind="rollback", message="alarm fired", actor="relman"),
    ]
    return events, policy


def verify(events: list[TimelineEvent], *policies: Policy) -> list:  # type: ignore[type-arg]
    return verify_record(events, policies, release_id=RELEASE, plan_digest=PLAN)


def test_every_signed_decision_verifies_and_other_events_are_left_out(record) -> None:  # type: ignore[no-untyped-def]
    events, policy = record
    verdicts = verify(events, policy)
    assert [(v.index, v.kind, v.outcome) for v in verdicts] == [
        (0, "started", "verified"),
        (2, "approved", "verified"),
        (3, "paused", "verified"),
    ]
    assert {v.policy_version for v in verdicts} == {"v1"}


def test_a_recorded_comment_changed_after_the_fact_is_caught(record) -> None:  # type: ignore[no-untyped-def]
    events, policy = record
    tampered = list(events)
    tampered[2] = events[2].model_copy(update={"comment": "CAB-9999 ok"})
    [_, approval, _] = verify(tampered, policy)
    assert approval.outcome == "failed"
    assert approval.reason == "the event records comment 'CAB-9999 ok' but 'CAB-1234 ok' was signed"


def test_a_signed_comment_changed_after_the_fact_breaks_the_signature(record) -> None:  # type: ignore[no-untyped-def]
    events, policy = record
    evidence = events[2].evidence
    assert evidence is not None
    forged = evidence.model_copy(
        update={"payload": evidence.payload.model_copy(update={"comment": "CAB-9999 ok"})}
    )
    tampered = list(events)
    tampered[2] = events[2].model_copy(update={"evidence": forged, "comment": "CAB-9999 ok"})
    [_, approval, _] = verify(tampered, policy)
    assert approval.outcome == "failed"
    assert approval.reason.startswith(
        "bad signature: it does not verify for this decision by 'bob'"
    )


def test_a_changed_actor_is_caught(record) -> None:  # type: ignore[no-untyped-def]
    events, policy = record
    recorded = list(events)
    recorded[2] = events[2].model_copy(update={"actor": "mallory"})
    assert verify(recorded, policy)[1].reason == (
        "the event records actor 'mallory' but 'bob' was signed"
    )
    # Claiming the evidence itself is mallory's: bob's signature is not mallory's key.
    evidence = events[2].evidence
    assert evidence is not None
    claimed = evidence.model_copy(
        update={"payload": evidence.payload.model_copy(update={"actor": "mallory"})}
    )
    recorded[2] = events[2].model_copy(update={"actor": "mallory", "evidence": claimed})
    verdict = verify(recorded, policy)[1]
    assert verdict.outcome == "failed"
    assert "bad signature" in verdict.reason


def test_a_signature_swapped_from_another_decision_is_caught(record) -> None:  # type: ignore[no-untyped-def]
    events, policy = record
    approval, pause = events[2].evidence, events[3].evidence
    assert approval is not None and pause is not None
    tampered = list(events)
    tampered[3] = events[3].model_copy(
        update={"evidence": SignedDecision(payload=pause.payload, signature=approval.signature)}
    )
    verdict = verify(tampered, policy)[2]
    assert verdict.outcome == "failed"
    assert verdict.reason.startswith("bad signature")


def test_a_decision_recorded_as_another_kind_is_caught(record) -> None:  # type: ignore[no-untyped-def]
    events, policy = record
    tampered = list(events)
    tampered[3] = events[3].model_copy(update={"kind": "aborted"})
    assert verify(tampered, policy)[2].reason == "signed for action 'pause', not 'abort'"


def test_a_decision_whose_policy_is_unknown_is_unverifiable(record, keys) -> None:  # type: ignore[no-untyped-def]
    events, _ = record
    other = policy_of(keys, "v2")
    verdicts = verify(events, other)
    assert {v.outcome for v in verdicts} == {"unverifiable"}
    assert verdicts[0].reason == (
        f"policy {events[0].policy_digest}: that policy version is not at hand "
        "(give it with --policy FILE)"
    )


def test_a_person_decision_without_evidence_fails(record) -> None:  # type: ignore[no-untyped-def]
    events, policy = record
    tampered = list(events)
    tampered[3] = events[3].model_copy(update={"evidence": None})
    verdict = verify(tampered, policy)[2]
    assert (verdict.outcome, verdict.reason) == (
        "failed",
        "the decision of 'alice' carries no signature",
    )


def relman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1"},  # nothing to talk to
        timeout=60,
    )


def export(path: Path, events: list[TimelineEvent], policies: list[Policy]) -> Path:
    status = ReleaseStatus(
        release_id=RELEASE,
        application="payments",
        version="2.4.0",
        requested_by="alice",
        phase=ReleasePhase.COMPLETED,
        plan_digest=PLAN,
        timeline=events,
    )
    view = VerifiedHistoryView(status, policies, verify(events, *policies))
    path.write_text(json.dumps(view.to_json(), default=str))
    return path


def test_an_exported_record_verifies_again_with_no_temporal(record, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    events, policy = record
    audit = export(tmp_path / "audit.json", events, [policy])
    done = relman("history", "--verify", "--file", str(audit), "-o", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["verified"] is True
    assert [v["outcome"] for v in data["verification"]] == ["verified"] * 3
    assert data["timeline"][2]["evidence"]["payload"]["comment"] == "CAB-1234 ok"
    assert data["timeline"][2]["policy_digest"] == policy.digest
    assert [p["version"] for p in data["policies"]] == ["v1"]
    text = relman("history", "--verify", "--file", str(audit))
    assert text.returncode == 0 and "all 3 signed decision(s) verify" in text.stdout


def test_a_tampered_export_exits_1(record, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    events, policy = record
    audit = export(tmp_path / "audit.json", events, [policy])
    data = json.loads(audit.read_text())
    data["timeline"][2]["comment"] = "CAB-9999 ok"
    audit.write_text(json.dumps(data))
    done = relman("history", "--verify", "--file", str(audit))
    assert done.returncode == 1
    assert f"1 of 3 decision(s) of {RELEASE} do not verify" in done.stderr
    assert "FAILED" in done.stdout or "failed" in done.stdout


def test_an_export_without_its_policy_verifies_with_policy_given(record, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    events, policy = record
    audit = export(tmp_path / "audit.json", events, [])
    assert relman("history", "--verify", "--file", str(audit)).returncode == 1
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(policy.model_dump_json(exclude_defaults=True))
    given = relman("history", "--verify", "--file", str(audit), "--policy", str(policy_file))
    assert given.returncode == 0, given.stdout + given.stderr


def test_history_needs_an_id_or_a_file() -> None:
    done = relman("history", "--verify")
    assert done.returncode == 2
    assert "give a release ID or --file RECORD" in done.stderr
