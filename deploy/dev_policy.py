"""Write the compose stack's dev keys and dev policy, as ``relman dev up`` does for its own.

    .venv/bin/python deploy/dev_policy.py     # once, before `docker compose up`

Makes (once; kept on later runs) an SSH key per demo person under ``.relman/compose/dev-keys/``,
which stays on this machine and signs the CLI's decisions (``--key``, ``RELMAN_SSH_KEY``),
and writes the dev policy naming those keys to ``deploy/policy/dev-policy.yaml``, the
directory docker-compose.yml mounts read-only into the worker (``/etc/relman``). The worker
reads it as ``RELMAN_POLICY`` and, being a dev policy, runs under it only as a dev worker
(``RELMAN_DEV_WORKER=1``, the compose default). The private keys never enter the container.

It also makes the stack's payload key (``.relman/compose/codec.key``, as ``relman dev up``
does for its own) and puts a copy beside the policy, which the worker reads as
``RELMAN_CODEC_KEY_FILE``: Temporal's history then holds plans, snapshots and secrets
encrypted. The CLI on this machine uses the same key (``RELMAN_CODEC_KEY_FILE``, printed
below). The copy must be readable by the container's user; in production, prefer
``RELMAN_CODEC_KMS_KEYS`` (docs/operations.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from client.stack import ensure_codec_key, ensure_dev_identities
from common.stack_state import StackConfig

ROOT = Path(__file__).resolve().parent.parent
# Host-only: .relman/ is in .gitignore, and the image's build context leaves it out.
DEV_HOME = ROOT / ".relman" / "compose"
# The directory docker-compose.yml mounts at /etc/relman.
MOUNTED = ROOT / "deploy" / "policy"


CODEC_KEY = "codec.key"


def main(home: Path = DEV_HOME, mounted: Path = MOUNTED) -> Path:
    """Keys, payload key and policy as described above; the mounted policy's path."""
    config = StackConfig(home=home)
    config.home.mkdir(parents=True, exist_ok=True)
    written = ensure_dev_identities(config)
    target = mounted / written.name
    for source, copy in ((written, target), (ensure_codec_key(config), mounted / CODEC_KEY)):
        shutil.copyfile(source, copy)
        copy.chmod(0o644)  # the worker runs as uid 10001, not as this user
    return target


if __name__ == "__main__":
    policy = main()
    keys = DEV_HOME / "dev-keys"
    print(f"dev policy: {policy.relative_to(ROOT)} (the worker reads /etc/relman/{policy.name})")
    shown = keys.relative_to(ROOT)
    print(f"dev keys:   {shown}/<person>; sign with e.g. --key {shown}/bob")
    codec = (DEV_HOME / CODEC_KEY).relative_to(ROOT)
    print(f"payload key: export RELMAN_CODEC_KEY_FILE={codec}   # for the CLI on this machine")
