"""Workflow code stays deterministic: the banned-API rule of ``pyproject.toml`` holds for
every module in ``workflows/``, and it does catch each nondeterministic call.

The rule is ruff's ``TID251`` (``[tool.ruff.lint.flake8-tidy-imports.banned-api]``), scoped
to ``workflows/``; ``make lint`` runs it too. Running it here makes ``make test`` fail the
moment a ``datetime.now()``, ``random``, ``uuid4()``, a sleep, a thread or boto3 reaches
workflow code — which the sandbox alone would notice only when that line runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


def ruff_banned(source: str | None, filename: str) -> str:
    """ruff's TID251 findings for ``source`` as if it were ``filename`` (None: the file)."""
    assert RUFF, "ruff is a dev dependency (pip install -e '.[dev]')"
    args = [RUFF, "check", "--no-cache", "--select", "TID251", "--output-format", "concise"]
    args += ["--stdin-filename", filename, "-"] if source is not None else [filename]
    done = subprocess.run(args, cwd=ROOT, input=source, capture_output=True, text=True)
    return done.stdout + done.stderr if done.returncode else ""


def test_no_workflow_module_calls_a_nondeterministic_api() -> None:
    assert ruff_banned(None, "workflows") == ""


@pytest.mark.parametrize(
    ("source", "banned"),
    [
        ("from datetime import datetime\nx = datetime.now()\n", "datetime.datetime.now"),
        ("import datetime\nx = datetime.datetime.utcnow()\n", "datetime.datetime.utcnow"),
        ("import time\nx = time.time()\n", "time.time"),
        ("from time import sleep\nsleep(1)\n", "time.sleep"),
        ("import asyncio\nasync def f():\n    await asyncio.sleep(1)\n", "asyncio.sleep"),
        ("import random\nx = random.random()\n", "random"),
        ("from random import choice\n", "random"),
        ("from uuid import uuid4\nx = uuid4()\n", "uuid.uuid4"),
        ("import threading\n", "threading"),
        ("import boto3\n", "boto3"),
        ("from botocore.exceptions import ClientError\n", "botocore"),
        ("import os\nx = os.environ['X']\n", "os.environ"),
    ],
)
def test_the_rule_catches_each_nondeterministic_call_in_workflow_code(
    source: str, banned: str
) -> None:
    found = ruff_banned(source, "workflows/probe.py")
    assert f"`{banned}` is banned" in found
    # The same code is fine outside workflows/ (activities, the CLI).
    assert ruff_banned(source, "activities/probe.py") == ""
