"""The benchmark's own stack on loopback: a moto server process, Temporal's dev server, the
time-skipping server for simulated days, and relman workers in-process or as a process.

Everything listens on free ports and lives only as long as one ``python -m bench`` run, so a
benchmark never touches the stack of ``relman dev up``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.aws import AwsClients
from activities.policy import POLICY_ENV
from bench.trust import Organisation
from client.binaries import find_binary
from client.stack import LOCAL_AWS_ENV
from common.codec import data_converter, keys_from_env
from common.search_attributes import SEARCH_ATTRIBUTES
from common.stack_state import DEV_WORKER_ENV, LOOPBACK
from worker.main import ACTIVITY_THREADS, build_worker
from worker.telemetry import METRICS_ADDRESS_ENV

READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
# The bench's clients retry like the worker's (botocore standard mode).
AWS_MAX_ATTEMPTS = 3


def use_local_aws_credentials() -> None:
    """Dummy credentials for moto; never a profile or endpoint that could reach real AWS."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "RELMAN_AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        os.environ.pop(var, None)
    os.environ.update(LOCAL_AWS_ENV)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class MotoServer:
    """``moto_server`` as its own process, so its CPU does not share the bench's GIL."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self._log = open(log_dir / "moto.log", "ab")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [find_binary("moto_server"), "-H", LOOPBACK, "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto_server exited; see {log_dir / 'moto.log'}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not answer") from None
                time.sleep(0.1)

    def reset(self) -> None:
        """Clear every AWS resource (about 35 ms)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def stop(self) -> None:
        stop_process(self._process)
        self._log.close()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process this module started, SIGKILL it if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class CallCounter:
    """Counts the AWS API operations that clients send, by name (thread-safe)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        def count(model: Any, **_: Any) -> None:
            with self._lock:
                self.calls[model.name] += 1

        client.meta.events.register("before-call", count)
        return client

    def take(self) -> dict[str, int]:
        """The counts since the last ``take``, and start again from zero."""
        with self._lock:
            calls, self.calls = dict(self.calls), Counter()
        return calls


@dataclass
class CountingAwsClients(AwsClients):
    """The worker's ``AwsClients``, counting every call its clients make."""

    counter: CallCounter = field(default_factory=CallCounter)
    _counted: set[int] = field(default_factory=set)

    def client(
        self,
        service: str,
        region: str | None = None,
        role_arn: str | None = None,
        external_id: str | None = None,
    ) -> Any:
        made = super().client(service, region, role_arn, external_id)
        with self._lock:
            if id(made) not in self._counted:
                self._counted.add(id(made))
                self.counter.attach(made)
        return made


@dataclass
class Stack:
    """moto + the dev server (+ the time-skipping server once asked for), and the
    organisation (keys and policy) every release and worker of this run trusts."""

    moto: MotoServer
    dev: WorkflowEnvironment
    log_dir: Path
    org: Organisation
    _skipping: WorkflowEnvironment | None = None

    @property
    def client(self) -> Client:
        return self.dev.client

    @property
    def address(self) -> str:
        return self.dev.client.service_client.config.target_host

    def aws(self) -> CountingAwsClients:
        """Clients for moto, as the worker builds them from the environment."""
        return CountingAwsClients(
            endpoint_url=self.moto.endpoint,
            default_region=LOCAL_AWS_ENV["AWS_DEFAULT_REGION"],
            max_attempts=AWS_MAX_ATTEMPTS,
        )

    async def time_skipping(self) -> WorkflowEnvironment:
        """Temporal's time-skipping test server, started on first use."""
        if self._skipping is None:
            self._skipping = await WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=find_binary("temporal-test-server"),
                data_converter=data_converter(keys_from_env()),
            )
        return self._skipping


@contextlib.asynccontextmanager
async def open_stack(log_dir: Path) -> AsyncIterator[Stack]:
    """Make the run's keys and policy, start moto and the dev server on free loopback
    ports; stop both at the end."""
    use_local_aws_credentials()
    log_dir.mkdir(parents=True, exist_ok=True)
    org = Organisation.create(log_dir / "organisation")
    moto = MotoServer(log_dir)
    try:
        dev = await WorkflowEnvironment.start_local(
            ip=LOOPBACK,
            dev_server_existing_path=find_binary("temporal"),
            data_converter=data_converter(keys_from_env()),
            search_attributes=SEARCH_ATTRIBUTES,
            dev_server_log_level="error",
        )
        stack = Stack(moto=moto, dev=dev, log_dir=log_dir, org=org)
        try:
            yield stack
        finally:
            if stack._skipping is not None:
                await stack._skipping.shutdown()
            await dev.shutdown()
    finally:
        moto.stop()


def new_queue(scenario: str) -> str:
    """A task queue of one benchmark run's own."""
    return f"bench-{scenario}-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def inprocess_worker(
    client: Client, aws: AwsClients, queue: str, org: Organisation
) -> AsyncIterator[None]:
    """The real relman worker (``worker.main.build_worker``) in this process, reading the
    organisation's policy."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(client, queue, aws, executor, policy_source=str(org.policy_path)):
            yield


async def queue_polled(client: Client, queue: str) -> bool:
    """Whether a worker polls ``queue`` for workflow tasks."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len(response.pollers) > 0


class WorkerProcess:
    """``python -m worker`` (the production entry point) as a process of its own, so its
    resident memory is the worker's alone."""

    def __init__(self, stack: Stack, queue: str, settings: dict[str, str] | None = None):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TEMPORAL_"))}
        # As installed (pip compiles every module; the image keeps the .pyc files), the
        # worker reads its modules' bytecode instead of compiling the workflow modules'
        # source again for every workflow it runs in the sandbox. These machines set
        # PYTHONDONTWRITEBYTECODE, which would leave the worker compiling every time.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(LOCAL_AWS_ENV)
        env.update(
            TEMPORAL_ADDRESS=stack.address,
            TEMPORAL_NAMESPACE="default",
            RELMAN_TASK_QUEUE=queue,
            RELMAN_AWS_ENDPOINT_URL=stack.moto.endpoint,
            PYTHONUNBUFFERED="1",
        )
        # A production worker's policy: a file it reads at start and through load_policy
        # (not a dev worker, whatever the shell says).
        env[POLICY_ENV] = str(stack.org.policy_path)
        env.pop(DEV_WORKER_ENV, None)
        env.update(settings or {})  # e.g. RELMAN_WORKER_MAX_CACHED_WORKFLOWS
        self._env = env
        self.queue = queue
        self.log_path = stack.log_dir / f"worker-{queue}-{uuid.uuid4().hex[:4]}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )

    async def ready(self, client: Client) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not await queue_polled(client, self.queue):
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not poll; see {self.log_path}")
            await asyncio.sleep(0.1)

    def memory(self) -> dict[str, int]:
        """Resident set size now and at its peak, in kB (``/proc/<pid>/status``)."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
        return {"rss_kb": fields["VmRSS"], "peak_rss_kb": fields["VmHWM"]}

    def metric(self, name: str) -> float:
        """The sum over its label sets of one of the SDK's Prometheus metrics (the worker
        serves them on ``RELMAN_METRICS_ADDRESS``, which the caller set); 0 if absent."""
        address = self._env.get(METRICS_ADDRESS_ENV)
        if not address:
            raise RuntimeError(f"this worker serves no metrics: {METRICS_ADDRESS_ENV} unset")
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()
