"""boto3 sessions and clients, built once per (region, account) and shared by activities.

Endpoint and credentials come from boto3's standard chain (``AWS_PROFILE``,
``AWS_ENDPOINT_URL``, instance roles, ...). ``RELMAN_AWS_ENDPOINT_URL`` overrides the
endpoint for every service, which is how the embedded stack points relman at moto.

A role is assumed in the name of the release an activity works for (:func:`acting_for`):
``RoleSessionName`` and ``SourceIdentity`` are ``relman-<release id>``, so CloudTrail ties
every call to its release, and the role must be one the organisation policy allows for the
release's application (:attr:`AwsClients.role_check`), checked again before it is assumed.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
from botocore.exceptions import NoCredentialsError
from temporalio.exceptions import ApplicationError

from models.iam import SESSION_PREFIX

ENDPOINT_ENV = "RELMAN_AWS_ENDPOINT_URL"
MAX_ATTEMPTS_ENV = "RELMAN_AWS_MAX_ATTEMPTS"
DEFAULT_REGION = "us-east-1"
# botocore's own retries absorb brief throttling inside one activity attempt; Temporal's
# retry policy handles longer outages, so keep this small.
DEFAULT_MAX_ATTEMPTS = 3
# The session name of a role assumed for no release in particular (``relman plan ...``).
ASSUMED_ROLE_SESSION_NAME = "relman"
# AWS's rules for RoleSessionName and SourceIdentity: 2 to 64 of these characters.
SESSION_NAME_LIMIT = 64
_SESSION_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]")
# As many as the worker runs activity threads (worker.main.ACTIVITY_THREADS).
MAX_POOL_CONNECTIONS = 32
# Clients per release and role: the least recently used are dropped beyond this many, so
# a worker that runs releases for months keeps a bounded cache.
MAX_CLIENTS = 256


class RoleNotAllowed(Exception):
    """A role the organisation policy does not let the release's application assume."""


@dataclass(frozen=True)
class ActingFor:
    """The release AWS calls are made for (and its application, when known)."""

    release_id: str
    application: str | None = None


_ACTING_FOR: ContextVar[ActingFor | None] = ContextVar("relman_acting_for", default=None)


@contextmanager
def acting_for(release_id: str | None, application: str | None = None) -> Iterator[None]:
    """Make the AWS calls inside (and in threads started with a copy of this context) in the
    name of release ``release_id`` of ``application``."""
    token = _ACTING_FOR.set(ActingFor(release_id, application) if release_id else None)
    try:
        yield
    finally:
        _ACTING_FOR.reset(token)


def session_name(release_id: str | None) -> str:
    """``relman-<release id>`` within AWS's rules for session names and source identities:
    other characters become ``-``; a name too long keeps its start and a digest of the id,
    so two long ids never share a name."""
    if not release_id:
        return ASSUMED_ROLE_SESSION_NAME
    name = f"{SESSION_PREFIX}{_SESSION_NAME_UNSAFE.sub('-', release_id)}"
    if len(name) <= SESSION_NAME_LIMIT:
        return name
    digest = hashlib.sha256(release_id.encode()).hexdigest()[:10]
    return f"{name[: SESSION_NAME_LIMIT - len(digest) - 1]}-{digest}"


@dataclass
class AwsClients:
    """A cache of boto3 clients keyed by service, region and assumed role."""

    endpoint_url: str | None = None
    default_region: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    # What the calls are for, in their User-Agent (``relman/preflight``): CloudTrail's
    # userAgent then tells relman's read-only checks from its changes.
    purpose: str | None = None
    # Why relman may not assume ``role_arn`` for ``application`` (None: it may). The worker
    # sets it from the organisation policy; without it every role the plan names is used.
    role_check: Callable[[str, str], str | None] | None = None
    max_clients: int = MAX_CLIENTS
    _clients: OrderedDict[tuple[Any, ...], Any] = field(default_factory=OrderedDict)
    _sessions: OrderedDict[tuple[Any, ...], boto3.Session] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_env(cls) -> AwsClients:
        """Clients configured from the environment (see module docstring)."""
        return cls(
            endpoint_url=os.environ.get(ENDPOINT_ENV) or None,
            default_region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            max_attempts=int(os.environ.get(MAX_ATTEMPTS_ENV, DEFAULT_MAX_ATTEMPTS)),
        )

    def _copy(self, **changes: Any) -> AwsClients:
        copied = copy.copy(self)
        for name, value in changes.items():
            setattr(copied, name, value)
        copied._clients, copied._sessions = OrderedDict(), OrderedDict()
        copied._lock = threading.Lock()
        return copied

    def for_purpose(self, purpose: str) -> AwsClients:
        """The same configuration, with clients of its own labelled ``relman/<purpose>``."""
        return self._copy(purpose=purpose)

    def checked_by(self, role_check: Callable[[str, str], str | None]) -> AwsClients:
        """The same configuration, with clients of its own, refusing the roles for which
        ``role_check(application, role_arn)`` gives a reason."""
        return self._copy(role_check=role_check)

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

    def _session(self, role_arn: str | None, external_id: str | None, name: str) -> boto3.Session:
        key = (role_arn, external_id, name)
        if key in self._sessions:
            self._sessions.move_to_end(key)
        else:
            self._sessions[key] = (
                boto3.Session() if role_arn is None else self._assumed(role_arn, external_id, name)
            )
            while len(self._sessions) > self.max_clients:
                self._sessions.popitem(last=False)
        return self._sessions[key]

    def _assumed(self, role_arn: str, external_id: str | None, name: str) -> boto3.Session:
        """A session in ``role_arn``'s account whose credentials renew themselves.

        Assumed-role credentials expire (an hour by default) while a release runs for days:
        botocore's refreshable credentials assume the role again shortly before expiry.
        """
        base = boto3.Session()
        source = base.get_credentials()
        if source is None:  # botocore would fail later, obscurely, when it refreshes
            raise NoCredentialsError()
        endpoint_url, config = self.endpoint_url, self._config()

        def sts_client(service_name: str, **kwargs: Any) -> Any:
            kwargs.setdefault("endpoint_url", endpoint_url)
            kwargs.setdefault("config", config)
            return base.client(service_name, **kwargs)

        extra: dict[str, Any] = {"RoleSessionName": name}
        if name != ASSUMED_ROLE_SESSION_NAME:
            # Kept by every session chained from this one; needs sts:SetSourceIdentity in the
            # role's trust policy (`relman plan iam` prints it).
            extra["SourceIdentity"] = name
        if external_id:
            extra["ExternalId"] = external_id
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=sts_client,
            source_credentials=source,
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
        assumed with ``external_id`` in the name of the release being acted for: each
        combination has clients of its own, so a plan never uses a role as another plan's
        external id assumed it, and CloudTrail names the release of every call.

        A role the organisation policy does not allow for the release's application is
        refused (non-retryable ``RoleNotAllowed``) before it is assumed.
        """
        acting = _ACTING_FOR.get()
        name = ASSUMED_ROLE_SESSION_NAME
        if role_arn is not None and acting is not None:
            name = session_name(acting.release_id)
            if self.role_check is not None and acting.application is not None:
                refusal = self.role_check(acting.application, role_arn)
                if refusal:
                    raise ApplicationError(
                        refusal, type=RoleNotAllowed.__name__, non_retryable=True
                    )
        key = (service, self.region(region), role_arn, external_id, name)
        with self._lock:  # boto3 sessions are not thread-safe; clients are.
            if key in self._clients:
                self._clients.move_to_end(key)
            else:
                session = self._session(role_arn, external_id, name)
                self._clients[key] = session.client(
                    service,
                    region_name=self.region(region),
                    endpoint_url=self.endpoint_url,
                    config=self._config(),
                )
                while len(self._clients) > self.max_clients:
                    self._clients.popitem(last=False)
            return self._clients[key]
