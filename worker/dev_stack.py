"""Workers of the local stack (``relman dev up``): one AWS configuration, never ambient AWS.

``relman dev up`` records its Temporal and its local AWS endpoint (moto) in
``$RELMAN_HOME/stack.json``. Every worker whose Temporal is that stack's runs with the
environment :func:`stack_worker_env` gives, the stack's own worker included: AWS calls go to
the stack's endpoint with local-only credentials and region, under the stack's dev policy
and payload key. A dev plan names resources that may also exist in a real account, so a
worker beside the stack must never fall back to the machine's AWS credentials: settings
that would send its AWS calls elsewhere (an endpoint, a profile, credentials, a role) or
run it under another policy or key make it refuse to start, naming each of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from activities.webhook_addresses import ALLOW_NETWORKS_ENV
from common.codec import KEY_FILE_ENV
from common.errors import BadInput
from common.stack_state import DEV_WORKER_ENV, StackConfig, StackState, same_address

# activities.aws.ENDPOINT_ENV and activities.policy.POLICY_ENV, spelled out: importing those
# modules (boto3) would slow every `relman dev` command down (tests/worker/test_dev_stack.py
# checks the names agree).
ENDPOINT_ENV = "RELMAN_AWS_ENDPOINT_URL"
POLICY_ENV = "RELMAN_POLICY"
# worker.telemetry.METRICS_ADDRESS_ENV, likewise: where the stack's own worker serves its
# Prometheus metrics (RELMAN_DEV_METRICS_PORT chooses the port).
METRICS_ADDRESS_ENV = "RELMAN_METRICS_ADDRESS"
# Credentials for the local endpoint only (moto accepts any): what the stack's workers use.
LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "relman-local",
    "AWS_SECRET_ACCESS_KEY": "relman-local",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# The stack's workers' webhooks may reach this machine (besides whatever the shell's
# RELMAN_WEBHOOK_ALLOW_NETWORKS lists): local plans and demos post to receivers here.
DEV_WEBHOOK_NETWORKS = "127.0.0.0/8,::1/128"
# Where AWS calls go and as whom (boto3's credential chain and endpoints): set to anything
# but the stack's own value, a worker of the stack refuses to start.
AWS_DESTINATION = (
    ENDPOINT_ENV,
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)
# botocore's per-service endpoints: AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL_LAMBDA, ...
AWS_SERVICE_ENDPOINT_PREFIX = "AWS_ENDPOINT_URL_"
# What the stack's workers share besides AWS: one policy, one payload key, dev mode.
STACK_SETTINGS = (POLICY_ENV, KEY_FILE_ENV, DEV_WORKER_ENV)
# Their values are never printed, not even in a refusal.
SECRETS = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    }
)


def stack_worker_env(
    environ: Mapping[str, str],
    *,
    temporal_address: str,
    aws_endpoint: str,
    policy: Path,
    codec_key: Path,
) -> dict[str, str]:
    """The environment of a worker of the stack: ``environ`` without its AWS and Temporal
    settings, plus the stack's Temporal, AWS endpoint, local credentials, dev policy,
    payload key and webhook networks."""
    env = {k: v for k, v in environ.items() if not k.startswith(("AWS_", "TEMPORAL_"))}
    env.update(LOCAL_AWS_ENV)
    env.update(
        TEMPORAL_ADDRESS=temporal_address,
        TEMPORAL_NAMESPACE="default",
        # The stack's workers run under the dev policy, whatever the shell says.
        RELMAN_POLICY=str(policy),
        # Their payloads are encrypted with the stack's key, as the CLI's are.
        RELMAN_CODEC_KEY_FILE=str(codec_key),
    )
    env[ENDPOINT_ENV] = aws_endpoint
    env[DEV_WORKER_ENV] = "1"
    networks = [DEV_WEBHOOK_NETWORKS, environ.get(ALLOW_NETWORKS_ENV, "")]
    entries = [n.strip() for part in networks for n in part.split(",") if n.strip()]
    env[ALLOW_NETWORKS_ENV] = ",".join(dict.fromkeys(entries))
    return env


@dataclass
class StackWorker:
    """How a worker whose Temporal is the dev stack's changes its environment."""

    state_path: Path
    temporal_address: str
    aws_endpoint: str
    # Variable -> the stack's value, or None to remove it (an AWS_* setting of the shell).
    changes: dict[str, str | None] = field(default_factory=dict)
    # The environment's own AWS settings this worker leaves aside (removed or replaced).
    ignored: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the worker's log: where its AWS calls go."""
        ignored = self.ignored
        return (
            f"Temporal {self.temporal_address} is the dev stack's ({self.state_path}): AWS "
            f"calls go to its local endpoint {self.aws_endpoint} with local-only credentials "
            f"(region {LOCAL_AWS_ENV['AWS_DEFAULT_REGION']}), under its dev policy and payload "
            "key, as its own worker's do"
            + (f"; ignoring {', '.join(ignored)} from the environment" if ignored else "")
        )

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The process environment with the changes made, as it was again afterwards (a
        worker run inside a test must not leave the stack's settings behind)."""
        before = {k: os.environ.get(k) for k in self.changes}
        try:
            for name, value in self.changes.items():
                _set(name, value)
            yield
        finally:
            for name, value in before.items():
                _set(name, value)


def _set(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _conflict(name: str, value: str, theirs: str | None) -> str:
    """``AWS_PROFILE=prod (the stack's worker: unset)``; secrets by name only."""
    if name in SECRETS:
        ours, theirs = f"{name} set, value not shown", "its local-only credentials"
    else:
        ours, theirs = f"{name}={value}", theirs if theirs is not None else "unset"
    return f"{ours} (the stack's worker: {theirs})"


def _chooses_aws(name: str) -> bool:
    return name in AWS_DESTINATION or name.startswith(AWS_SERVICE_ENDPOINT_PREFIX)


def _same(name: str, value: str, wanted: str | None) -> bool:
    """Whether the environment's ``value`` of ``name`` is the stack's own, however spelled
    (a relative path to the same file, ``localhost`` for ``127.0.0.1``)."""
    if wanted is None:
        return False
    if value == wanted:
        return True
    if name in (POLICY_ENV, KEY_FILE_ENV):
        return Path(value).expanduser().resolve() == Path(wanted).resolve()
    if name == ENDPOINT_ENV or name.startswith("AWS_ENDPOINT_URL"):
        ours, theirs = urlsplit(value), urlsplit(wanted)
        return (ours.scheme, ours.path.rstrip("/")) == (theirs.scheme, "") and same_address(
            ours.netloc, theirs.netloc
        )
    return False


def stack_worker(
    environ: Mapping[str, str], target_host: str, config: StackConfig, state: StackState | None
) -> StackWorker | None:
    """What a worker connecting to ``target_host`` must change in ``environ`` to run as the
    dev stack's workers do, or None when ``target_host`` is not the recorded stack's
    Temporal. Raises :class:`BadInput` naming every setting that would send its AWS calls
    elsewhere, or run it under another policy or key, than the stack's own worker."""
    if state is None or not same_address(state.temporal_address, target_host):
        return None
    wanted = stack_worker_env(
        environ,
        temporal_address=state.temporal_address,
        aws_endpoint=state.aws_endpoint,
        policy=config.dev_policy_path,
        codec_key=config.codec_key_path,
    )
    conflicts = [
        _conflict(name, value.strip(), wanted.get(name))
        for name, value in sorted(environ.items())
        if value.strip()
        and (_chooses_aws(name) or name in STACK_SETTINGS)
        and not _same(name, value.strip(), wanted.get(name))
    ]
    if conflicts:
        raise BadInput(
            f"this worker's Temporal ({target_host}) is the dev stack's, recorded in "
            f"{config.state_path}: it must use the stack's AWS, the local endpoint "
            f"{state.aws_endpoint} with local-only credentials, as the stack's own worker "
            f"does, and never other AWS. It will not start with "
            + "; ".join(conflicts)
            + ". Unset them to run beside the dev stack, or point TEMPORAL_ADDRESS at "
            "another Temporal to use other AWS settings"
        )
    changes: dict[str, str | None] = {
        name: wanted.get(name)
        for name in sorted({*environ, *wanted})
        # The worker's Temporal settings already lead to the stack: they stay as they are.
        if not name.startswith("TEMPORAL_") and environ.get(name) != wanted.get(name)
    }
    ignored = [name for name in changes if name in environ and name.startswith("AWS_")]
    return StackWorker(
        config.state_path, state.temporal_address, state.aws_endpoint, changes, ignored
    )
