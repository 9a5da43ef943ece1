"""Build and run a relman worker against any Temporal (dev server, cluster, Cloud)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.aws import AwsClients
from activities.checks import CheckActivities
from activities.fleet import FleetActivities
from activities.health import HealthActivities
from activities.jobs import JobActivities
from activities.locks import LockActivities
from activities.notify import NotifyActivities, defaults_from_env
from activities.policy import POLICY_ENV, PolicyActivities, PolicyReader, read_policy
from activities.policy import policy_source as configured_policy_source
from activities.preflight import PreflightActivities
from activities.release import TargetActivities
from activities.webhook_addresses import IPNetwork, allowed_networks_from_env
from common.codec import KEY_FILE_ENV, KEYS_ENV, KMS_KEYS_ENV, EncryptionCodec
from common.connection import connect_config, task_queue, temporal
from common.errors import BadInput, CliError
from common.stack_state import DEV_WORKER_ENV, StackConfig, read_state
from models.plan import Notifications
from models.policy import PolicyError
from worker import telemetry
from worker.dev_stack import StackWorker, stack_worker
from worker.failures import CompactFailures
from worker.sandbox import SANDBOX
from workflows.lock import ResourceLockWorkflow
from workflows.release import ReleaseWorkflow
from workflows.wave import WaveWorkflow

# boto3 calls block, so activities run on threads; AWS latency, not CPU, bounds them.
ACTIVITY_THREADS = 32
# Workflow-task long polls. The SDK's core gives the task queue itself polls x ratio of them
# (at least 1) and this worker's sticky queue the rest (at least 1): here 10 and 1. The first
# task of every new workflow (each wave, as soon as its gate is approved) only ever arrives
# on the task queue; the SDK's defaults (5 polls, ratio 0.2) leave it one poll while cached
# workflows' tasks get four. Measured against other splits in docs/benchmarks.md.
WORKFLOW_TASK_POLLS = 10
NONSTICKY_TO_STICKY_POLL_RATIO = 1.0
# A workflow task left on a dead worker's sticky queue moves to the shared queue after this
# long (the SDK's default is 10 s): after a worker dies mid-wave, the wave's next task
# reaches another worker within seconds. A live worker picks its sticky tasks up in
# milliseconds, so this costs a replay only when a worker is gone or badly overloaded.
STICKY_TASK_TIMEOUT = timedelta(seconds=4)
# Activities report progress in their heartbeats (targets applied, checks' probes, each
# fleet instance's result), which `relman status` reads; the SDK sends a heartbeat at most
# this often (else 80 % of the heartbeat timeout: 24 s for a fleet's command), so what
# status shows is at most this old. Only activities that heartbeat send anything.
HEARTBEAT_SENT_EVERY = timedelta(seconds=2)

# How many workflows (releases, waves, locks) a worker keeps in memory between their tasks.
# A cached workflow's next task (an approval, a timer) runs at once on this worker; one
# evicted to make room, or never cached, replays its history first (docs/benchmarks.md
# measures both). Releases parked for days need no place in the cache: a bound keeps a
# worker's memory flat however many are in flight.
MAX_CACHED_WORKFLOWS_ENV = "RELMAN_WORKER_MAX_CACHED_WORKFLOWS"
DEFAULT_MAX_CACHED_WORKFLOWS = 1000

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
log = logging.getLogger("relman.worker")

NO_POLICY = (
    "no organisation policy: set RELMAN_POLICY (a file, s3://bucket/key or ssm:/name), "
    "or RELMAN_DEV_WORKER=1 for a development worker"
)


def worker_policy_source(env: Mapping[str, str] | None = None) -> str:
    """Where this worker reads the organisation policy: ``RELMAN_POLICY``; for a worker
    told it is a dev worker (``RELMAN_DEV_WORKER=1``) without it, the dev policy that
    ``relman dev up`` wrote under ``RELMAN_HOME``. Anything else is refused: a worker
    without a policy would have nobody to trust."""
    env = os.environ if env is None else env
    source = configured_policy_source(dict(env))
    if source is not None:
        return source
    if env.get(DEV_WORKER_ENV, "").strip() != "1":
        raise BadInput(NO_POLICY)
    dev = StackConfig.from_env().dev_policy_path
    if not dev.is_file():
        raise BadInput(
            f"{DEV_WORKER_ENV}=1 but there is no dev policy at {dev}: run `relman dev up` "
            f"(it writes one), or set {POLICY_ENV}"
        )
    return str(dev)


def check_policy(source: str, aws: AwsClients, env: Mapping[str, str] | None = None) -> None:
    """Read the policy once before polling, so a worker with a broken or misplaced policy
    stops at once with the reason; a dev policy is refused unless this is a dev worker."""
    env = os.environ if env is None else env
    try:
        policy = read_policy(source, aws)
    except PolicyError as exc:
        raise BadInput(f"organisation policy: {exc}") from None
    except Exception as exc:  # AWS errors as activities.errors maps them
        raise CliError(f"cannot read the organisation policy at {source}: {exc}") from None
    if policy.dev and env.get(DEV_WORKER_ENV, "").strip() != "1":
        raise BadInput(
            f"{source} is a dev policy (written by `relman dev up`): a worker runs under it "
            f"only with {DEV_WORKER_ENV}=1"
        )
    log.info("organisation policy %s (%s) from %s", policy.version, policy.digest, source)


def max_cached_workflows(env: Mapping[str, str] | None = None) -> int:
    """``RELMAN_WORKER_MAX_CACHED_WORKFLOWS``, else 1,000 (the SDK's own default); ``0``
    keeps none (every task replays its workflow's history: a worker for tests of replay
    only). Anything but a whole number is refused, naming the setting."""
    env = os.environ if env is None else env
    raw = env.get(MAX_CACHED_WORKFLOWS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_CACHED_WORKFLOWS
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise BadInput(
            f"{MAX_CACHED_WORKFLOWS_ENV}={raw!r}: expected a whole number of workflows "
            f"(0 or more; default {DEFAULT_MAX_CACHED_WORKFLOWS})"
        )
    return value


def build_worker(
    client: Client,
    queue: str,
    aws: AwsClients,
    executor: concurrent.futures.ThreadPoolExecutor,
    notify_defaults: Notifications | None = None,
    *,
    policy_source: str | None = None,
    stand_ins: Sequence[Callable[..., Any]] = (),
    webhook_networks: Sequence[IPNetwork] = (),
    **options: Any,
) -> Worker:
    """A worker for ``queue`` running releases whose activities use ``aws``.

    ``policy_source`` is where the organisation policy lives (``RELMAN_POLICY``: a file,
    ``s3://bucket/key`` or ``ssm:/name``); without one, releases cannot start.
    ``notify_defaults`` is where notifications of plans without a ``notifications`` section
    go (none: they are not sent); a plan's own webhook may reach public addresses and those
    in ``webhook_networks`` (``RELMAN_WEBHOOK_ALLOW_NETWORKS``). ``stand_ins`` replace the
    activities of the same function name (tests: an activity that hangs or crashes);
    ``options`` go to ``Worker`` as they are.
    """
    replaced = {fn.__name__ for fn in stand_ins}
    # The worker's default webhook is the platform team's: its address is not checked.
    own_webhook = (
        [notify_defaults.webhook_url] if notify_defaults and notify_defaults.webhook_url else []
    )
    reader = PolicyReader(policy_source, aws) if policy_source is not None else None
    if reader is not None:
        # Activities check each role against the policy in force before assuming it.
        aws = aws.checked_by(reader.role_refusal)
    activities = [
        *TargetActivities(aws).all(),
        *HealthActivities(aws).all(),
        *CheckActivities(aws.for_purpose("checks"), webhook_networks).all(),
        *JobActivities(aws.for_purpose("jobs")).all(),
        *FleetActivities(aws).all(),
        *PreflightActivities(aws.for_purpose("preflight"), webhook_networks, own_webhook).all(),
        *LockActivities(client, aws).all(),
        *NotifyActivities(
            aws, notify_defaults, webhook_networks=webhook_networks, policy=reader
        ).all(),
    ]
    if policy_source is not None:
        activities.append(PolicyActivities(policy_source, aws).load_policy)
    tuning: dict[str, Any] = {
        "max_concurrent_workflow_task_polls": WORKFLOW_TASK_POLLS,
        "nonsticky_to_sticky_poll_ratio": NONSTICKY_TO_STICKY_POLL_RATIO,
        "sticky_queue_schedule_to_start_timeout": STICKY_TASK_TIMEOUT,
        "max_heartbeat_throttle_interval": HEARTBEAT_SENT_EVERY,
    }
    return Worker(
        client,
        task_queue=queue,
        workflows=[ReleaseWorkflow, WaveWorkflow, ResourceLockWorkflow],
        workflow_runner=SANDBOX,
        activities=[*(a for a in activities if a.__name__ not in replaced), *stand_ins],
        activity_executor=executor,
        max_concurrent_activities=ACTIVITY_THREADS,
        interceptors=[*telemetry.worker_interceptors(client), CompactFailures()],
        **(tuning | options),
    )


def beside_dev_stack() -> StackWorker | None:
    """How this worker's environment changes when its Temporal is the dev stack's (see
    ``worker.dev_stack``); None for any other Temporal. Refuses (``BadInput``) settings
    that would send the AWS calls of a worker of the stack anywhere but the stack's AWS."""
    try:
        target_host = str(connect_config()["target_host"])
    except (OSError, ValueError, RuntimeError) as exc:  # e.g. a profile's TLS file is missing
        raise CliError(f"invalid Temporal client configuration: {exc}") from None
    config = StackConfig.from_env()
    return stack_worker(os.environ, target_host, config, read_state(config))


async def run_worker(queue: str | None = None) -> None:
    """Connect through Temporal's standard configuration and run until SIGINT/SIGTERM; a
    worker of the dev stack runs with the stack's AWS and settings (``worker.dev_stack``)."""
    stack = beside_dev_stack()
    if stack is None:
        await _run_worker(queue)
        return
    with stack.applied():
        log.info("%s", stack.describe())
        await _run_worker(queue)


async def _run_worker(queue: str | None) -> None:
    try:
        notify_defaults = defaults_from_env()
        webhook_networks = allowed_networks_from_env()
        cache = max_cached_workflows()
    except ValueError as exc:
        raise BadInput(f"worker configuration: {exc}") from None
    source = worker_policy_source()
    aws = AwsClients.from_env()
    check_policy(source, aws)
    runtime = telemetry.configure_worker()
    queue = queue or task_queue()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # A Temporal that does not answer is a message naming its address, not a traceback.
    async with temporal(runtime) as client:
        with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
            worker = build_worker(
                client,
                queue,
                aws,
                executor,
                notify_defaults,
                policy_source=source,
                webhook_networks=webhook_networks,
                max_cached_workflows=cache,
            )
            codec = client.data_converter.payload_codec
            if isinstance(codec, EncryptionCodec):
                keys = codec.keys
                log.info("payloads encrypted with key %r from %s", keys.current, keys.source)
            else:
                log.warning(
                    "payloads are NOT encrypted: Temporal's history holds plans, snapshots "
                    "and settings in clear (set %s, %s or %s)",
                    KEYS_ENV,
                    KEY_FILE_ENV,
                    KMS_KEYS_ENV,
                )
            log.info(
                "relman worker polling task queue %r, keeping up to %d workflows cached",
                queue,
                cache,
            )
            async with worker:
                await stop.wait()
    log.info("relman worker stopped")


def main() -> None:
    """Entry point of ``python -m worker``: errors are one line and an exit code."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        asyncio.run(run_worker())
    except CliError as exc:
        log.error("%s", exc)
        raise SystemExit(exc.exit_code) from None
