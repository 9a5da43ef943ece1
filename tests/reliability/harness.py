"""Real processes for the reliability tests and a driver that kills them at chosen points.

Everything runs as it does for a user: the Temporal dev server (``temporal server
start-dev`` on a SQLite file), moto (``moto_server``) and relman workers (``python -m
worker``, see ``worker_process``) are separate OS processes on free loopback ports; releases
are submitted and approved with the ``relman`` command line. The worker reaches moto through
an :class:`~tests.reliability.aws_proxy.AwsProxy`, which is how a test holds one AWS call in
flight, injects faults or takes the endpoint down.

A kill point is found by watching the release (its status query, its wave's pending
activities, a call arriving at the proxy), never by sleeping: the driver waits for the point,
SIGKILLs the process, restarts it and records the kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml
from temporalio.api.enums.v1 import PendingActivityState, PendingWorkflowTaskState
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from activities.aws import AwsClients
from client.binaries import find_binary
from client.stack import LOCAL_AWS_ENV, SEARCH_ATTRIBUTE_TYPES
from common.codec import data_converter, keys_from_env
from models.loader import parse_plan
from models.locks import RESOURCE_LOCKS
from models.messages import CHECK_ALARMS, WAVE_ID_SEPARATOR, wave_workflow_id
from models.plan import Elbv2WeightsTarget, LambdaAliasTarget, ReleasePlan, SsmParameterTarget
from models.policy import LOAD_POLICY
from models.preflight import PREFLIGHT
from models.status import ReleaseStatus
from tests import trust
from tests.reliability.aws_proxy import AwsProxy, Call, Hold
from workflows.release import ReleaseWorkflow

# The reads workflows run as local activities (workflows.steps.read).
LOCAL_ACTIVITIES = {CHECK_ALARMS, PREFLIGHT, LOAD_POLICY, RESOURCE_LOCKS}

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
READY_SECONDS = 60.0
# How long the driver waits for a release to reach a point before the test fails (with
# Temporal's real timeouts a killed activity attempt alone takes 5 minutes to expire).
REAL_TIMEOUTS = os.environ.get("RELMAN_RELIABILITY_REAL_TIMEOUTS", "") not in ("", "0")
POINT_SECONDS = 420.0 if REAL_TIMEOUTS else 120.0
POLL_SECONDS = 0.1
# The groups of the reliability plans' gates, as the organisation policy defines them;
# alice requests, members of ops operate.
APPROVER_GROUPS = {"cab": ["bob", "carol"], "ops": ["dave", "erin"]}
OPERATOR_GROUPS = ["ops"]


def policy_path(home: Path) -> Path:
    """The organisation policy of the reliability workers (RELMAN_POLICY): the test
    organisation's people and keys (tests.trust), with the reliability plans' groups."""
    import yaml

    path = home / "reliability-policy.yaml"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        data = trust.policy_data({p: trust.key_of(p) for p in trust.PEOPLE})
        data["groups"] = APPROVER_GROUPS
        data["applications"] = {
            "*": {
                "approvers": {"*": sorted(APPROVER_GROUPS)},
                "operator_groups": OPERATOR_GROUPS,
                "aws_accounts": ["123456789012"],
                "webhook_hosts": ["127.0.0.1", "localhost"],
            }
        }
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# Seeding shares one VPC and its subnets (client.demo_aws): one scenario seeds at a time.
_SEED_LOCK = threading.Lock()


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


async def eventually(
    check: Callable[[], Awaitable[Any]], what: str, timeout: float = POINT_SECONDS
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = await check()
        except (RPCError, RuntimeError, OSError) as exc:  # a server restarting, a worker gone
            last, value = exc, None
        if value:
            return value
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})")


# --- processes ---------------------------------------------------------------------------------


class Proc:
    """A child process in a session of its own, its output appended to a log file."""

    started: ClassVar[list[Proc]] = []  # every one, for the session's clean-up

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None):
        self.name, self.cmd, self.log, self.env = name, cmd, log, env
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        if not self.starts:
            Proc.started.append(self)
        self.starts += 1
        with open(self.log, "ab") as out:
            out.write(f"\n===== start #{self.starts} of {self.name} =====\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=ROOT,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the process and its children: no clean-up, no goodbye to Temporal."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self) -> None:
        if not self.alive:
            return
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class DevServer:
    """``temporal server start-dev`` on a SQLite file, restartable on the same file and port."""

    def __init__(self, home: Path, name: str):
        self.port = free_port()
        self.db = home / f"{name}.db"
        cmd = [
            find_binary("temporal"), "server", "start-dev", "--headless",
            "--ip", LOOPBACK, "--port", str(self.port),
            "--db-filename", str(self.db), "--log-level", "error",
        ]  # fmt: skip
        for key, kind in SEARCH_ATTRIBUTE_TYPES.items():
            cmd += ["--search-attribute", f"{key}={kind}"]
        self.proc = Proc(f"temporal {name}", cmd, home / f"{name}.log")
        self.kills = 0

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    async def start(self) -> None:
        self.proc.start()
        await eventually(self._ready, f"Temporal dev server on {self.address}", READY_SECONDS)

    async def _ready(self) -> bool:
        if not self.proc.alive:
            raise AssertionError(f"dev server exited:\n{self.proc.text()[-2000:]}")
        client = await Client.connect(self.address)
        await client.count_workflows()  # visibility answers once the server is up
        return True

    async def kill(self) -> None:
        self.proc.kill()
        self.kills += 1

    async def client(self) -> Client:
        return await Client.connect(self.address, data_converter=data_converter(keys_from_env()))

    def stop(self) -> None:
        self.proc.stop()


class MotoServer:
    """``moto_server``: the AWS endpoint (the test seeds and reads it directly)."""

    def __init__(self, home: Path):
        self.port = free_port()
        cmd = [find_binary("moto_server"), "-H", LOOPBACK, "-p", str(self.port)]
        self.proc = Proc("moto", cmd, home / "moto.log")

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def start(self) -> None:
        import urllib.request

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=2):
                return True

        self.proc.start()

        async def probe() -> bool:
            return await asyncio.to_thread(ready)

        await eventually(probe, "moto server", READY_SECONDS)

    def aws(self) -> AwsClients:
        return AwsClients(endpoint_url=self.endpoint, default_region="us-east-1", max_attempts=2)

    def stop(self) -> None:
        self.proc.stop()


@dataclass
class WorkerOptions:
    """How a crash-test worker shortens the waits a SIGKILL causes (see worker_process)."""

    attempt_seconds: float = 6.0
    sticky_seconds: float = 2.0
    # True: run ``python -m worker`` itself, with Temporal's and relman's real timeouts.
    real: bool = False


class WorkerProcess:
    """A relman worker process on its own task queue; killed and restarted by the driver."""

    def __init__(
        self,
        name: str,
        home: Path,
        temporal: DevServer,
        aws_endpoint: str,
        options: WorkerOptions | None = None,
        task_queue: str | None = None,
    ):
        self.name = name
        # Another worker's task queue: a second worker for the same releases.
        self.task_queue = task_queue or f"relman-reliability-{name}-{uuid.uuid4().hex[:8]}"
        self.temporal = temporal
        options = options or WorkerOptions()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TEMPORAL_"))}
        env.update(LOCAL_AWS_ENV)
        env.update(
            TEMPORAL_ADDRESS=temporal.address,
            TEMPORAL_NAMESPACE="default",
            RELMAN_AWS_ENDPOINT_URL=aws_endpoint,
            RELMAN_TASK_QUEUE=self.task_queue,
            RELMAN_HOME=str(home / "relman-home"),
            RELMAN_POLICY=str(policy_path(home)),
            # The policy's webhook hosts (127.0.0.1, localhost) are on this machine.
            RELMAN_WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8",
            # Many workers on one machine: none serves Prometheus metrics on the default port.
            RELMAN_METRICS_ADDRESS="off",
            PYTHONUNBUFFERED="1",
        )
        if options.real:
            module = "worker"
        else:
            module = "tests.reliability.worker_process"
            env["RELMAN_RELIABILITY_ATTEMPT_SECONDS"] = str(options.attempt_seconds)
            env["RELMAN_RELIABILITY_STICKY_SECONDS"] = str(options.sticky_seconds)
        self.proc = Proc(
            f"worker {name}", [sys.executable, "-m", module], home / f"{name}.log", env
        )
        self.kills = 0

    async def start(self) -> None:
        before = self.proc.text().count("polling task queue")
        self.proc.start()

        async def polling() -> bool:
            if not self.proc.alive:
                raise AssertionError(f"worker {self.name} exited:\n{self.proc.text()[-3000:]}")
            return self.proc.text().count("polling task queue") > before

        await eventually(polling, f"worker {self.name} to poll", READY_SECONDS)

    async def kill(self) -> None:
        self.proc.kill()
        self.kills += 1

    def stop(self) -> None:
        self.proc.stop()


# --- plans and AWS state -----------------------------------------------------------------------


def ssm(name: str, parameter: str, value: str) -> dict[str, Any]:
    return {"name": name, "kind": "ssm_parameter", "parameter": parameter, "value": value}


def lambda_alias(name: str, function: str, version: int) -> dict[str, Any]:
    return {
        "name": name, "kind": "lambda_alias", "function": function, "alias": "live",
        "version": str(version),
    }  # fmt: skip


def elbv2(name: str, balancer: str) -> dict[str, Any]:
    """Blue/green weights on a load balancer ``balancer`` (ARNs are bound when seeded)."""
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012"
    return {
        "name": name,
        "kind": "elbv2_weights",
        "listener_arn": f"{arn}:listener/app/{balancer}/0000000000000000/0000000000000000",
        "blue_target_group_arn": f"{arn}:targetgroup/{balancer}-blue/0000000000000000",
        "green_target_group_arn": f"{arn}:targetgroup/{balancer}-green/0000000000000000",
    }


def plan_data(
    release_id: str, targets: list[dict[str, Any]], waves: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": release_id,
        "application": "payments",
        "version": "7.0.0",
        "requested_by": "alice",
        "targets": targets,
        "waves": waves,
    }


@dataclass
class Seeded:
    """A plan whose resources exist in moto at their pre-release state."""

    plan: ReleasePlan
    path: Path
    before: dict[str, dict[str, Any] | None]
    ssm_versions: dict[str, int]


def seed_plan(data: dict[str, Any], aws: AwsClients, directory: Path) -> Seeded:
    """Create the plan's resources in moto; write the plan (bound to them) as YAML."""
    from client import demo_aws

    with _SEED_LOCK:
        bound = demo_aws.seed(parse_plan(data), aws)
    for target, spec in zip(bound.targets, data["targets"], strict=True):
        if isinstance(target, Elbv2WeightsTarget):
            spec["listener_arn"] = target.listener_arn
            spec["blue_target_group_arn"] = target.blue_target_group_arn
            spec["green_target_group_arn"] = target.green_target_group_arn
    path = directory / f"{data['id']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = parse_plan(data)
    before = demo_aws.describe(plan, aws)
    versions = {t.parameter: ssm_version_count(aws, t.parameter) for t in ssm_targets(plan)}
    return Seeded(plan, path, before, versions)


def ssm_targets(plan: ReleasePlan) -> list[SsmParameterTarget]:
    return [t for t in plan.targets if isinstance(t, SsmParameterTarget)]


def ssm_version_count(aws: AwsClients, parameter: str) -> int:
    pages = aws.client("ssm").get_paginator("get_parameter_history").paginate(Name=parameter)
    return sum(len(page["Parameters"]) for page in pages)


def deployed(seeded: Seeded) -> dict[str, dict[str, Any] | None]:
    """The full describe of every resource once the release completed (from ``before``)."""
    out: dict[str, dict[str, Any] | None] = {}
    for target in seeded.plan.targets:
        state = json.loads(json.dumps(seeded.before[target.name], default=str))
        assert state is not None
        if isinstance(target, SsmParameterTarget):
            state["Value"] = target.value
        elif isinstance(target, LambdaAliasTarget):
            state["FunctionVersion"] = target.version
            state["RoutingConfig"] = {"AdditionalVersionWeights": {}}
        elif isinstance(target, Elbv2WeightsTarget):
            weights = {target.blue_target_group_arn: 0, target.green_target_group_arn: 100}
            for action in state["DefaultActions"]:
                for group in (action.get("ForwardConfig") or {}).get("TargetGroups", []):
                    group["Weight"] = weights[group["TargetGroupArn"]]
        out[target.name] = state
    return out


def describe_now(seeded: Seeded, aws: AwsClients) -> dict[str, dict[str, Any] | None]:
    from client import demo_aws

    return json.loads(json.dumps(demo_aws.describe(seeded.plan, aws), default=str))


# --- the command line --------------------------------------------------------------------------


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


async def relman(*args: str, env: dict[str, str], timeout: float = 120) -> CliResult:
    """Run ``relman ARGS`` in its own process, as a user would: a decision is signed with
    the key of its ``--as`` person (else alice, who requests every reliability release)."""
    person = args[args.index("--as") + 1] if "--as" in args else "alice"
    signer = {"RELMAN_USER": "alice", "RELMAN_SSH_KEY": str(trust.key_of(person).path)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **signer, **env}, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())


# --- driving a release and killing its processes -----------------------------------------------


@dataclass
class Kill:
    """One process killed at one point of one release."""

    scenario: str
    point: str
    victim: str  # "worker" | "temporal"
    down_seconds: float = 0.0
    recovered_seconds: float | None = None


@dataclass
class Release:
    """A submitted release, the processes it runs on and what the driver did to them."""

    scenario: str
    seeded: Seeded
    server: DevServer
    worker: WorkerProcess
    proxy: AwsProxy
    home: Path
    client: Client
    kills: list[Kill] = field(default_factory=list)
    approvals_sent: list[tuple[str, str]] = field(default_factory=list)
    submitted: CliResult | None = None  # what `relman submit` answered

    @property
    def id(self) -> str:
        return self.seeded.plan.id

    @property
    def env(self) -> dict[str, str]:
        return {
            "TEMPORAL_ADDRESS": self.server.address,
            "TEMPORAL_NAMESPACE": "default",
            "RELMAN_TASK_QUEUE": self.worker.task_queue,
            "RELMAN_HOME": str(self.home / "relman-home"),
        }

    @property
    def handle(self) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(self.id)

    async def submit(self, refused: bool = False) -> CliResult:
        """``relman submit`` the plan: it prints the id, or with ``refused`` exits 1 (the
        worker refused the release, which changed nothing)."""
        result = await relman("submit", str(self.seeded.path), env=self.env)
        if refused:
            assert result.returncode == 1 and f"release {self.id} refused" in result.stderr, (
                result.returncode,
                result.stderr,
            )
        else:
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == self.id
        return result

    async def approve(self, wave: str, user: str, *options: str, reject: bool = False) -> CliResult:
        verb = "reject" if reject else "approve"
        comment = f"{verb}d in {self.scenario}"
        # A worker just restarted replays the release before it answers; on a loaded machine
        # that can outlast the CLI's default 30 s wait for a worker.
        waiting = () if "--wait-for-worker" in options else ("--wait-for-worker", "5m")
        result = await relman(verb, self.id, "--wave", wave, "--as", user, "--comment", comment,
                              *options, *waiting, "-o", "json", env=self.env,
                              timeout=420)  # fmt: skip
        assert result.returncode == 0, result.stderr
        self.approvals_sent.append((wave, user))
        return result

    async def status(self) -> ReleaseStatus:
        try:
            return await self.handle.query(ReleaseWorkflow.status)  # type: ignore[no-any-return]
        except Exception as err:
            if "Nondeterminism" in str(err):
                await self.keep_histories()
            raise

    async def keep_histories(self) -> Path:
        """Save the release's history and its waves' (JSON, as ``temporal workflow show``
        writes it) under ``home/histories``: a replay error is read from them."""
        kept = self.home / "histories"
        kept.mkdir(exist_ok=True)
        ids = [self.id]
        async for execution in self.client.list_workflows(
            f"WorkflowId STARTS_WITH '{self.id}{WAVE_ID_SEPARATOR}'"
        ):
            ids.append(execution.id)
        for workflow_id in ids:
            with contextlib.suppress(RPCError):
                history = await self.client.get_workflow_handle(workflow_id).fetch_history()
                (kept / f"{workflow_id}.json").write_text(history.to_json())
        print(f"relman reliability: histories of {self.id} kept in {kept}", flush=True)
        return kept

    async def until(self, what: str, predicate: Callable[[ReleaseStatus], bool]) -> ReleaseStatus:
        async def check() -> ReleaseStatus | None:
            st = await self.status()
            return st if predicate(st) else None

        return await eventually(check, f"{self.id}: {what}")  # type: ignore[no-any-return]

    async def running_activity(self, workflow_id: str, activity: str) -> bool:
        """True while an attempt of ``activity`` runs on a worker (pending, started); for a
        local activity, which the server does not see, while a workflow task is started
        (the local activity runs inside it)."""
        described = await self.client.get_workflow_handle(workflow_id).describe()
        if activity in LOCAL_ACTIVITIES:
            task = described.raw_description.pending_workflow_task
            return (
                described.raw_description.HasField("pending_workflow_task")
                and task.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED
            )
        return any(
            p.activity_type.name == activity
            and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            for p in described.raw_description.pending_activities
        )

    async def update_waiting(self) -> bool:
        """True while the release has a workflow task scheduled that no worker has taken
        (what an Update sent to a release without a running worker looks like)."""
        described = await self.handle.describe()
        task = described.raw_description.pending_workflow_task
        return bool(
            described.raw_description.HasField("pending_workflow_task")
            and task.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_SCHEDULED
        )

    async def history_length(self, workflow_id: str) -> int:
        described = await self.client.get_workflow_handle(workflow_id).describe()
        return int(described.raw_description.workflow_execution_info.history_length)

    def wave_id(self, wave: str, attempt: int = 1) -> str:
        return wave_workflow_id(self.id, wave, attempt)

    async def held(self, hold: Hold, activity: str, wave: str) -> Call:
        """Wait until ``hold`` caught its call and ``activity`` of ``wave`` is running."""
        arrived = await asyncio.to_thread(hold.arrived.wait, POINT_SECONDS)
        assert arrived, f"{self.id}: {hold.name} never reached AWS"
        workflow_id = self.id if wave == "" else self.wave_id(wave)
        await eventually(
            lambda: self.running_activity(workflow_id, activity),
            f"{self.id}: {activity} running in {workflow_id}",
        )
        assert hold.call is not None
        return hold.call

    async def kill_worker(
        self,
        point: str,
        hold: Hold | None = None,
        forward: bool = False,
        watch: str = "",
        dropped: Sequence[Hold] = (),
    ) -> Kill:
        """SIGKILL the worker now; settle ``hold`` (forward: the write lands; else it never
        arrives) and drop the calls ``dropped`` holds; start a new worker. ``watch``: a
        workflow whose history shows recovery."""
        baseline = await self.history_length(watch) if watch else 0
        started = time.monotonic()
        await self.worker.kill()
        if hold is not None:
            hold.forward() if forward else hold.drop()
        for other in dropped:
            other.drop()
        await self.worker.start()
        kill = Kill(self.scenario, point, "worker", time.monotonic() - started)
        self.kills.append(kill)
        if watch:
            await self._recovery(kill, watch, baseline, started)
        return kill

    async def kill_server(
        self, point: str, hold: Hold | None = None, forward: bool = False, watch: str = ""
    ) -> Kill:
        """SIGKILL the Temporal dev server; restart it on the same SQLite file and port."""
        baseline = await self.history_length(watch) if watch else 0
        started = time.monotonic()
        await self.server.kill()
        if hold is not None:
            hold.forward() if forward else hold.drop()
        await self.server.start()
        self.client = await self.server.client()
        kill = Kill(self.scenario, point, "temporal", time.monotonic() - started)
        self.kills.append(kill)
        if watch:
            await self._recovery(kill, watch, baseline, started)
        died = "" if self.worker.proc.alive else self.worker.proc.text()[-3000:]
        assert not died, f"the worker died while the Temporal server was down:\n{died}"
        return kill

    async def _recovery(self, kill: Kill, workflow_id: str, baseline: int, started: float) -> None:
        async def grew() -> bool:
            return await self.history_length(workflow_id) > baseline

        await eventually(grew, f"{self.id}: {workflow_id} to move on after {kill.point}")
        kill.recovered_seconds = time.monotonic() - started

    async def result_status(self) -> ReleaseStatus:
        """Wait for the end; the final status."""

        async def ended() -> ReleaseStatus | None:
            st = await self.status()
            return st if st.finished else None

        return await eventually(ended, f"{self.id} to end", POINT_SECONDS * 2)  # type: ignore[no-any-return]


# --- what must hold after a release, whatever was killed ---------------------------------------


def timeline_duplicates(status: ReleaseStatus) -> list[str]:
    """Timeline entries that appear more than once (same kind, wave, target, message)."""
    seen = Counter((e.kind, e.wave, e.target, e.message) for e in status.timeline)
    return [f"{kind} {wave} {target}: {msg} (x{n})" for (kind, wave, target, msg), n in
            seen.items() if n > 1]  # fmt: skip


def approval_problems(status: ReleaseStatus, sent: list[tuple[str, str]]) -> list[str]:
    """Every approval sent is recorded exactly once."""
    problems = []
    for wave in status.waves:
        recorded = Counter(a.approver for a in wave.approvals)
        expected = {user for w, user in sent if w == wave.name}
        if set(recorded) != expected:
            problems.append(f"wave {wave.name}: approvals {dict(recorded)}, sent {expected}")
        problems += [
            f"wave {wave.name}: {u} counted {n} times" for u, n in recorded.items() if n > 1
        ]
    return problems


def write_problems(proxy: AwsProxy, seeded: Seeded, rolled_back: bool) -> list[str]:
    """No state written twice to a resource; traffic only moved forward until a rollback."""
    problems = []
    counted = Counter((w.resource, w.state) for w in proxy.writes)
    problems += [f"{r} set to {s} {n} times" for (r, s), n in counted.items() if n > 1]
    for target in seeded.plan.targets:
        if isinstance(target, LambdaAliasTarget):
            writes = proxy.writes_to(f"lambda:{target.function}:{target.alias}")

            def share(state: str, target: LambdaAliasTarget = target) -> float:
                data = json.loads(state)
                if data["version"] == target.version and not data["weights"]:
                    return 100.0
                return float(data["weights"].get(target.version, 0)) * 100
        elif isinstance(target, Elbv2WeightsTarget):
            writes = proxy.writes_to(f"elbv2:{target.listener_arn}")

            def share(state: str, target: Elbv2WeightsTarget = target) -> float:
                return float(json.loads(state).get(target.green_target_group_arn, 0))
        else:
            continue
        shares = [share(w.state) for w in writes]
        forward = shares[:-1] if rolled_back and shares and shares[-1] == 0 else shares
        if any(b <= a for a, b in zip(forward, forward[1:], strict=False)):
            problems.append(f"{target.name}: traffic went {shares}")
    return problems
