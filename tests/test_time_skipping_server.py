"""The suite's time-skipping server is replaced when a test leaves its clock locked.

temporal-test-server keeps its clock locked for good when a workflow is terminated while
one of its workflow tasks waits for a worker; every later skip would then take real time,
and the next test waiting for a two-day window would hang (conftest.``_TimeSkippingServer``).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.client import Client


async def test_a_server_whose_clock_a_terminated_workflow_locked_is_replaced(
    _time_skipping_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _time_skipping_server
    monkeypatch.setattr(server, "PROBE_DEADLINE", timedelta(seconds=2))
    env = await server.env()
    # A client of its own: the workflow must not be left for the suite to terminate later.
    client = Client(env.client.service_client, namespace=env.client.namespace)
    handle = await client.start_workflow(
        "NobodyRunsThis", id=f"locks-the-clock-{uuid.uuid4().hex[:8]}", task_queue="nobody-polls"
    )
    await handle.terminate("its first workflow task was never polled")

    with pytest.warns(UserWarning, match="left the time-skipping server unable to skip time"):
        await server.check("this test")

    fresh = await server.env()
    assert fresh is not env
    before = await fresh.get_current_time()
    await asyncio.wait_for(fresh.sleep(timedelta(days=2)), 10)
    assert await fresh.get_current_time() - before >= timedelta(days=2)


async def test_a_server_that_skips_time_is_kept(
    _time_skipping_server, time_skipping_env, recwarn: pytest.WarningsRecorder
) -> None:
    await _time_skipping_server.check("this test")
    assert await _time_skipping_server.env() is time_skipping_env
    assert not [w for w in recwarn if "time-skipping server" in str(w.message)]
