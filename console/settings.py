"""The console's configuration, from environment variables (``relman console --help``)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from common.errors import BadInput

ISSUER_ENV = "RELMAN_CONSOLE_OIDC_ISSUER"
CLIENT_ID_ENV = "RELMAN_CONSOLE_OIDC_CLIENT_ID"
CLIENT_SECRET_ENV = "RELMAN_CONSOLE_OIDC_CLIENT_SECRET"
PUBLIC_URL_ENV = "RELMAN_CONSOLE_PUBLIC_URL"
SESSION_SECRET_ENV = "RELMAN_CONSOLE_SESSION_SECRET"
SESSION_LIFETIME_ENV = "RELMAN_CONSOLE_SESSION_LIFETIME"
ATTESTER_KEY_ENV = "RELMAN_CONSOLE_KEY"
ATTESTER_NAME_ENV = "RELMAN_CONSOLE_ATTESTER"
# Eight hours: a working day, after which the approver signs in again.
DEFAULT_SESSION_LIFETIME = 8 * 3600
DEFAULT_ATTESTER = "console"


@dataclass(frozen=True)
class ConsoleSettings:
    """Everything the console needs besides Temporal (configured as for the CLI)."""

    public_url: str
    session_secret: str
    session_lifetime: int
    attester_name: str
    attester_key: Path | None
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    # The embedded stack's labelled sign-in as any person of its dev policy; never elsewhere.
    dev_signin: bool = False

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    @classmethod
    def from_env(cls, public_url: str, dev_signin: bool = False) -> ConsoleSettings:
        """Settings from ``RELMAN_CONSOLE_*``; a missing session secret gets a random one
        (sessions then end when the console restarts)."""
        lifetime_text = os.environ.get(SESSION_LIFETIME_ENV, "").strip()
        try:
            lifetime = int(lifetime_text) if lifetime_text else DEFAULT_SESSION_LIFETIME
        except ValueError:
            raise BadInput(
                f"{SESSION_LIFETIME_ENV}: a number of seconds, not {lifetime_text!r}"
            ) from None
        if lifetime <= 0:
            raise BadInput(f"{SESSION_LIFETIME_ENV}: must be a positive number of seconds")
        key = os.environ.get(ATTESTER_KEY_ENV, "").strip()
        issuer = os.environ.get(ISSUER_ENV, "").strip() or None
        client_id = os.environ.get(CLIENT_ID_ENV, "").strip() or None
        if issuer and not client_id:
            raise BadInput(f"{CLIENT_ID_ENV} is required with {ISSUER_ENV}")
        return cls(
            public_url=(os.environ.get(PUBLIC_URL_ENV, "").strip() or public_url).rstrip("/"),
            session_secret=os.environ.get(SESSION_SECRET_ENV) or secrets.token_urlsafe(32),
            session_lifetime=lifetime,
            attester_name=os.environ.get(ATTESTER_NAME_ENV, "").strip() or DEFAULT_ATTESTER,
            attester_key=Path(key).expanduser() if key else None,
            oidc_issuer=issuer,
            oidc_client_id=client_id,
            oidc_client_secret=os.environ.get(CLIENT_SECRET_ENV) or None,
            dev_signin=dev_signin,
        )
