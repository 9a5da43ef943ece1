"""`relman dev up / status / down`: real background processes on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from activities.aws import AwsClients
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
        "RELMAN_DEV_CONSOLE_PORT": str(free_port()),
        # Not the default 9464: another stack on this machine may serve its metrics there.
        "RELMAN_DEV_METRICS_PORT": str(free_port()),
        "RELMAN_TASK_QUEUE": "relman-stack-test",
    }
    try:
        up = relman("dev", "up", env=env)
        assert up.returncode == 0, up.stderr + up.stdout
        assert f"Temporal UI:  http://127.0.0.1:{env['RELMAN_DEV_UI_PORT']}" in up.stdout
        metrics = f"http://127.0.0.1:{env['RELMAN_DEV_METRICS_PORT']}/metrics"
        assert f"Metrics:      {metrics}\n" in up.stdout
        console = f"http://127.0.0.1:{env['RELMAN_DEV_CONSOLE_PORT']}"
        assert f"Console:      {console}" in up.stdout
        with urllib.request.urlopen(f"{console}/signin") as page:  # labelled dev sign-in
            assert "Development sign-in (embedded dev stack only)" in page.read().decode()

        status = json.loads(relman("dev", "status", "-o", "json", env=env).stdout)
        components = {c["name"]: c for c in status["components"]}
        assert all(c["running"] for c in components.values()), components
        # The stack's worker is not only running: it polls the task queue.
        polls = status["task_queue"]
        assert (polls["task_queue"], polls["polled"]) == ("relman-stack-test", True), polls
        assert (tmp_path / "home" / "temporal.db").exists()
        pids = [c["pid"] for c in components.values()]
        # The stack's worker serves its metrics on the configured port, says so once.
        assert components["worker"]["address"] == metrics
        with urllib.request.urlopen(metrics, timeout=10) as page:
            assert page.status == 200
        log = Path(components["worker"]["log"]).read_text()
        assert log.count(f"Temporal SDK metrics for Prometheus on {metrics}") == 1, log

        home = tmp_path / "home"
        policy = home / "dev-policy.yaml"
        assert policy.is_file() and (home / "dev-keys" / "bob").is_file()
        worker_env = Path(f"/proc/{components['worker']['pid']}/environ").read_bytes()
        assert f"RELMAN_POLICY={policy}".encode() in worker_env.split(b"\0")
        # The console reads targets' current values from the stack's AWS, as its worker.
        console_env = Path(f"/proc/{components['console']['pid']}/environ").read_bytes()
        endpoint = f"RELMAN_AWS_ENDPOINT_URL=http://127.0.0.1:{env['RELMAN_DEV_AWS_PORT']}"
        assert endpoint.encode() in console_env.split(b"\0")
        written = policy.read_text()

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
    assert down.stdout.strip() == "stopped: console, worker, aws, temporal"
    assert not any(alive(pid) for pid in pids)
    status = json.loads(relman("dev", "status", "-o", "json", env=env).stdout)
    assert not any(c["running"] for c in status["components"])
    assert status["task_queue"] is None  # no Temporal to ask
    # The dev keys and policy stay across down and up: the same people, the same digest.
    assert policy.read_text() == written


def test_dev_identities_are_written_once_and_kept(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from client.signer import sign_decision
    from client.stack import ensure_dev_identities
    from common.stack_state import StackConfig
    from models.dev_policy import DEV_PEOPLE
    from models.policy import load_policy
    from models.signing import DecisionPayload, verify_decision

    config = StackConfig(home=tmp_path / "home")
    path = ensure_dev_identities(config)
    policy = load_policy(path)
    assert policy.dev and [p.id for p in policy.people] == list(DEV_PEOPLE)
    keys = {p: config.dev_key_path(p).read_text() for p in DEV_PEOPLE}
    assert ensure_dev_identities(config) == path
    assert load_policy(path).digest == policy.digest
    assert {p: config.dev_key_path(p).read_text() for p in DEV_PEOPLE} == keys
    # A person's dev key signs decisions the dev policy accepts as theirs.
    now = datetime.now(UTC)
    payload = DecisionPayload(
        release_id="r", plan_digest="sha256:00", action="approve", wave="finance",
        actor="bob", issued_at=now,
    )  # fmt: skip
    signed = sign_decision(payload, config.dev_key_path("bob"))
    verify_decision(
        signed, policy, release_id="r", plan_digest="sha256:00", action="approve",
        wave="finance", now=now,
    )  # fmt: skip
    # A lost key is made again (and the policy follows it); the others stay.
    config.dev_key_path("carol").unlink()
    ensure_dev_identities(config)
    assert load_policy(path).digest != policy.digest
    assert config.dev_key_path("bob").read_text() == keys["bob"]


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


async def test_dev_status_says_when_no_worker_polls_the_stacks_task_queue(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str
) -> None:
    """What `relman dev status` shows beside the processes: a worker process may run and
    still not poll (it cannot reach Temporal, it is stuck), and a dead one polls no more."""
    from io import StringIO

    from rich.console import Console

    from client.commands.dev import DevStatusView
    from client.stack import queue_polls

    address = dev_env.client.service_client.config.target_host
    silent = await asyncio.to_thread(queue_polls, address, task_queue)
    assert silent.polled is False
    never = f"no worker has polled task queue '{task_queue}' in the last 5 min"
    assert silent.line() == never
    out = StringIO()
    DevStatusView([], "http://127.0.0.1:8233", silent).render(Console(file=out, width=160))
    assert never in out.getvalue()
    assert DevStatusView([], None, silent).to_json()["task_queue"] == {
        "task_queue": task_queue,
        "polled": False,
        "last_poll": None,
        "seconds_since_last_poll": None,
        "note": never,
    }
    async with make_worker(dev_env, aws):
        for _ in range(50):
            polling = await asyncio.to_thread(queue_polls, address, task_queue)
            if polling.polled:
                break
            await asyncio.sleep(0.2)
    assert polling.polled is True
    assert re.fullmatch(rf"a worker polled task queue '{task_queue}' \d+ s ago", polling.line())
