"""Checks end to end: time-skipping Temporal, the real worker, moto over HTTP, a local HTTP
server. A check that passes before the first step and fails during the bake fails the step
with the measured value in the timeline and status, and the release rolls back."""

from __future__ import annotations

import asyncio
import http.server
import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from client.progress import with_running_progress
from client.views import StatusView
from models.status import ReleasePhase, WavePhase
from tests.helpers import (
    assert_replays,
    events,
    make_plan,
    seed,
    ssm,
    ssm_values,
    start_release,
    status_of,
    wave,
)

PARAM = "/shop/api/version"


class Degrading(http.server.BaseHTTPRequestHandler):
    """Healthy for the first request, then failing."""

    served = 0

    def do_GET(self) -> None:  # noqa: N802
        Degrading.served += 1
        self.send_response(200 if Degrading.served <= 1 else 503)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Degrading.served = 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Degrading)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/health"
    httpd.shutdown()


async def test_a_check_failing_during_the_bake_fails_the_step_and_rolls_back(
    time_skipping_env, aws, make_worker, task_queue, server
):
    seed(aws, {PARAM: "2.3.1"})
    plan = make_plan(
        [ssm("api-version", PARAM, "2.4.0")],
        [
            wave(
                "eu",
                ["api-version"],
                bake="1m",
                checks=[{"name": "health", "kind": "http", "url": server, "interval": "1s"}],
            )
        ],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        result = await handle.result()
        status = await status_of(handle)
        await assert_replays(handle)

    message = f"check 'health' failed while baking at 100%: GET {server}: status 503 (expected 200)"
    assert result.phase == ReleasePhase.ROLLED_BACK
    assert message in (status.error or "")
    assert [e.message for e in events(status, "check_failed")] == [message]
    [check] = status.wave("eu").checks
    assert (check.name, check.ok, check.failed) == ("health", False, True)
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.3.1"}
    assert Degrading.served == 2  # once before the first step, once in the bake
    out = io.StringIO()
    StatusView(status).render(Console(file=out, width=300))
    assert f"check health of wave eu: FAILED: GET {server}: status 503 (expected 200)" in (
        out.getvalue()
    )
    assert StatusView(status).to_json()["waves"][0]["checks"][0]["failed"] is True


async def test_status_shows_the_checks_latest_probes_while_baking(
    time_skipping_env, aws, make_worker, task_queue, server
):
    Degrading.served = -100  # healthy throughout
    seed(aws, {PARAM: "2.3.1"})
    plan = make_plan(
        [ssm("api-version", PARAM, "2.4.0")],
        [
            wave(
                "eu",
                ["api-version"],
                bake="6s",
                checks=[
                    {
                        "name": "health",
                        "kind": "http",
                        "url": server,
                        "interval": "1s",
                        "timeout": "1s",
                    }
                ],
            )
        ],
    )
    async with make_worker(time_skipping_env, aws):
        handle = await start_release(time_skipping_env.client, plan, task_queue)
        # Probes show up while the bake runs (heartbeats), not only when it ends.
        seen: set[Any] = set()
        for _ in range(100):
            current = await with_running_progress(time_skipping_env.client, await status_of(handle))
            eu = current.wave("eu")
            if eu.phase == WavePhase.BAKING and eu.checks:
                seen.add(eu.checks[0].at)
            if len(seen) >= 2:
                break
            await asyncio.sleep(0.2)
        result = await handle.result()
        status = await status_of(handle)

    assert result.phase == ReleasePhase.COMPLETED
    [check] = status.wave("eu").checks
    assert len(seen) >= 2
    assert check.ok and not check.failed
