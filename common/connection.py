"""Connect to Temporal the standard way: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, profiles.

Temporal's environment configuration (``temporalio.envconfig``) reads the same variables and
TOML profiles as the ``temporal`` CLI, including TLS and API keys for Temporal Cloud.
Without any configuration relman talks to the embedded stack (``relman dev up``) or, if
that is not recorded, to ``localhost:7233``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import Runtime

from common.codec import CodecError, CodecKeys, data_converter, keys_from_env
from common.errors import CliError
from common.stack_state import StackConfig, read_state, same_address

DEFAULT_ADDRESS = "localhost:7233"
TASK_QUEUE_ENV = "RELMAN_TASK_QUEUE"
DEFAULT_TASK_QUEUE = "relman"


def task_queue() -> str:
    """The task queue releases run on (``RELMAN_TASK_QUEUE``, default ``relman``)."""
    return os.environ.get(TASK_QUEUE_ENV) or DEFAULT_TASK_QUEUE


def connect_config() -> dict[str, Any]:
    """Keyword arguments for ``Client.connect`` from Temporal's standard configuration."""
    profile = ClientConfigProfile.load(profile=os.environ.get("TEMPORAL_PROFILE"))
    config: dict[str, Any] = dict(profile.to_client_connect_config())
    if "target_host" not in config:
        config["target_host"] = _embedded_stack_address() or DEFAULT_ADDRESS
    return config


def codec_keys(target_host: str) -> CodecKeys | None:
    """The payload keys configured (``common.codec``); without any, the embedded stack's
    key file when ``target_host`` is the stack's Temporal."""
    config = StackConfig.from_env()
    state = read_state(config)
    at_stack = state is not None and same_address(state.temporal_address, target_host)
    stack_key = config.codec_key_path if at_stack else None
    try:
        return keys_from_env(stack_key_file=stack_key)
    except CodecError as exc:
        raise CliError(f"payload encryption: {exc}") from None


def _embedded_stack_address() -> str | None:
    """The address ``relman dev up`` recorded, when no Temporal address is configured."""
    state = read_state(StackConfig.from_env())
    return state.temporal_address if state else None


async def connect(runtime: Runtime | None = None) -> Client:
    """A client using relman's pydantic data converter, encrypting payloads when keys are
    configured (``common.codec``), traced with OpenTelemetry.

    Tracing starts here: the span of starting a release is the root of the release's
    trace, which the workers continue. Exporters come from ``OTEL_*`` (none by default).
    ``runtime``: the worker's, which serves the SDK's metrics (default: the SDK's own).
    """
    from common import telemetry  # lazily: OpenTelemetry stays out of `relman --help`

    telemetry.configure_tracing()
    config = connect_config()
    return await Client.connect(
        data_converter=data_converter(codec_keys(config["target_host"])),
        interceptors=[telemetry.tracing_interceptor()],
        runtime=runtime,
        **config,
    )


@asynccontextmanager
async def temporal(runtime: Runtime | None = None) -> AsyncIterator[Client]:
    """A connected client (``runtime`` as for ``connect``), or a clear error naming the
    address that did not answer."""
    try:
        config = connect_config()
    except (OSError, ValueError, RuntimeError) as exc:  # e.g. a profile's TLS file is missing
        raise CliError(f"invalid Temporal client configuration: {exc}") from None
    try:
        client = await connect(runtime)
    except Exception as exc:  # the bridge raises RuntimeError with the transport error
        address = config.get("target_host")
        raise CliError(
            f"cannot connect to Temporal at {address}: {exc}. Start the embedded stack with "
            "`relman dev up`, or set TEMPORAL_ADDRESS / TEMPORAL_PROFILE."
        ) from None
    yield client
