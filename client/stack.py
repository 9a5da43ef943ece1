"""The embedded local stack: Temporal dev server, moto server (local AWS) and a worker.

Each runs as a background process on loopback; pids, ports and log paths are recorded in
``$RELMAN_HOME/stack.json`` (default ``./.relman``) so ``relman dev down`` stops exactly the
processes ``relman dev up`` started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from client.binaries import MissingBinary, find_binary
from common.connection import task_queue
from common.stack_state import (
    AWS_PORT_ENV,
    CONSOLE_PORT_ENV,
    DEFAULT_CONSOLE_PORT,
    LOOPBACK,
    METRICS_PORT_ENV,
    TEMPORAL_PORT_ENV,
    UI_PORT_ENV,
    Component,
    StackConfig,
    StackState,
    read_state,
    write_state,
)

# Every worker of the stack shares these (worker.dev_stack); the demo, the benchmarks and
# the tests import them from here.
from worker.dev_stack import DEV_WEBHOOK_NETWORKS as DEV_WEBHOOK_NETWORKS
from worker.dev_stack import LOCAL_AWS_ENV as LOCAL_AWS_ENV
from worker.dev_stack import METRICS_ADDRESS_ENV, stack_worker_env

if TYPE_CHECKING:
    from client.workers import TaskQueuePolls

READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 10.0
# Search attributes the dev server registers at start (a production cluster registers them
# with `temporal operator search-attribute create`, see the README).
SEARCH_ATTRIBUTE_TYPES = {
    "RelmanApplication": "Keyword",
    "RelmanVersion": "Keyword",
    "RelmanRequester": "Keyword",
    "RelmanPhase": "Keyword",
    "RelmanApprovers": "KeywordList",
    "RelmanDepartments": "KeywordList",
    "RelmanTargets": "KeywordList",
}


class StackError(Exception):
    """The stack could not be started or inspected; the message says what to do."""


# --- the dev policy and keys ------------------------------------------------------------------


def _dev_key(path: Path, person: str) -> str:
    """``person``'s dev key at ``path`` (made once, kept across up/down): its public line."""
    public = path.with_name(path.name + ".pub")
    if not (path.is_file() and public.is_file()):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        public.unlink(missing_ok=True)
        made = subprocess.run(
            [find_binary("ssh-keygen"), "-q", "-t", "ed25519", "-N", "",
             "-C", f"{person}@relman-dev", "-f", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )  # fmt: skip
        if made.returncode != 0:
            raise StackError(f"cannot make the dev SSH key {path}: {made.stderr.strip()}")
    return public.read_text().strip()


def ensure_dev_identities(config: StackConfig) -> Path:
    """Write (once) a dev SSH key for each demo person under ``dev-keys/`` and the dev
    policy naming them; return the policy's path. Existing keys are kept, so the policy
    only changes when a person is added."""
    import yaml

    from models.dev_policy import DEV_PEOPLE, dev_policy

    keys = {person: _dev_key(config.dev_key_path(person), person) for person in DEV_PEOPLE}
    policy = dev_policy(keys)
    text = yaml.safe_dump(policy.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
    path = config.dev_policy_path
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


# --- processes ----------------------------------------------------------------------------


def is_running(component: Component) -> bool:
    """True if the recorded pid is alive and still the binary we started (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{component.pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(component.pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid
    return component.binary.encode() in cmdline


def port_in_use(port: int) -> bool:
    """True if something already listens on the loopback port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


def _spawn(
    name: str, cmd: list[str], port: int, config: StackConfig, env: dict[str, str]
) -> Component:
    config.home.mkdir(parents=True, exist_ok=True)
    log_path = config.home / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # survives this CLI; `dev down` signals the group
        )
    _started[process.pid] = process
    return Component(name=name, pid=process.pid, port=port, log=str(log_path), binary=cmd[0])


# Processes this CLI started: right after fork, before exec, /proc shows this Python's
# command line, so liveness while starting comes from the process handle itself.
_started: dict[int, subprocess.Popen[bytes]] = {}


def _log_tail(component: Component, lines: int = 15) -> str:
    try:
        return "\n".join(Path(component.log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_until(component: Component, ready, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        process = _started.get(component.pid)
        alive = process.poll() is None if process is not None else is_running(component)
        if not alive:
            raise StackError(
                f"{component.name} exited while starting; last lines of {component.log}:\n"
                + _log_tail(component)
            )
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise StackError(
        f"{component.name} did not {what} within {READY_TIMEOUT_SECONDS:.0f}s; see {component.log}"
    )


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return 200 <= response.status < 300


def _temporal(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``temporal`` CLI against ``address``.

    The stack probes through the CLI rather than an in-process client: a Temporal client
    created in short-lived event loops can crash this process at interpreter exit.
    """
    return subprocess.run(
        [find_binary("temporal"), *args, "--address", address],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _temporal_ready(address: str) -> bool:
    done = _temporal(address, "operator", "namespace", "describe", "--namespace", "default")
    return done.returncode == 0


def register_search_attributes(address: str) -> list[str]:
    """Add relman's search attributes the server lacks; return the names added.

    ``start-dev --search-attribute`` registers them only in a new database: a
    ``temporal.db`` from an older relman would miss attributes added since.
    """
    listed = _temporal(address, "operator", "search-attribute", "list", "-o", "json")
    if listed.returncode != 0:
        raise StackError(f"cannot list search attributes: {listed.stderr.strip()}")
    existing = json.loads(listed.stdout).get("customAttributes") or {}
    added = []
    for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
        if name in existing:
            continue
        created = _temporal(
            address, "operator", "search-attribute", "create", "--name", name, "--type", kind
        )
        if created.returncode != 0:
            raise StackError(f"cannot register search attribute {name}: {created.stderr.strip()}")
        added.append(name)
    return added


def _worker_polling(address: str, queue: str) -> bool:
    described = _temporal(address, "task-queue", "describe", "--task-queue", queue, "-o", "json")
    return described.returncode == 0 and bool(json.loads(described.stdout).get("pollers"))


def queue_polls(address: str, queue: str) -> TaskQueuePolls:
    """When a worker last polled ``queue`` on the stack's Temporal for workflow tasks."""
    from client.workers import TaskQueuePolls

    now = datetime.now(UTC)
    try:
        described = _temporal(
            address, "task-queue", "describe", "--task-queue", queue, "-o", "json"
        )
    except (OSError, subprocess.SubprocessError, MissingBinary) as exc:
        return TaskQueuePolls(queue, now, unknown=str(exc))
    if described.returncode != 0:
        return TaskQueuePolls(queue, now, unknown=described.stderr.strip() or "no answer")
    polls = [
        datetime.fromisoformat(p["lastAccessTime"])
        for p in json.loads(described.stdout).get("pollers") or []
        if p.get("taskQueueType") == "workflow" and p.get("lastAccessTime")
    ]
    return TaskQueuePolls(queue, now, max(polls) if polls else None)


def _check_port(port: int, what: str, env_name: str) -> None:
    if port_in_use(port):
        raise StackError(
            f"port {port} on {LOOPBACK} is already in use, so the {what} cannot start; "
            f"stop what uses it or choose another port with {env_name}"
        )


def ensure_codec_key(config: StackConfig) -> Path:
    """The stack's payload key file, created (readable by its owner only) if missing."""
    from common.codec import new_key_line

    path = config.codec_key_path
    if not path.exists():
        config.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_key_line("dev-1"))
    return path


def up(config: StackConfig, progress=print) -> StackState:  # type: ignore[no-untyped-def]
    """Start whatever part of the stack is not running; return the running stack."""
    state = read_state(config) or config.fresh_state()
    running = {n: c for n, c in state.components.items() if is_running(c)}
    state.components = running
    temporal_port = int(state.temporal_address.rsplit(":", 1)[1])
    aws_port = int(state.aws_endpoint.rsplit(":", 1)[1])
    ui_port = int(state.ui_url.rsplit(":", 1)[1])

    if "temporal" not in running:
        binary = find_binary("temporal")
        _check_port(temporal_port, "Temporal dev server", TEMPORAL_PORT_ENV)
        _check_port(ui_port, "Temporal Web UI", UI_PORT_ENV)
        cmd = [
            binary,
            "server",
            "start-dev",
            "--ip",
            LOOPBACK,
            "--port",
            str(temporal_port),
            "--ui-port",
            str(ui_port),
            "--db-filename",
            str(config.home / "temporal.db"),
            "--log-level",
            "warn",
        ]
        for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        progress(f"starting Temporal dev server on {state.temporal_address}")
        component = _spawn("temporal", cmd, temporal_port, config, dict(os.environ))
        state.components["temporal"] = component
        write_state(config, state)
        _wait_until(component, lambda: _temporal_ready(state.temporal_address), "answer")
    added = register_search_attributes(state.temporal_address)
    if added:
        progress(f"registered search attributes {', '.join(added)}")

    if "aws" not in running:
        binary = find_binary("moto_server")
        _check_port(aws_port, "local AWS endpoint (moto)", AWS_PORT_ENV)
        cmd = [binary, "-H", LOOPBACK, "-p", str(aws_port)]
        progress(f"starting local AWS endpoint (moto) on {state.aws_endpoint}")
        component = _spawn("aws", cmd, aws_port, config, dict(os.environ))
        state.components["aws"] = component
        write_state(config, state)
        _wait_until(
            component, lambda: _http_ok(f"{state.aws_endpoint}/moto-api/data.json"), "answer"
        )

    policy = ensure_dev_identities(config)
    codec_key = ensure_codec_key(config)
    if "worker" not in running:
        if state.metrics_address is None:  # recorded by a relman without the setting
            state.metrics_address = f"{LOOPBACK}:{config.metrics_port}"
        metrics_port = int(state.metrics_address.rsplit(":", 1)[1])
        _check_port(metrics_port, "worker's metrics endpoint", METRICS_PORT_ENV)
        # Every worker of the stack runs with this environment (worker.dev_stack).
        env = stack_worker_env(
            os.environ,
            temporal_address=state.temporal_address,
            aws_endpoint=state.aws_endpoint,
            policy=policy,
            codec_key=codec_key,
        )
        env["PYTHONUNBUFFERED"] = "1"
        # Only the stack's own worker serves metrics there (not every worker of the stack).
        env[METRICS_ADDRESS_ENV] = state.metrics_address
        cmd = [sys.executable, "-m", "worker"]
        progress(f"starting relman worker on task queue {task_queue()!r}")
        component = _spawn("worker", cmd, 0, config, env)
        state.components["worker"] = component
        write_state(config, state)
        _wait_until(
            component,
            lambda: _worker_polling(state.temporal_address, task_queue()),
            "start polling",
        )
    if "console" not in running:
        _start_console(config, state, policy, codec_key, progress)
    return state


def console_port() -> int:
    """The dev console's port (``RELMAN_DEV_CONSOLE_PORT``)."""
    return int(os.environ.get(CONSOLE_PORT_ENV, DEFAULT_CONSOLE_PORT))


def _start_console(  # type: ignore[no-untyped-def]
    config: StackConfig, state: StackState, policy: Path, codec_key: Path, progress
) -> None:
    """The web console on loopback, under the dev policy, with its development sign-in,
    reading the current values of targets from the stack's AWS endpoint as its worker does."""
    port = console_port()
    _check_port(port, "web console", CONSOLE_PORT_ENV)
    env = stack_worker_env(
        os.environ,
        temporal_address=state.temporal_address,
        aws_endpoint=state.aws_endpoint,
        policy=policy,
        codec_key=codec_key,
    )
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "client.cli", "console", "--bind", LOOPBACK,
           "--port", str(port), "--policy", str(policy), "--dev-signin"]  # fmt: skip
    progress(f"starting web console on http://{LOOPBACK}:{port} (development sign-in)")
    component = _spawn("console", cmd, port, config, env)
    state.components["console"] = component
    write_state(config, state)
    _wait_until(component, lambda: _http_ok(f"http://{LOOPBACK}:{port}/signin"), "answer")


def down(config: StackConfig) -> list[str]:
    """Stop the processes ``up`` recorded (worker first); return the names stopped."""
    state = read_state(config)
    if state is None:
        return []
    stopped = []
    for name in ("console", "worker", "aws", "temporal"):
        component = state.components.get(name)
        if component is None or not is_running(component):
            continue
        _signal(component, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while is_running(component) and time.monotonic() < deadline:
            _reap(component)
            time.sleep(0.1)
        if is_running(component):
            _signal(component, signal.SIGKILL)
            _reap(component)
        stopped.append(name)
    config.state_path.unlink(missing_ok=True)
    return stopped


def _signal(component: Component, sig: int) -> None:
    try:
        os.killpg(component.pid, sig)  # its own session/group: children go too
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(component.pid, sig)


def _reap(component: Component) -> None:
    """Collect the exit status if the process is our child (a zombie counts as running)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(component.pid, os.WNOHANG)


@dataclass
class ComponentStatus:
    """``dev status`` of one component."""

    name: str
    running: bool
    pid: int | None
    address: str | None
    log: str | None


def status(config: StackConfig) -> tuple[StackState | None, list[ComponentStatus]]:
    """Each component: recorded, alive, where it listens."""
    state = read_state(config)
    out = []
    for name in ("temporal", "aws", "worker", "console"):
        component = state.components.get(name) if state else None
        address = None
        if state is not None:
            address = {
                "temporal": state.temporal_address,
                "aws": state.aws_endpoint,
                "worker": f"http://{state.metrics_address}/metrics"
                if state.metrics_address
                else None,
                "console": f"http://{LOOPBACK}:{component.port}" if component else None,
            }[name]
        out.append(
            ComponentStatus(
                name=name,
                running=bool(component and is_running(component)),
                pid=component.pid if component else None,
                address=address,
                log=component.log if component else None,
            )
        )
    return state, out
