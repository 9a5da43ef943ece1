"""``relman codec-server``: decode (and encode) payloads for the Temporal Web UI and CLI.

Temporal stores relman's payloads encrypted (``common.codec``). The Web UI and the
``temporal`` CLI show them decoded when pointed at a codec server that holds the keys:
this one speaks Temporal's remote codec protocol — ``POST /decode`` and ``POST /encode``
with ``{"payloads": [{"metadata": {name: base64}, "data": base64}]}`` — and answers only
requests that carry a token it knows (``Authorization: Bearer <token>``), so only the
people given a token read payloads. Browsers may call it from the Web UI's origin (CORS).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import Payload

from common.codec import CodecError, EncryptionCodec
from common.errors import BadInput

log = logging.getLogger("relman.codec-server")
MAX_BODY = 8 * 1024 * 1024  # a history page of payloads, with room to spare


def read_tokens(path: Path) -> dict[str, str]:
    """``name token`` lines: who may decode, each with a token of their own."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise BadInput(f"cannot read codec-server tokens {path}: {exc.strerror}") from None
    tokens: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[1]) < 16:
            raise BadInput(f"{path}:{number}: expected `name token` (a token of 16+ characters)")
        tokens[parts[1]] = parts[0]
    if not tokens:
        raise BadInput(f"{path}: no tokens: nobody could use the codec server")
    return tokens


def _payload(item: Mapping[str, Any]) -> Payload:
    metadata = {k: base64.b64decode(v) for k, v in (item.get("metadata") or {}).items()}
    return Payload(metadata=metadata, data=base64.b64decode(item.get("data") or ""))


def _item(payload: Payload) -> dict[str, Any]:
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


class CodecServer(ThreadingHTTPServer):
    """The HTTP server: ``codec`` turns payloads around for holders of ``tokens``."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        codec: EncryptionCodec,
        tokens: Mapping[str, str],
        origins: list[str],
    ):
        super().__init__(address, _Handler)
        self.codec, self.tokens, self.origins = codec, dict(tokens), origins

    def who(self, authorization: str | None) -> str | None:
        """The name whose token ``authorization`` carries, or None."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        for known, name in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                return name
        return None


class _Handler(BaseHTTPRequestHandler):
    server: CodecServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def _cors(self) -> None:
        origin = self.headers.get("Origin")
        if origin and origin in self.server.origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Vary", "Origin")

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_OPTIONS(self) -> None:  # noqa: N802 - http.server's naming
        """The browser's CORS preflight: which origins, methods and headers are allowed."""
        self.send_response(204)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Namespace")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.rstrip("/").rsplit("/", 1)[-1]
        if path not in ("decode", "encode"):
            self._answer(404, {"error": f"no such endpoint: {self.path} (/decode, /encode)"})
            return
        who = self.server.who(self.headers.get("Authorization"))
        if who is None:
            self._answer(401, {"error": "a known bearer token is required"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(413, {"error": f"request larger than {MAX_BODY} bytes"})
            return
        try:
            items = json.loads(self.rfile.read(length) or b"{}").get("payloads", [])
            payloads = [_payload(item) for item in items]
            codec = self.server.codec
            turned = [codec.decrypt(p) if path == "decode" else codec.encrypt(p) for p in payloads]
        except CodecError as exc:
            self._answer(400, {"error": str(exc)})
            return
        except (ValueError, AttributeError, TypeError) as exc:
            self._answer(400, {"error": f"malformed request: {exc}"})
            return
        log.info(
            "%s: %s %d payload(s) (namespace %s)",
            who,
            path,
            len(turned),
            self.headers.get("X-Namespace", "?"),
        )
        self._answer(200, {"payloads": [_item(p) for p in turned]})
