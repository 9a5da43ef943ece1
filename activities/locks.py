"""Activities of resource locks: a plan's canonical resource keys, taking and letting go of
their lock workflows (update-with-start and signals through the Temporal client), and
whether a lock's holder still runs."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.aws import AwsClients
from models.locks import (
    LOCK_WORKFLOW,
    RELEASE_LOCKS,
    RELEASES_RUNNING,
    REQUEST_LOCKS,
    RESOURCE_LOCKS,
    AcquireLock,
    LockKey,
    LockState,
    ReleaseLock,
    ReleaseLocksInput,
    RequestLocksInput,
    ResourceLocks,
    ResourceLocksInput,
    RunningInput,
    RunningResult,
    lock_workflow_id,
)
from models.resources import plan_resource_keys


class LockActivities:
    """Resource locks through the Temporal client; keys resolved with the worker's AWS."""

    def __init__(self, client: Client, aws: AwsClients):
        self.client = client
        self.aws = aws
        self._account: str | None = None

    @activity.defn(name=RESOURCE_LOCKS)
    def resource_locks(self, input: ResourceLocksInput) -> ResourceLocks:
        """The plan's resources as canonical keys, in the order locks are taken: a
        resource spelled two ways (with or without the default region, a name or its ARN,
        a role into the worker's own account or none) is one key."""
        if self._account is None:
            sts = self.aws.client("sts", None)
            self._account = sts.get_caller_identity()["Account"]
        keys: dict[str, LockKey] = {}
        found = plan_resource_keys(
            input.plan, account=self._account, default_region=self.aws.region(None)
        )
        for target, resource_keys in found:
            for key in resource_keys:
                digest = key.digest()
                keys[digest] = LockKey(digest=digest, description=f"{target.resource} ({key})")
        return ResourceLocks(keys=[keys[d] for d in sorted(keys)])

    @activity.defn(name=REQUEST_LOCKS)
    async def request_locks(self, input: RequestLocksInput) -> None:
        """Ask the lock of each key (starting it if need be); each answers with a signal."""
        for key in input.keys:
            await self.client.start_workflow(
                LOCK_WORKFLOW,
                LockState(key=key),
                id=lock_workflow_id(key.digest),
                task_queue=activity.info().task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                start_signal="acquire",
                start_signal_args=[AcquireLock(release_id=input.release_id, queue=input.queue)],
                static_summary=f"lock of {key.description}",
            )

    @activity.defn(name=RELEASE_LOCKS)
    async def release_locks(self, input: ReleaseLocksInput) -> None:
        """Let go of every lock in ``input.digests`` (or leave its line); a lock that has
        ended already needs nothing."""
        for digest in input.digests:
            handle = self.client.get_workflow_handle(lock_workflow_id(digest))
            try:
                await handle.signal("release", ReleaseLock(release_id=input.release_id))
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise

    @activity.defn(name=RELEASES_RUNNING)
    async def releases_running(self, input: RunningInput) -> RunningResult:
        """Which of ``input.release_ids`` are still running."""
        running = []
        for release_id in input.release_ids:
            try:
                described = await self.client.get_workflow_handle(release_id).describe()
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    continue
                raise
            if described.status == WorkflowExecutionStatus.RUNNING:
                running.append(release_id)
        return RunningResult(running=running)

    def all(self) -> list:  # type: ignore[type-arg]
        return [self.resource_locks, self.request_locks, self.release_locks, self.releases_running]
