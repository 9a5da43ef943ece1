"""SSH keys for tests, made by ``ssh-keygen`` exactly as people make theirs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SshKey:
    """A key pair on disk: ``path`` is the private key, ``public`` the ``.pub`` line."""

    path: Path
    public: str

    @property
    def public_path(self) -> Path:
        return self.path.with_name(self.path.name + ".pub")


def make_key(directory: Path, name: str, kind: str = "ed25519") -> SshKey:
    """A new unencrypted key pair ``directory/name`` (and ``name.pub``)."""
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"{name}@test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return SshKey(path, path.with_name(name + ".pub").read_text().strip())
