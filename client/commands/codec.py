"""``relman codec-server``: decoded payloads for the Temporal Web UI and CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEV_UI_ORIGINS = ["http://127.0.0.1:8233", "http://localhost:8233"]


def codec_server(
    tokens: Annotated[
        Path,
        typer.Option(
            "--tokens",
            help="file of `name token` lines: who may decode (Authorization: Bearer TOKEN)",
        ),
    ],
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 8081,
    bind: Annotated[str, typer.Option("--bind", help="address to listen on")] = "127.0.0.1",
    origin: Annotated[
        list[str] | None,
        typer.Option(
            "--origin",
            help="a Web UI origin browsers may call from (repeatable; default: the dev "
            "stack's UI, http://127.0.0.1:8233 and http://localhost:8233)",
        ),
    ] = None,
) -> None:
    """Serve /decode and /encode with the payload keys this shell is configured with
    (RELMAN_CODEC_KEYS, RELMAN_CODEC_KEY_FILE, RELMAN_CODEC_KMS_KEYS, or the dev stack's)."""
    import logging

    from client.codec_server import CodecServer, read_tokens
    from common.codec import CodecError, EncryptionCodec, keys_from_env
    from common.errors import BadInput
    from common.stack_state import StackConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        keys = keys_from_env(stack_key_file=StackConfig.from_env().codec_key_path)
    except CodecError as exc:
        raise BadInput(f"payload encryption: {exc}") from None
    if keys is None:
        raise BadInput(
            "no payload keys configured: set RELMAN_CODEC_KEYS, RELMAN_CODEC_KEY_FILE or "
            "RELMAN_CODEC_KMS_KEYS (or run `relman dev up`, which makes the stack's key)"
        )
    server = CodecServer((bind, port), EncryptionCodec(keys), read_tokens(tokens),
                         origin or DEV_UI_ORIGINS)  # fmt: skip
    typer.echo(
        f"codec server on http://{bind}:{server.server_address[1]} with key "
        f"{keys.current!r} from {keys.source}"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
