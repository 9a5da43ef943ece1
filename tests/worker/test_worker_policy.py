"""A worker runs only under an organisation policy: without one it refuses to start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NO_POLICY = (
    "no organisation policy: set RELMAN_POLICY (a file, s3://bucket/key or ssm:/name), "
    "or RELMAN_DEV_WORKER=1 for a development worker"
)


def start(*cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("RELMAN_POLICY", "RELMAN_DEV_WORKER")}
    return subprocess.run(
        [sys.executable, *cmd],
        capture_output=True,
        text=True,
        cwd=ROOT,
        # Nothing listens there: every refusal comes before the worker connects.
        env={**clean, "TEMPORAL_ADDRESS": "127.0.0.1:1", **env},
        timeout=60,
    )


@pytest.mark.parametrize("cmd", [["-m", "worker"], ["-m", "client.cli", "worker"]])
def test_a_worker_without_a_policy_refuses_to_start(cmd: list[str], tmp_path: Path) -> None:
    done = start(*cmd, env={"RELMAN_HOME": str(tmp_path)})
    assert done.returncode == 2
    assert NO_POLICY in done.stderr


def test_a_dev_worker_needs_the_dev_stacks_policy(tmp_path: Path) -> None:
    done = start("-m", "worker", env={"RELMAN_HOME": str(tmp_path), "RELMAN_DEV_WORKER": "1"})
    assert done.returncode == 2
    assert (
        f"RELMAN_DEV_WORKER=1 but there is no dev policy at {tmp_path / 'dev-policy.yaml'}: "
        "run `relman dev up` (it writes one), or set RELMAN_POLICY"
    ) in done.stderr


def test_a_dev_policy_runs_only_on_a_dev_worker(tmp_path: Path) -> None:
    from client.stack import ensure_dev_identities
    from common.stack_state import StackConfig

    policy = ensure_dev_identities(StackConfig(home=tmp_path))
    done = start("-m", "worker", env={"RELMAN_POLICY": str(policy)})
    assert done.returncode == 2
    assert (
        "is a dev policy (written by `relman dev up`): a worker runs under it only with "
        "RELMAN_DEV_WORKER=1" in done.stderr
    )
    # As a dev worker it gets past the policy, to connecting to Temporal (which is not there).
    dev = start("-m", "worker", env={"RELMAN_HOME": str(tmp_path), "RELMAN_DEV_WORKER": "1"})
    assert "organisation policy dev (sha256:" in dev.stderr and f"from {policy}" in dev.stderr
    assert "cannot connect to Temporal at 127.0.0.1:1" in dev.stderr


def test_an_invalid_policy_stops_the_worker_naming_the_field(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: '1'\npeople: []\n")
    done = start("-m", "worker", env={"RELMAN_POLICY": str(policy)})
    assert done.returncode == 2
    assert f"organisation policy: {policy}: people" in done.stderr
