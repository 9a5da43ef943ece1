"""`relman dev up / status / down`: real background processes on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from client.stack import SEARCH_ATTRIBUTE_TYPES

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def relman(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=180,
    )


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_dev_up_status_down_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {
        "RELMAN_HOME": str(tmp_path / "home"),
        "RELMAN_DEV_TEMPORAL_PORT": str(free_port()),
        "RELMAN_DEV_UI_PORT": str(free_port()),
        "RELMAN_DEV_AWS_PORT": str(free_port()),
        "RELMAN_TASK_QUEUE": "relman-stack-test",
    }
    try:
        up = relman("dev", "up", env=env)
        assert up.returncode == 0, up.stderr + up.stdout
        assert f"Temporal UI:  http://127.0.0.1:{env['RELMAN_DEV_UI_PORT']}" in up.stdout

        status = json.loads(relman("dev", "status", "-o", "json", env=env).stdout)
        components = {c["name"]: c for c in status["components"]}
        assert all(c["running"] for c in components.values()), components
        assert (tmp_path / "home" / "temporal.db").exists()
        pids = [c["pid"] for c in components.values()]

        again = relman("dev", "up", env=env)  # idempotent: nothing new is started
        assert again.returncode == 0
        assert "starting" not in again.stdout
        status = json.loads(relman("dev", "status", "-o", "json", env=env).stdout)
        assert [c["pid"] for c in status["components"]] == pids

        listed = subprocess.run(
            [str(Path(sys.executable).parent / "temporal"), "operator", "search-attribute",
             "list", "--address", f"127.0.0.1:{env['RELMAN_DEV_TEMPORAL_PORT']}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        for name in SEARCH_ATTRIBUTE_TYPES:
            assert name in listed.stdout
    finally:
        down = relman("dev", "down", env=env)
    assert down.returncode == 0
    assert down.stdout.strip() == "stopped: worker, aws, temporal"
    assert not any(alive(pid) for pid in pids)
    status = json.loads(relman("dev", "status", "-o", "json", env=env).stdout)
    assert not any(c["running"] for c in status["components"])


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            "RELMAN_HOME": str(tmp_path / "home"),
            "RELMAN_DEV_TEMPORAL_PORT": str(port),
            "RELMAN_DEV_UI_PORT": str(free_port()),
            "RELMAN_DEV_AWS_PORT": str(free_port()),
        }
        result = relman("dev", "up", env=env)
    assert result.returncode == 1
    assert (
        f"port {port} on 127.0.0.1 is already in use, so the Temporal dev server cannot "
        "start; stop what uses it or choose another port with RELMAN_DEV_TEMPORAL_PORT"
    ) in result.stderr
    assert relman("dev", "down", env=env).stdout.strip() == "nothing was running"
