"""``relman console``: the web console for approvers and operators."""

from __future__ import annotations

from typing import Annotated

import typer


def console(
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 8400,
    bind: Annotated[str, typer.Option("--bind", help="address to listen on")] = "127.0.0.1",
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="where the organisation policy is, as for the worker: a file, "
            "s3://bucket/key or ssm:/name (default: $RELMAN_POLICY, or the dev stack's)",
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
    organisation policy lists for the attester RELMAN_CONSOLE_ATTESTER (default console).
    The policy is read where the worker reads it (RELMAN_POLICY: a file, an S3 object or an
    SSM parameter, with the AWS settings the worker uses) and again when it changes."""
    import uvicorn

    from activities.aws import AwsClients
    from activities.policy import policy_source, read_policy
    from client.identity import POLICY_ENV, dev_policy_in_use
    from common.errors import BadInput, CliError
    from console.app import create_app
    from console.settings import ConsoleSettings
    from models.policy import PolicyError

    source = policy or policy_source() or (str(dev) if (dev := dev_policy_in_use()) else None)
    if source is None:
        raise BadInput(
            f"no organisation policy: give --policy (a file, s3://bucket/key or ssm:/name) "
            f"or set {POLICY_ENV}"
        )
    aws = AwsClients.from_env()
    # Read once before serving, with the worker's loader: a broken or unreachable policy
    # stops the console at once with the reason.
    try:
        loaded = read_policy(source, aws)
    except PolicyError as exc:
        raise BadInput(f"organisation policy: {exc}") from None
    except Exception as exc:  # AWS errors as activities.errors maps them
        raise CliError(f"cannot read the organisation policy at {source}: {exc}") from None
    if dev_signin and not loaded.dev:
        raise BadInput("--dev-signin: only with the embedded stack's dev policy (dev: true)")
    settings = ConsoleSettings.from_env(f"http://{bind}:{port}", dev_signin=dev_signin)
    if not loaded.dev and settings.oidc_issuer is None:
        raise BadInput("set RELMAN_CONSOLE_OIDC_ISSUER and RELMAN_CONSOLE_OIDC_CLIENT_ID")
    typer.echo(f"relman console on {settings.public_url} (policy {source})")
    uvicorn.run(
        create_app(settings, source, aws),
        host=bind,
        port=port,
        proxy_headers=proxy,
        forwarded_allow_ips="*" if proxy else None,
        log_level="info",
    )
