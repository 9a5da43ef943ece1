"""``relman codec-server``: the official ``temporal`` CLI shows a release's payloads decoded
through it, only with a known token; browsers from the Web UI's origin may call it."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.aws import AwsClients
from client.binaries import find_binary
from client.codec_server import CodecServer, read_tokens
from common.codec import EncryptionCodec, keys_from_env
from common.errors import BadInput
from models.status import ReleasePhase
from tests.client.test_cli import relman
from tests.helpers import base64_fields, make_plan, ssm, start_release, wait_for, wave

TOKEN = "carol-0123456789abcdef"
UI = "http://127.0.0.1:8233"


@pytest.fixture
def codec_server(tmp_path: Path) -> Iterator[str]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# who may read payloads\ncarol {TOKEN}\n")
    keys = keys_from_env()
    assert keys is not None
    server = CodecServer(("127.0.0.1", 0), EncryptionCodec(keys), read_tokens(tokens), [UI])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **headers},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_codec_server_decodes_for_the_temporal_cli(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, codec_server: str
) -> None:
    plan = make_plan(
        [ssm("flag", "/payments/codec/flag", "decoded-value-42")],
        [wave("finance", ["flag"], groups={"finance-cab": 1})],
    )
    address = dev_env.client.service_client.config.target_host
    async with make_worker(dev_env, aws):
        handle = await start_release(dev_env.client, plan, task_queue)
        await wait_for(handle, lambda s: s.phase == ReleasePhase.AWAITING_APPROVAL)

    def show(*extra: str) -> str:
        return subprocess.run(
            [find_binary("temporal"), "workflow", "show", "--workflow-id", plan.id,
             "--address", address, "--output", "json", *extra],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    def readable(shown: str) -> bytes:
        return shown.encode() + b"".join(base64_fields(json.loads(shown)))

    assert b"decoded-value-42" not in readable(show())
    decoded = show("--codec-endpoint", codec_server, "--codec-auth", f"Bearer {TOKEN}")
    assert b"decoded-value-42" in readable(decoded)
    refused = subprocess.run(
        [find_binary("temporal"), "workflow", "show", "--workflow-id", plan.id,
         "--address", address, "--output", "json", "--codec-endpoint", codec_server,
         "--codec-auth", "Bearer wrong-token-0000000000"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode != 0 or b"decoded-value-42" not in readable(refused.stdout)


def test_requests_need_a_known_token_and_browsers_the_ui_origin(codec_server: str) -> None:
    clear = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
             "data": base64.b64encode(b'"hello"').decode()}  # fmt: skip
    status, body = post(f"{codec_server}/encode", {"payloads": [clear]}, {})
    assert (status, body) == (401, {"error": "a known bearer token is required"})
    auth = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}
    status, body = post(f"{codec_server}/encode", {"payloads": [clear]}, auth)
    assert status == 200
    [sealed] = body["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == b"binary/encrypted"
    status, body = post(f"{codec_server}/decode", {"payloads": [sealed]}, auth)
    assert (status, body) == (200, {"payloads": [clear]})
    status, body = post(f"{codec_server}/decode", {"payloads": "nope"}, auth)
    assert status == 400 and body["error"].startswith("malformed request")

    for origin, allowed in ((UI, UI), ("https://evil.example", None)):
        request = urllib.request.Request(
            f"{codec_server}/decode", method="OPTIONS", headers={"Origin": origin}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.headers.get("Access-Control-Allow-Origin") == allowed
            assert "Authorization" in answer.headers["Access-Control-Allow-Headers"]


def test_token_files_and_missing_keys_are_clear_errors(tmp_path: Path) -> None:
    short = tmp_path / "tokens"
    short.write_text("carol short\n")
    with pytest.raises(BadInput, match=r"tokens:1: expected `name token` \(a token of 16\+"):
        read_tokens(short)
    result = relman(
        "codec-server", "--tokens", str(short),
        env={"RELMAN_CODEC_KEYS": "", "RELMAN_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: no payload keys configured: set RELMAN_CODEC_KEYS, RELMAN_CODEC_KEY_FILE or "
        "RELMAN_CODEC_KMS_KEYS (or run `relman dev up`, which makes the stack's key)"
    )
