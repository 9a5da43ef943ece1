"""Connect to Temporal the standard way: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, profiles.

Temporal's environment configuration (``temporalio.envconfig``) reads the same variables and
TOML profiles as the ``temporal`` CLI, including TLS and API keys for Temporal Cloud.
Without any configuration relman talks to a local server on ``localhost:7233``.
"""

from __future__ import annotations

import os
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile

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
    config.setdefault("target_host", DEFAULT_ADDRESS)
    return config


async def connect() -> Client:
    """A client using relman's pydantic data converter."""
    config = connect_config()
    return await Client.connect(data_converter=pydantic_data_converter, **config)
