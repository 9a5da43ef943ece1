"""``relman console``: the web console for approvers and operators."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def console(
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 8400,
    bind: Annotated[str, typer.Option("--bind", help="address to listen on")] = "127.0.0.1",
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="the organisation policy (default: $RELMAN_POLICY, or the dev stack's)",
        ),
    ] = None,
    dev_signin: Annotated[
        bool,
        typer.Option(
            "--dev-signin",
            help="offer the labelled development sign-in (only with a dev policy)",
        ),
    ] = False,
    proxy: Annotated[
        bool,
        typer.Option(
            "--behind-proxy",
            help="trust X-Forwarded-Proto/For from the TLS-terminating proxy in front",
        ),
    ] = False,
) -> None:
    """Serve the web console: sign in with OpenID Connect (RELMAN_CONSOLE_OIDC_ISSUER,
    RELMAN_CONSOLE_OIDC_CLIENT_ID, RELMAN_CONSOLE_OIDC_CLIENT_SECRET), decide gates,
    watch and operate releases. Decisions are signed with RELMAN_CONSOLE_KEY, the key the
    organisation policy lists for the attester RELMAN_CONSOLE_ATTESTER (default console)."""
    import os

    import uvicorn

    from client.identity import POLICY_ENV, dev_policy_in_use
    from common.errors import BadInput
    from console.app import create_app
    from console.settings import ConsoleSettings
    from models.policy import PolicyError, load_policy

    path = policy or (Path(p) if (p := os.environ.get(POLICY_ENV, "").strip()) else None)
    path = path or dev_policy_in_use()
    if path is None:
        raise BadInput(f"no organisation policy: give --policy FILE or set {POLICY_ENV}")
    try:
        loaded = load_policy(path)
    except PolicyError as exc:
        raise BadInput(str(exc)) from None
    if dev_signin and not loaded.dev:
        raise BadInput("--dev-signin: only with the embedded stack's dev policy (dev: true)")
    settings = ConsoleSettings.from_env(f"http://{bind}:{port}", dev_signin=dev_signin)
    if not loaded.dev and settings.oidc_issuer is None:
        raise BadInput("set RELMAN_CONSOLE_OIDC_ISSUER and RELMAN_CONSOLE_OIDC_CLIENT_ID")
    typer.echo(f"relman console on {settings.public_url} (policy {path})")
    uvicorn.run(
        create_app(settings, path),
        host=bind,
        port=port,
        proxy_headers=proxy,
        forwarded_allow_ips="*" if proxy else None,
        log_level="info",
    )
