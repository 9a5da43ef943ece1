"""boto3 sessions and clients, built once per (region, account) and shared by activities.

Endpoint and credentials come from boto3's standard chain (``AWS_PROFILE``,
``AWS_ENDPOINT_URL``, instance roles, ...). ``RELMAN_AWS_ENDPOINT_URL`` overrides the
endpoint for every service, which is how the embedded stack points relman at moto.
"""

from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

ENDPOINT_ENV = "RELMAN_AWS_ENDPOINT_URL"
MAX_ATTEMPTS_ENV = "RELMAN_AWS_MAX_ATTEMPTS"
DEFAULT_REGION = "us-east-1"
# botocore's own retries absorb brief throttling inside one activity attempt; Temporal's
# retry policy handles longer outages, so keep this small.
DEFAULT_MAX_ATTEMPTS = 3
ASSUMED_ROLE_SESSION_NAME = "relman"
# As many as the worker runs activity threads (worker.main.ACTIVITY_THREADS).
MAX_POOL_CONNECTIONS = 32


@dataclass
class AwsClients:
    """A cache of boto3 clients keyed by service, region and assumed role."""

    endpoint_url: str | None = None
    default_region: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    # What the calls are for, in their User-Agent (``relman/preflight``): CloudTrail's
    # userAgent then tells relman's read-only checks from its changes.
    purpose: str | None = None
    _clients: dict[tuple[str, str, str | None, str | None], Any] = field(default_factory=dict)
    _sessions: dict[tuple[str | None, str | None], boto3.Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_env(cls) -> AwsClients:
        """Clients configured from the environment (see module docstring)."""
        return cls(
            endpoint_url=os.environ.get(ENDPOINT_ENV) or None,
            default_region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            max_attempts=int(os.environ.get(MAX_ATTEMPTS_ENV, DEFAULT_MAX_ATTEMPTS)),
        )

    def for_purpose(self, purpose: str) -> AwsClients:
        """The same configuration, with clients of its own labelled ``relman/<purpose>``."""
        labelled = copy.copy(self)
        labelled.purpose = purpose
        labelled._clients, labelled._sessions = {}, {}
        labelled._lock = threading.Lock()
        return labelled

    def region(self, region: str | None) -> str:
        """The region to use for a target that names ``region`` (or none)."""
        return region or self.default_region or DEFAULT_REGION

    def _config(self) -> Config:
        return Config(
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            # One connection per activity thread: botocore's default pool of 10 would make
            # the rest of a wave's parallel calls open and drop connections.
            max_pool_connections=MAX_POOL_CONNECTIONS,
            user_agent_extra=f"relman/{self.purpose}" if self.purpose else None,
        )

    def _session(self, role_arn: str | None, external_id: str | None) -> boto3.Session:
        key = (role_arn, external_id)
        if key not in self._sessions:
            self._sessions[key] = (
                boto3.Session() if role_arn is None else self._assumed(role_arn, external_id)
            )
        return self._sessions[key]

    def _assumed(self, role_arn: str, external_id: str | None) -> boto3.Session:
        """A session in ``role_arn``'s account whose credentials renew themselves.

        Assumed-role credentials expire (an hour by default) while a release runs for days:
        botocore's refreshable credentials assume the role again shortly before expiry.
        """
        base = boto3.Session()
        endpoint_url, config = self.endpoint_url, self._config()

        def sts_client(service_name: str, **kwargs: Any) -> Any:
            kwargs.setdefault("endpoint_url", endpoint_url)
            kwargs.setdefault("config", config)
            return base.client(service_name, **kwargs)

        extra: dict[str, Any] = {"RoleSessionName": ASSUMED_ROLE_SESSION_NAME}
        if external_id:
            extra["ExternalId"] = external_id
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=sts_client,
            source_credentials=base.get_credentials(),
            role_arn=role_arn,
            extra_args=extra,
        )
        botocore_session = botocore.session.get_session()
        botocore_session._credentials = DeferredRefreshableCredentials(  # noqa: SLF001
            method="assume-role", refresh_using=fetcher.fetch_credentials
        )
        return boto3.Session(botocore_session=botocore_session)

    def client(
        self,
        service: str,
        region: str | None = None,
        role_arn: str | None = None,
        external_id: str | None = None,
    ) -> Any:
        """A shared client for ``service`` in ``region``, in the account of ``role_arn``
        assumed with ``external_id``: each combination has clients of its own, so a plan
        never uses a role as another plan's external id assumed it."""
        key = (service, self.region(region), role_arn, external_id)
        with self._lock:  # boto3 sessions are not thread-safe; clients are.
            if key not in self._clients:
                session = self._session(role_arn, external_id)
                self._clients[key] = session.client(
                    service,
                    region_name=self.region(region),
                    endpoint_url=self.endpoint_url,
                    config=self._config(),
                )
            return self._clients[key]
