"""Where ``relman dev up`` records the embedded stack it started, and reading that record.

The CLI's connection falls back to the recorded Temporal address; ``client.stack`` starts
and stops the processes.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

HOME_ENV = "RELMAN_HOME"
TEMPORAL_PORT_ENV = "RELMAN_DEV_TEMPORAL_PORT"
UI_PORT_ENV = "RELMAN_DEV_UI_PORT"
AWS_PORT_ENV = "RELMAN_DEV_AWS_PORT"
DEFAULT_TEMPORAL_PORT = 7233
DEFAULT_UI_PORT = 8233
DEFAULT_AWS_PORT = 4566
# The web console `relman dev up` serves (relman console), with its development sign-in.
CONSOLE_PORT_ENV = "RELMAN_DEV_CONSOLE_PORT"
DEFAULT_CONSOLE_PORT = 8400
# Where the stack's worker serves its Temporal SDK metrics for Prometheus: a second stack
# on the same machine needs another port to have metrics too.
METRICS_PORT_ENV = "RELMAN_DEV_METRICS_PORT"
DEFAULT_METRICS_PORT = 9464
LOOPBACK = "127.0.0.1"
STATE_FILE = "stack.json"
# What `relman dev up` writes for the local stack's signed decisions: one SSH key per demo
# person under DEV_KEYS_DIR, and the dev policy naming them.
DEV_KEYS_DIR = "dev-keys"
DEV_POLICY_FILE = "dev-policy.yaml"
# Set for a worker that may run under the dev stack's dev policy (never in production).
DEV_WORKER_ENV = "RELMAN_DEV_WORKER"


@dataclass
class Component:
    """One background process of the stack."""

    name: str
    pid: int
    port: int
    log: str
    binary: str


@dataclass
class StackState:
    """What ``dev up`` started, as recorded on disk."""

    temporal_address: str
    ui_url: str
    aws_endpoint: str
    components: dict[str, Component] = field(default_factory=dict)
    # host:port of the worker's Prometheus endpoint (None: recorded by an older relman).
    metrics_address: str | None = None


@dataclass
class StackConfig:
    """Where the stack keeps its files and which loopback ports it uses."""

    home: Path
    temporal_port: int = DEFAULT_TEMPORAL_PORT
    ui_port: int = DEFAULT_UI_PORT
    aws_port: int = DEFAULT_AWS_PORT
    metrics_port: int = DEFAULT_METRICS_PORT

    @classmethod
    def from_env(cls) -> StackConfig:
        """Configuration from RELMAN_HOME and RELMAN_DEV_*_PORT."""
        return cls(
            home=Path(os.environ.get(HOME_ENV) or ".relman").resolve(),
            temporal_port=int(os.environ.get(TEMPORAL_PORT_ENV, DEFAULT_TEMPORAL_PORT)),
            ui_port=int(os.environ.get(UI_PORT_ENV, DEFAULT_UI_PORT)),
            aws_port=int(os.environ.get(AWS_PORT_ENV, DEFAULT_AWS_PORT)),
            metrics_port=int(os.environ.get(METRICS_PORT_ENV, DEFAULT_METRICS_PORT)),
        )

    @property
    def state_path(self) -> Path:
        return self.home / STATE_FILE

    @property
    def dev_policy_path(self) -> Path:
        """The dev policy ``relman dev up`` writes and its worker runs under."""
        return self.home / DEV_POLICY_FILE

    @property
    def codec_key_path(self) -> Path:
        """The key file that encrypts the stack's payloads (``common.codec``)."""
        return self.home / CODEC_KEY_FILE

    def dev_key_path(self, person: str) -> Path:
        """The private dev SSH key of ``person`` (its public half beside it, ``.pub``)."""
        return self.home / DEV_KEYS_DIR / person

    def fresh_state(self) -> StackState:
        return StackState(
            temporal_address=f"{LOOPBACK}:{self.temporal_port}",
            ui_url=f"http://{LOOPBACK}:{self.ui_port}",
            aws_endpoint=f"http://{LOOPBACK}:{self.aws_port}",
            metrics_address=f"{LOOPBACK}:{self.metrics_port}",
        )


CODEC_KEY_FILE = "codec.key"


def _host_port(address: str) -> tuple[str, str]:
    host, _, port = address.strip().rpartition(":")
    return host.strip("[]").lower(), port


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def same_address(address: str, other: str) -> bool:
    """Whether two ``host:port`` addresses name the same server: the same port, and the same
    host or both loopback (``localhost:7233`` is the stack's ``127.0.0.1:7233``)."""
    host, port = _host_port(address)
    other_host, other_port = _host_port(other)
    if not port or port != other_port:
        return False
    return host == other_host or (_loopback(host) and _loopback(other_host))


def read_state(config: StackConfig) -> StackState | None:
    """The recorded stack, or None if ``dev up`` has not run (or ``dev down`` cleared it)."""
    try:
        raw = json.loads(config.state_path.read_text())
    except (OSError, ValueError):
        return None
    components = {k: Component(**v) for k, v in raw.pop("components", {}).items()}
    return StackState(**raw, components=components)


def write_state(config: StackConfig, state: StackState) -> None:
    """Record ``state``, replacing the file at once so a reader never sees half of it."""
    config.home.mkdir(parents=True, exist_ok=True)
    tmp = config.state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(config.state_path)
