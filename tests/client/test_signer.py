"""Signing decisions with real SSH keys, from a key file and through ssh-agent, and verifying
them as the workflow will."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from client.signer import DEFAULT_KEY, KEY_ENV, SigningError, sign_decision, signing_key
from models.policy import Policy, parse_policy
from models.signing import DecisionPayload, DecisionRefused, verify_decision
from tests.ssh_keys import SshKey, make_key

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32


def payload(actor: str = "bob", comment: str = "ship it") -> DecisionPayload:
    return DecisionPayload(
        release_id="payments-2.4.0",
        plan_digest=DIGEST,
        action="approve",
        wave="finance",
        comment=comment,
        actor=actor,
        issued_at=NOW,
    )


def policy_for(key: SshKey) -> Policy:
    return parse_policy(
        {"version": "1", "people": [{"id": "bob", "name": "Bob", "ssh_keys": [key.public]}]}
    )


def verify(signed, policy: Policy) -> None:  # type: ignore[no-untyped-def]
    verify_decision(
        signed,
        policy,
        release_id="payments-2.4.0",
        plan_digest=DIGEST,
        action="approve",
        wave="finance",
        now=NOW,
    )


def test_the_key_comes_from_relman_ssh_key_else_id_ed25519():
    assert signing_key({KEY_ENV: "/keys/bob"}) == Path("/keys/bob")
    assert signing_key({}) == Path(DEFAULT_KEY).expanduser()
    assert str(signing_key({})).endswith(".ssh/id_ed25519")


def test_a_decision_signed_with_a_key_file_verifies(tmp_path):
    key = make_key(tmp_path, "bob")
    signed = sign_decision(payload(), env={**os.environ, KEY_ENV: str(key.path)})
    assert signed.signature.startswith("-----BEGIN SSH SIGNATURE-----")
    verify(signed, policy_for(key))


def test_a_tampered_signed_decision_fails(tmp_path):
    key = make_key(tmp_path, "bob")
    signed = sign_decision(payload(), key.path)
    tampered = signed.model_copy(update={"payload": payload(comment="ship it now")})
    with pytest.raises(DecisionRefused, match="^bad signature: "):
        verify(tampered, policy_for(key))


def test_a_missing_key_is_a_clear_error(tmp_path):
    absent = tmp_path / "id_ed25519"
    with pytest.raises(SigningError) as caught:
        sign_decision(payload(), absent)
    assert str(caught.value) == (
        f"no SSH key at {absent}: set RELMAN_SSH_KEY to your private key file, or to its .pub "
        "file with the private key in ssh-agent"
    )


def test_a_public_key_without_an_agent_is_a_clear_error(tmp_path):
    key = make_key(tmp_path, "bob")
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    with pytest.raises(SigningError) as caught:
        sign_decision(payload(), key.public_path, env)
    assert str(caught.value) == (
        f"{key.public_path} is a public key: signing with it needs its private key in "
        "ssh-agent, and SSH_AUTH_SOCK is not set"
    )


def test_ssh_keygen_s_refusal_is_reported(tmp_path):
    key = make_key(tmp_path, "bob")
    key.path.unlink()  # the .pub alone, and an agent that does not hold its private half
    env = {**os.environ, "SSH_AUTH_SOCK": str(tmp_path / "no-agent")}
    with pytest.raises(SigningError) as caught:
        sign_decision(payload(), key.public_path, env)
    assert str(caught.value).startswith(f"ssh-keygen could not sign with {key.public_path}: ")


# --- through ssh-agent -----------------------------------------------------------------------


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private ssh-agent on a socket in tmp_path; the environment that reaches it."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("ssh-agent is not installed")
    sock = tmp_path / "agent.sock"
    process = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline:
                pytest.fail("ssh-agent did not open its socket")
            time.sleep(0.02)
        yield {**os.environ, "SSH_AUTH_SOCK": str(sock)}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_public_key_signs_through_ssh_agent(tmp_path, agent):
    key = make_key(tmp_path, "bob")
    subprocess.run(["ssh-add", "-q", str(key.path)], env=agent, check=True, capture_output=True)
    key.path.unlink()  # only the agent holds the private key now, as with a hardware token
    signed = sign_decision(payload(), env={**agent, KEY_ENV: str(key.public_path)})
    verify(signed, policy_for(key))
