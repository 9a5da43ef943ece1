"""Sign decisions with the person's SSH key, the way git signs commits.

``ssh-keygen -Y sign -n relman -f KEY`` signs the payload's canonical bytes. ``KEY`` is
``RELMAN_SSH_KEY`` if set, else ``~/.ssh/id_ed25519`` (the CLI's commands choose it with
``client.identity.key_for``, which also knows ``--key`` and the dev stack's keys); it is
either a private key file, or a public key file (``.pub``) whose private half is in
``ssh-agent`` (``SSH_AUTH_SOCK``), which is how hardware tokens and agent-only keys sign.
Nothing here reads the private key itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from client.identity import DEFAULT_KEY, KEY_ENV
from common.errors import CliError
from models.signing import NAMESPACE, DecisionPayload, SignedDecision

# Long enough for a hardware token's touch; ssh-keygen never waits on the network.
SIGN_TIMEOUT_SECONDS = 60.0


class SigningError(CliError):
    """The decision could not be signed: no key, no agent, or ssh-keygen refused."""


def signing_key(env: Mapping[str, str] | None = None) -> Path:
    """The key file to sign with: ``RELMAN_SSH_KEY``, else ``~/.ssh/id_ed25519``."""
    env = os.environ if env is None else env
    return Path(env.get(KEY_ENV) or DEFAULT_KEY).expanduser()


def sign_bytes(data: bytes, key: Path, env: Mapping[str, str] | None = None) -> str:
    """The armored SSH signature of ``data`` in the ``relman`` namespace, made with ``key``."""
    env = dict(os.environ if env is None else env)
    if not key.is_file():
        raise SigningError(
            f"no SSH key at {key}: set {KEY_ENV} to your private key file, or to its .pub "
            "file with the private key in ssh-agent"
        )
    if key.suffix == ".pub" and not env.get("SSH_AUTH_SOCK"):
        raise SigningError(
            f"{key} is a public key: signing with it needs its private key in ssh-agent, "
            "and SSH_AUTH_SOCK is not set"
        )
    ssh_keygen = shutil.which("ssh-keygen", path=env.get("PATH"))
    if ssh_keygen is None:
        raise SigningError("ssh-keygen was not found on PATH; install OpenSSH 8.2 or later")
    # Data on stdin, signature on stdout: no temporary files. stdin is the payload, so a
    # passphrase-protected key not in the agent fails instead of waiting for a prompt.
    try:
        done = subprocess.run(
            [ssh_keygen, "-Y", "sign", "-n", NAMESPACE, "-f", str(key)],
            input=data,
            capture_output=True,
            env=env,
            timeout=SIGN_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SigningError(
            f"ssh-keygen did not sign with {key} within {SIGN_TIMEOUT_SECONDS:.0f}s"
        ) from None
    signature = done.stdout.decode("ascii", "replace")
    if done.returncode != 0 or "-----BEGIN SSH SIGNATURE-----" not in signature:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = detail[-1] if detail else f"exit status {done.returncode}"
        raise SigningError(f"ssh-keygen could not sign with {key}: {reason}")
    return signature


def sign_decision(
    payload: DecisionPayload, key: Path | None = None, env: Mapping[str, str] | None = None
) -> SignedDecision:
    """``payload`` signed with ``key`` (default: :func:`signing_key`)."""
    key = key or signing_key(env)
    return SignedDecision(
        payload=payload, signature=sign_bytes(payload.canonical_bytes(), key, env)
    )
