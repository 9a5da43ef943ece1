"""Decisions the console signs for people it signed in: verified like a person's own,
refused when anything about the attester or the identity it vouches for is off, and
re-verified by `relman history --verify`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from client.audit import verify_record
from client.signer import sign_decision
from models.messages import DecisionInput, check_decision, decision_payload
from models.policy import Policy, parse_policy
from models.signing import DecisionRefused, SignedDecision
from models.status import TimelineEvent
from tests.ssh_keys import SshKey, make_key

RELEASE = "payments-2.4.0"
PLAN = "sha256:" + "ab" * 32
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ISSUER = "https://login.example.com"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SshKey]:
    directory = tmp_path_factory.mktemp("keys")
    return {name: make_key(directory, name) for name in ("bob", "console", "rogue")}


@pytest.fixture(scope="module")
def policy(keys: dict[str, SshKey]) -> Policy:
    return parse_policy(
        {
            "version": "v1",
            "people": [
                {"id": "bob", "name": "Bob", "oidc": {"issuer": ISSUER, "subject": "00u1bob"}},
                {"id": "carol", "name": "Carol", "ssh_keys": [keys["rogue"].public]},
            ],
            "groups": {"finance-cab": ["bob"]},
            "attesters": [{"name": "console", "ssh_key": keys["console"].public}],
            "applications": {"*": {"approvers": {"*": ["finance-cab"]}}},
        }
    )


def attested(
    keys: dict[str, SshKey], *, signer: str = "console", via: str = "console",
    subject: str = "00u1bob", actor: str = "bob",
) -> tuple[DecisionInput, SignedDecision]:  # fmt: skip
    decision = DecisionInput(wave="finance", approver=actor, comment="CAB-1 ok")
    payload = decision_payload(
        "approve", decision, release_id=RELEASE, plan_digest=PLAN, issued_at=NOW
    ).model_copy(update={"via": via, "oidc_issuer": ISSUER, "oidc_subject": subject})
    signed = sign_decision(payload, keys[signer].path)
    return decision.model_copy(update={"signed": signed}), signed


def check(decision: DecisionInput, policy: Policy) -> Any:
    return check_decision(
        "approve", decision, policy, release_id=RELEASE, plan_digest=PLAN, now=NOW
    )


def test_a_decision_the_console_signed_for_an_identified_person_is_accepted(keys, policy):  # type: ignore[no-untyped-def]
    decision, signed = attested(keys)
    assert check(decision, policy) == signed
    assert signed.payload.attestation() == (
        f"via console, OIDC subject 00u1bob from issuer {ISSUER}"
    )


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"signer": "rogue"}, "which the organisation policy does not list for attester 'console'"),
        ({"via": "kiosk"}, "signed via 'kiosk', which the organisation policy does not list"),
        ({"subject": "00u1eve"}, "'console' vouched for OIDC subject '00u1eve' from issuer"),
        ({"actor": "carol"}, "which is not 'carol''s in the organisation policy"),
    ],
)  # fmt: skip
def test_an_attested_decision_is_refused_when_anything_is_off(keys, policy, kw, reason):  # type: ignore[no-untyped-def]
    decision, _ = attested(keys, **kw)
    with pytest.raises(DecisionRefused) as refused:
        check(decision, policy)
    assert reason in refused.value.reason


def test_history_verify_covers_attested_decisions(keys, policy):  # type: ignore[no-untyped-def]
    _, good = attested(keys)
    _, forged = attested(keys, signer="rogue")
    events = [
        TimelineEvent(at=NOW, kind="approved", message="bob approved wave finance",
                      actor="bob", wave="finance", comment="CAB-1 ok", evidence=signed,
                      policy_digest=policy.digest)
        for signed in (good, forged)
    ]  # fmt: skip
    verdicts = verify_record(events, [policy], release_id=RELEASE, plan_digest=PLAN)
    assert [v.outcome for v in verdicts] == ["verified", "failed"]
    assert "does not list for attester 'console'" in verdicts[1].reason


def test_history_text_says_which_decisions_were_made_in_the_console(keys, policy, tmp_path):  # type: ignore[no-untyped-def]
    """`relman history` and `history --verify` name the attester and the OIDC identity it
    verified beside each decision the console signed, and nothing beside a person's own."""
    import json
    import os
    import subprocess
    import sys

    from client.views import HistoryView, VerifiedHistoryView
    from models.status import ReleasePhase, ReleaseStatus

    _, good = attested(keys)
    events = [
        TimelineEvent(at=NOW, kind="approved", message="bob approved wave finance",
                      actor="bob", wave="finance", comment="CAB-1 ok", evidence=good,
                      policy_digest=policy.digest),
        TimelineEvent(at=NOW, kind="wave_deploying", message="wave finance deploying",
                      actor="system", wave="finance"),
    ]  # fmt: skip
    status = ReleaseStatus(
        release_id=RELEASE, application="payments", version="2.4.0", requested_by="alice",
        phase=ReleasePhase.DEPLOYING, plan_digest=PLAN, timeline=events,
    )  # fmt: skip
    verdicts = verify_record(events, [policy], release_id=RELEASE, plan_digest=PLAN)
    record = tmp_path / "audit.json"
    record.write_text(json.dumps(VerifiedHistoryView(status, [policy], verdicts).to_json()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELMAN_", "TEMPORAL_"))}
    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "history", "--verify", "--file", str(record)],
        capture_output=True, text=True, timeout=60, env=env | {"COLUMNS": "250"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = f"via console, OIDC subject 00u1bob from issuer {ISSUER}"
    lines = done.stdout.splitlines()
    approved = next(i for i, line in enumerate(lines) if "bob approved wave finance" in line)
    assert said in lines[approved + 1]
    assert "verified" in lines[approved]
    assert done.stdout.count("via console") == 1
    assert "all 1 signed decision(s) verify" in done.stdout

    from rich.console import Console

    plain = Console(record=True, width=250)
    HistoryView(status).render(plain)
    text = plain.export_text()
    assert 'bob approved wave finance - "CAB-1 ok"' in text and said in text
    assert text.count("via console") == 1
