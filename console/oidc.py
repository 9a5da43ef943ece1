"""OpenID Connect sign-in: authorization code flow with PKCE against any compliant provider.

Discovery comes from ``<issuer>/.well-known/openid-configuration``; the ``id_token`` is
verified with joserfc against the provider's published keys (signature, issuer, audience,
expiry and the nonce this console sent).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

# Discovery documents and keys rarely change; a provider's key rotation publishes the new
# key well before using it, so an hour's cache is the usual client practice.
DISCOVERY_TTL_SECONDS = 3600.0
HTTP_TIMEOUT_SECONDS = 10.0
# Algorithms an id_token may be signed with (never "none", never HMAC with a public secret).
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]
# Allowed clock difference when checking exp/iat.
LEEWAY_SECONDS = 60


class SignInError(Exception):
    """The sign-in failed; the message is safe to show the user."""


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in."""

    issuer: str
    subject: str
    name: str | None = None


@dataclass(frozen=True)
class Pending:
    """What a sign-in in progress keeps in the session until the provider calls back."""

    state: str
    nonce: str
    verifier: str
    next_url: str


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class Provider:
    """One OpenID provider this console trusts, with its client registration."""

    def __init__(self, issuer: str, client_id: str, client_secret: str | None):
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self._discovered: tuple[float, dict[str, Any]] | None = None
        self._keys: tuple[float, KeySet] | None = None

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (cached)."""
        if self._discovered and time.monotonic() - self._discovered[0] < DISCOVERY_TTL_SECONDS:
            return self._discovered[1]
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as http:
                response = await http.get(url)
                response.raise_for_status()
                data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInError(
                f"cannot read the sign-in provider's configuration at {url}: {exc}"
            ) from None
        if str(data.get("issuer", "")).rstrip("/") != self.issuer:
            raise SignInError(
                f"the provider at {url} names issuer {data.get('issuer')!r}, not {self.issuer!r}"
            )
        self._discovered = (time.monotonic(), data)
        return data

    async def _key_set(self, refresh: bool = False) -> KeySet:
        if not refresh and self._keys and time.monotonic() - self._keys[0] < DISCOVERY_TTL_SECONDS:
            return self._keys[1]
        uri = (await self.metadata())["jwks_uri"]
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as http:
            response = await http.get(uri)
            response.raise_for_status()
            keys = KeySet.import_key_set(response.json())
        self._keys = (time.monotonic(), keys)
        return keys

    async def start(self, redirect_uri: str, next_url: str) -> tuple[str, Pending]:
        """The provider URL to send the browser to, and what to keep until it returns."""
        meta = await self.metadata()
        pending = Pending(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),
            next_url=next_url,
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": "openid profile email",
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": _challenge(pending.verifier),
                "code_challenge_method": "S256",
            }
        )
        return f"{meta['authorization_endpoint']}?{query}", pending

    async def finish(self, code: str, redirect_uri: str, pending: Pending) -> Identity:
        """Exchange ``code`` for tokens and verify the id_token; the signed-in identity."""
        meta = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": pending.verifier,
            "client_id": self.client_id,
        }
        # client_secret_basic when there is a secret; a public client (PKCE only) sends none.
        auth = httpx.BasicAuth(self.client_id, self.client_secret) if self.client_secret else None
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as http:
                response = await http.post(
                    meta["token_endpoint"], data=form, auth=auth or httpx.USE_CLIENT_DEFAULT
                )
        except httpx.HTTPError as exc:
            raise SignInError(f"the sign-in provider did not answer: {exc}") from None
        if response.status_code != 200:
            raise SignInError(
                f"the sign-in provider refused the code (HTTP {response.status_code})"
            )
        id_token = response.json().get("id_token")
        if not id_token:
            raise SignInError("the sign-in provider returned no id_token")
        claims = await self._verified(id_token, pending.nonce)
        return Identity(
            issuer=claims["iss"],
            subject=str(claims["sub"]),
            name=claims.get("name") or claims.get("preferred_username"),
        )

    async def _verified(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            try:
                token = jwt.decode(id_token, await self._key_set(), algorithms=ID_TOKEN_ALGORITHMS)
            except JoseError:
                # The provider may have rotated its keys since they were cached.
                keys = await self._key_set(refresh=True)
                token = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
            registry = jwt.JWTClaimsRegistry(
                leeway=LEEWAY_SECONDS,
                iss={"essential": True, "value": (await self.metadata())["issuer"]},
                aud={"essential": True, "value": self.client_id},
                sub={"essential": True},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            )
            registry.validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise SignInError(f"the id_token does not verify: {exc}") from None
        return dict(token.claims)
