"""The web console with many releases parked: how long its pages take.

``--parked`` releases (each one gated wave) wait at their gate on one worker process; the
console (``relman console``, a process of its own) then serves the release page of
releases picked across them and the approver's *My approvals* (its first page), each
``CONSOLE_REQUESTS`` times, one request at a time, as a signed-in person's browser asks
them. The session cookie is made with the console's session secret, as its sign-in would.
*My approvals* shows each target's current value, read from the bench's moto: its first
page reads them all, later pages find them kept a few seconds (``console.current``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
from itsdangerous import TimestampSigner

from bench.report import load_average, percentile, row
from bench.scenarios.parked import APPROVER, _park, _plans
from bench.settings import Settings
from bench.stack import Stack, WorkerProcess, free_port, new_queue, stop_process

CONSOLE_REQUESTS = 50
READY_SECONDS = 30.0
SECRET = "bench-console-session-secret"


def _cookie(person: str) -> str:
    """The console's session cookie for ``person`` (Starlette's signed session format)."""
    session = {"person": person, "at": time.time(), "csrf": "bench", "via": "oidc",
               "issuer": "https://login.example.com", "subject": person}  # fmt: skip
    data = base64.b64encode(json.dumps(session).encode())
    return TimestampSigner(SECRET).sign(data).decode()


def _console(stack: Stack, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    env.update(
        TEMPORAL_ADDRESS=stack.address,
        TEMPORAL_NAMESPACE="default",
        # As the worker's: the current values My approvals shows are read from the bench's moto.
        RELMAN_AWS_ENDPOINT_URL=stack.moto.endpoint,
        RELMAN_CONSOLE_SESSION_SECRET=SECRET,
        # Never contacted: the bench's person is signed in already.
        RELMAN_CONSOLE_OIDC_ISSUER="https://login.example.com",
        RELMAN_CONSOLE_OIDC_CLIENT_ID="bench",
    )
    log = open(stack.log_dir / "console.log", "ab")  # noqa: SIM115 - the process owns it
    return subprocess.Popen(
        [sys.executable, "-m", "client.cli", "console", "--port", str(port),
         "--policy", str(stack.org.policy_path)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip


async def _timed(
    http: httpx.AsyncClient, path: str, count: int, wrong: str | None = None
) -> list[float]:
    """Seconds each of ``count`` GETs of ``path`` took; a page with ``wrong`` in it fails."""
    seconds = []
    for _ in range(count):
        began = time.perf_counter()
        response = await http.get(path)
        seconds.append(time.perf_counter() - began)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status_code}: {response.text[:300]}")
        if wrong is not None and wrong in response.text:
            at = response.text.index(wrong)
            raise RuntimeError(f"GET {path}: {response.text[at : at + 300]}")
    return seconds


async def _one_run(stack: Stack, settings: Settings, requests: int) -> dict[str, Any]:
    client, org = stack.client, stack.org
    stack.moto.reset()
    plans = _plans(stack, settings.parked, "console")
    queue = new_queue("console")
    worker = WorkerProcess(stack, queue)
    port = free_port()
    console = _console(stack, port)
    try:
        await worker.ready(client)
        await _park(client, org, plans, queue)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            cookies={"relman_console": _cookie(APPROVER)},
            timeout=60.0,
        ) as http:
            deadline = time.monotonic() + READY_SECONDS
            while True:
                try:
                    await http.get("/signin")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or console.poll() is not None:
                        raise RuntimeError("the console did not start") from None
                    await asyncio.sleep(0.2)
            step = max(len(plans) // requests, 1)
            picked = [plans[(i * step) % len(plans)].id for i in range(requests)]
            release: list[float] = []
            for release_id in picked:
                release += await _timed(http, f"/releases/{release_id}", 1)
            # The first page reads every target's current value from AWS; later ones find
            # them kept (console.current.CACHE_SECONDS) until they are read again.
            first = await _timed(http, "/approvals", 1, wrong="not read:")
            approvals = await _timed(http, "/approvals", requests)
        return {
            "load_avg": load_average(),
            "approvals_first_ms": first[0] * 1000,
            "release_p50_ms": percentile(release, 50) * 1000,
            "release_p95_ms": percentile(release, 95) * 1000,
            "approvals_p50_ms": percentile(approvals, 50) * 1000,
            "approvals_p95_ms": percentile(approvals, 95) * 1000,
        }
    finally:
        stop_process(console)
        worker.stop()


async def run(stack: Stack, settings: Settings) -> tuple[list[dict[str, Any]], list[dict]]:
    requests = min(CONSOLE_REQUESTS, max(settings.parked, 5))
    runs = [await _one_run(stack, settings, requests)]

    def values(key: str) -> list[float]:
        return [r[key] for r in runs]

    n = settings.parked
    rows = [
        row(f"release page, p50 ({n} releases parked)", values("release_p50_ms"), "ms"),
        row(f"release page, p95 ({n} releases parked)", values("release_p95_ms"), "ms",
            "< 200 ms"),
        row(f"My approvals, p50 ({n} releases parked)", values("approvals_p50_ms"), "ms"),
        row(f"My approvals, p95 ({n} releases parked)", values("approvals_p95_ms"), "ms",
            "< 300 ms"),
        row("My approvals, first page (every target's current value read from AWS)",
            values("approvals_first_ms"), "ms"),
    ]  # fmt: skip
    return runs, rows
