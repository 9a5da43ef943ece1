"""Waves run on a task queue of their own, and a worker polls both.

A wave's workflow tasks would otherwise wait behind the approvals, signals and timers of
every release on the worker (docs/benchmarks.md). Runs on the dev server, which reports
pollers per task queue.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
from pathlib import Path
from types import ModuleType

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.aws import AwsClients
from models.status import ReleasePhase
from tests.helpers import make_plan, seed, ssm, ssm_values, start_release, wave
from workflows.release import ReleaseWorkflow
from workflows.wave import wave_queue

PARAM = "/payments/queue/version"
HEALTHCHECK = Path(__file__).parents[2] / "deploy" / "worker_healthcheck.py"


def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("worker_healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_a_wave_runs_on_the_waves_queue_and_deploys(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str
) -> None:
    seed(aws, {PARAM: "2.3.1"})
    plan = make_plan([ssm("api", PARAM, "2.4.0")], [wave("finance", ["api"])])
    async with make_worker(dev_env, aws):
        handle = await start_release(dev_env.client, plan, task_queue)
        outcome = await asyncio.wait_for(handle.result(), 30)
    child = dev_env.client.get_workflow_handle(f"{plan.id}.finance.1")
    started = [
        e.workflow_execution_started_event_attributes
        async for e in child.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    ]

    assert outcome.phase == ReleasePhase.COMPLETED
    assert ssm_values(aws, [PARAM]) == {PARAM: "2.4.0"}
    assert [s.task_queue.name for s in started] == [wave_queue(task_queue)]
    assert wave_queue(task_queue) == f"{task_queue}.waves"


@pytest.fixture
def configured(dev_env: WorkflowEnvironment, task_queue: str, monkeypatch) -> None:
    """The health check's configuration: the dev server and this test's queue."""
    monkeypatch.delenv("TEMPORAL_PROFILE", raising=False)
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "default")
    monkeypatch.setenv("RELMAN_TASK_QUEUE", task_queue)


async def eventually_not_polled(module: ModuleType, expected: list[str]) -> list[str]:
    """The health check's answer once it is ``expected`` (pollers show up within a second)."""
    host = socket.gethostname()
    for _ in range(50):
        missing = await module.not_polled(host)
        if missing == expected:
            break
        await asyncio.sleep(0.1)
    return missing


async def test_the_health_check_wants_both_queues_polled(
    configured: None, dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue
) -> None:
    module = healthcheck()
    host = socket.gethostname()
    assert await module.not_polled(host) == [task_queue, wave_queue(task_queue)]

    # A worker of the releases' queue alone (a build from before waves had their own).
    releases_only = Worker(dev_env.client, task_queue=task_queue, workflows=[ReleaseWorkflow])
    async with releases_only:
        assert await eventually_not_polled(module, [wave_queue(task_queue)]) == [
            wave_queue(task_queue)
        ]

    async with make_worker(dev_env, aws):
        assert await eventually_not_polled(module, []) == []


def test_the_health_check_says_which_queue_is_not_polled(
    task_queue: str, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("RELMAN_TASK_QUEUE", task_queue)
    module = healthcheck()

    async def only_waves_missing(host: str) -> list[str]:
        return [wave_queue(task_queue)]

    monkeypatch.setattr(module, "not_polled", only_waves_missing)
    assert module.main() == 1
    assert capsys.readouterr().out == (
        f"unhealthy: no worker on {socket.gethostname()} polls task queue "
        f"'{wave_queue(task_queue)}'\n"
    )
