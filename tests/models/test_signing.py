"""Verifying signed decisions: every refusal with its exact reason, and tampering caught."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from models.loader import load_plan
from models.policy import Policy, parse_policy
from models.signing import (
    DEFAULT_MAX_SKEW,
    DecisionPayload,
    DecisionRefused,
    SignedDecision,
    plan_digest,
    verify_decision,
)
from tests.ssh_keys import SshKey, make_key

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SshKey]:
    directory = tmp_path_factory.mktemp("keys")
    keys = {name: make_key(directory, name) for name in ("bob", "bob-new", "mallory")}
    return keys | {"carol-rsa": make_key(directory, "carol-rsa", "rsa")}


@pytest.fixture(scope="module")
def policy(keys: dict[str, SshKey]) -> Policy:
    return parse_policy(
        {
            "version": "1",
            "people": [
                {"id": "bob", "name": "Bob", "ssh_keys": [keys["bob"].public]},
                {"id": "carol", "name": "Carol", "ssh_keys": [keys["carol-rsa"].public]},
                {"id": "erin", "name": "Erin"},
            ],
        }
    )


def payload(**fields: Any) -> DecisionPayload:
    data: dict[str, Any] = {
        "release_id": "payments-2.4.0",
        "plan_digest": DIGEST,
        "action": "approve",
        "wave": "finance",
        "comment": "looks good",
        "actor": "bob",
        "issued_at": NOW,
    }
    return DecisionPayload.model_validate(data | fields)


def sign(key: SshKey, data: bytes, namespace: str = "relman") -> str:
    """What ``ssh-keygen -Y sign`` writes, the way the CLI signs."""
    done = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-n", namespace, "-f", str(key.path)],
        input=data,
        capture_output=True,
        check=True,
    )
    return done.stdout.decode()


def signed(key: SshKey, **fields: Any) -> SignedDecision:
    p = payload(**fields)
    return SignedDecision(payload=p, signature=sign(key, p.canonical_bytes()))


def verify(decision: SignedDecision | None, policy: Policy, **overrides: Any) -> None:
    expected: dict[str, Any] = {
        "release_id": "payments-2.4.0",
        "plan_digest": DIGEST,
        "action": "approve",
        "wave": "finance",
        "now": NOW,
    }
    verify_decision(decision, policy, **(expected | overrides))


def refusal(decision: SignedDecision | None, policy: Policy, **overrides: Any) -> str:
    with pytest.raises(DecisionRefused) as caught:
        verify(decision, policy, **overrides)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


# --- the payload -----------------------------------------------------------------------------


def test_the_canonical_bytes_are_sorted_compact_utf8_json():
    p = payload(
        comment="grüß dich",
        issued_at=datetime(2026, 3, 2, 11, 0, tzinfo=timezone(timedelta(hours=1))),
    )
    assert p.canonical_bytes() == (
        '{"action":"approve","actor":"bob","comment":"grüß dich","issued_at":'
        '"2026-03-02T10:00:00Z","plan_digest":"' + DIGEST + '","release_id":"payments-2.4.0",'
        '"wave":"finance"}'
    ).encode("utf-8")


def test_the_payload_survives_a_json_round_trip_byte_for_byte():
    p = payload(issued_at=NOW + timedelta(microseconds=123456), target="api")
    again = SignedDecision.model_validate_json(SignedDecision(payload=p).model_dump_json())
    assert again.payload.canonical_bytes() == p.canonical_bytes()


def test_the_plan_digest_is_stable_and_follows_the_plan():
    demo = load_plan(REPO / "examples" / "demo.yaml")
    assert plan_digest(demo) == plan_digest(load_plan(REPO / "examples" / "demo.yaml"))
    assert plan_digest(demo).startswith("sha256:")
    assert plan_digest(demo.model_copy(update={"version": "2.4.1"})) != plan_digest(demo)


# --- accepted ----------------------------------------------------------------------------------


def test_a_decision_signed_with_the_actor_s_key_is_accepted(keys, policy):
    verify(signed(keys["bob"]), policy)
    # Within the skew either way.
    verify(signed(keys["bob"], issued_at=NOW - DEFAULT_MAX_SKEW), policy)
    verify(signed(keys["bob"], issued_at=NOW + DEFAULT_MAX_SKEW), policy)


def test_an_rsa_key_and_any_of_several_keys_verify(keys, policy):
    verify(signed(keys["carol-rsa"], actor="carol"), policy)
    rotated = parse_policy(
        policy.model_dump(mode="json")
        | {
            "people": [
                {
                    "id": "bob",
                    "name": "Bob",
                    "ssh_keys": [keys["bob"].public, keys["bob-new"].public],
                }
            ]
        }
    )
    verify(signed(keys["bob-new"]), rotated)


def test_a_target_decision_names_its_target(keys, policy):
    decision = signed(keys["bob"], action="skip_target", target="api")
    verify(decision, policy, action="skip_target", target="api")
    assert refusal(decision, policy, action="skip_target", target="db") == (
        "signed for target 'api', not 'db'"
    )


# --- refused -----------------------------------------------------------------------------------


def test_unsigned(keys, policy):
    reason = "unsigned decision: relman accepts only signed decisions"
    assert refusal(None, policy) == reason
    assert refusal(SignedDecision(payload=payload()), policy) == reason


def test_unknown_actor(keys, policy):
    assert refusal(signed(keys["mallory"], actor="mallory"), policy) == (
        "unknown actor 'mallory': not a person in the organisation policy"
    )


def test_actor_without_a_key(keys, policy):
    assert refusal(signed(keys["mallory"], actor="erin"), policy) == (
        "'erin' has no SSH key in the organisation policy"
    )


def test_a_key_the_policy_does_not_list_for_the_actor(keys, policy):
    # mallory signs a decision in bob's name with her own key: a valid signature, wrong key.
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(keys["mallory"].public_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert refusal(signed(keys["mallory"]), policy) == (
        f"signed with key {fingerprint}, which the organisation policy does not list for 'bob'"
    )


BAD_SIGNATURE = (
    "bad signature: it does not verify for this decision by 'bob' (SSH signature, namespace "
    "'relman')"
)


def test_a_tampered_payload_fails(keys, policy):
    original = signed(keys["bob"])
    for change in ({"comment": "looks good!"}, {"wave": "operations"}, {"actor": "carol"}):
        tampered = SignedDecision(
            payload=original.payload.model_copy(update=change), signature=original.signature
        )
        actor = tampered.payload.actor
        assert refusal(tampered, policy) == BAD_SIGNATURE.replace("'bob'", f"'{actor}'")


def test_a_signature_for_another_namespace_or_garbage_fails(keys, policy):
    p = payload()
    git = SignedDecision(payload=p, signature=sign(keys["bob"], p.canonical_bytes(), "git"))
    assert refusal(git, policy) == BAD_SIGNATURE
    garbage = SignedDecision(payload=p, signature="-----BEGIN SSH SIGNATURE-----\nAAAA\n")
    assert refusal(garbage, policy) == BAD_SIGNATURE
    assert refusal(SignedDecision(payload=p, signature="hello"), policy) == BAD_SIGNATURE


@pytest.mark.parametrize(
    ("field", "overrides", "reason"),
    [
        (
            "release",
            {"release_id": "checkout-5.2.0"},
            "signed for release 'payments-2.4.0', not 'checkout-5.2.0'",
        ),
        (
            "plan",
            {"plan_digest": "sha256:" + "cd" * 32},
            f"signed for plan '{DIGEST}', not 'sha256:{'cd' * 32}'",
        ),
        ("action", {"action": "reject"}, "signed for action 'approve', not 'reject'"),
        ("wave", {"wave": "operations"}, "signed for wave 'finance', not 'operations'"),
    ],
)
def test_a_signature_replayed_onto_another_decision(keys, policy, field, overrides, reason):
    assert refusal(signed(keys["bob"]), policy, **overrides) == reason


def test_issued_too_long_before_or_after_workflow_time(keys, policy):
    early = signed(keys["bob"], issued_at=NOW - timedelta(minutes=10, seconds=1))
    assert refusal(early, policy) == (
        "signed at 2026-03-02T09:49:59Z, 10m1s before workflow time 2026-03-02T10:00:00Z: "
        "more than the allowed skew of 10m"
    )
    late = signed(keys["bob"], issued_at=NOW + timedelta(days=1))
    assert refusal(late, policy, max_skew=timedelta(minutes=1)) == (
        "signed at 2026-03-03T10:00:00Z, 1d after workflow time 2026-03-02T10:00:00Z: "
        "more than the allowed skew of 1m"
    )
