"""Activities of resource locks: a plan's canonical resource keys, taking and letting go of
their lock workflows (update-with-start and signals through the Temporal client), and
whether a lock's holder still runs."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from temporalio import activity
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.aws import AwsClients
from activities.errors import aws_call
from models.locks import (
    LOCK_WORKFLOW,
    RELEASE_LOCKS,
    RELEASES_RUNNING,
    REQUEST_LOCKS,
    RESOURCE_LOCKS,
    AcquireLock,
    LockAnswer,
    LockAnswers,
    LockKey,
    LockState,
    ReleaseLock,
    ReleaseLocksInput,
    RequestLocksInput,
    ResourceLocks,
    ResourceLocksInput,
    RunningInput,
    RunningResult,
    lock_keys,
    lock_workflow_id,
)

# How many locks one release asks (or lets go) at once, and how often it looks for a lock's answer.
REQUESTS_AT_ONCE = 16
ANSWER_POLL_SECONDS = 0.02
# The first Temporal server release with update-with-start generally available.
UPDATE_WITH_START_SINCE = (1, 28)


class LockActivities:
    """Resource locks through the Temporal client; keys resolved with the worker's AWS."""

    def __init__(self, client: Client, aws: AwsClients):
        self.client = client
        self.aws = aws
        self._account: str | None = None
        self._update_with_start: bool | None = None  # asked of the server once

    @activity.defn(name=RESOURCE_LOCKS)
    def resource_locks(self, input: ResourceLocksInput) -> ResourceLocks:
        """The plan's resources as canonical keys, in the order locks are taken: a
        resource spelled two ways (with or without the default region, a name or its ARN,
        a role into the worker's own account or none) is one key."""
        if self._account is None:
            with aws_call("sts:GetCallerIdentity", "the worker's AWS credentials"):
                self._account = self.aws.client("sts", None).get_caller_identity()["Account"]
        return lock_keys(input.plan, account=self._account, region=self.aws.region(None))

    @activity.defn(name=REQUEST_LOCKS)
    async def request_locks(self, input: RequestLocksInput) -> LockAnswers:
        """Ask the lock of each key (starting it if need be) and read its answer; the locks
        are asked side by side, a few at a time."""
        ask = asyncio.Semaphore(REQUESTS_AT_ONCE)

        async def one(key: LockKey) -> LockAnswer:
            async with ask:
                if await self._take_free(key, input.release_id):
                    return LockAnswer(digest=key.digest, granted=True)
                if await self._supports_update_with_start():
                    answered = await self._request(key, input)
                    if answered is not None:
                        return answered
                handle = await self.client.start_workflow(
                    LOCK_WORKFLOW,
                    LockState(key=key),
                    id=lock_workflow_id(key.digest),
                    task_queue=activity.info().task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    start_signal="acquire",
                    start_signal_args=[AcquireLock(release_id=input.release_id, queue=input.queue)],
                    static_summary=f"lock of {key.description}",
                )
                while True:
                    answer: LockAnswer | None = await handle.query(
                        "answer",
                        input.release_id,
                        result_type=LockAnswer | None,  # type: ignore[arg-type]
                    )
                    if answer is not None:
                        return answer
                    activity.heartbeat(key.digest)
                    await asyncio.sleep(ANSWER_POLL_SECONDS)

        return LockAnswers(answers=list(await asyncio.gather(*(one(k) for k in input.keys))))

    async def _take_free(self, key: LockKey, release_id: str) -> bool:
        """Take the lock of ``key`` if no lock workflow runs for it: start one that already
        names ``release_id`` as its holder. The server allows one running workflow per id,
        so of two releases starting it at once one wins; the other (and any asker while
        the lock runs) is told it is already started and asks the running lock instead.
        One server round trip, with no workflow task on the way to the answer."""
        try:
            await self.client.start_workflow(
                LOCK_WORKFLOW,
                LockState(key=key, holder=release_id),
                id=lock_workflow_id(key.digest),
                task_queue=activity.info().task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                static_summary=f"lock of {key.description}",
            )
        except WorkflowAlreadyStartedError:
            return False
        return True

    async def _supports_update_with_start(self) -> bool:
        """Whether the server has update-with-start (Temporal 1.28 and later; the
        time-skipping test server, which names no version, has not)."""
        if self._update_with_start is None:
            info = await self.client.workflow_service.get_system_info(GetSystemInfoRequest())
            version = tuple(int(p) for p in re.findall(r"\d+", info.server_version)[:2])
            self._update_with_start = version >= UPDATE_WITH_START_SINCE
        return self._update_with_start

    async def _request(self, key: LockKey, input: RequestLocksInput) -> LockAnswer | None:
        """Ask the lock of ``key`` by update-with-start: its answer in one round trip; None
        (and never again) where the server does not support it (the time-skipping test
        server answers UNIMPLEMENTED), so the caller signals and polls instead."""
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            LOCK_WORKFLOW,
            LockState(key=key),
            id=lock_workflow_id(key.digest),
            task_queue=activity.info().task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"lock of {key.description}",
        )
        try:
            return await self.client.execute_update_with_start_workflow(
                "request",
                AcquireLock(release_id=input.release_id, queue=input.queue),
                start_workflow_operation=start,
                result_type=LockAnswer,
            )
        except RPCError as err:
            if err.status != RPCStatusCode.UNIMPLEMENTED:
                raise
            self._update_with_start = False
            return None

    @activity.defn(name=RELEASE_LOCKS)
    async def release_locks(self, input: ReleaseLocksInput) -> None:
        """Let go of every lock in ``input.digests`` (or leave its line), a few side by
        side; a lock that has ended already needs nothing."""
        signal = asyncio.Semaphore(REQUESTS_AT_ONCE)

        async def one(digest: str) -> None:
            handle = self.client.get_workflow_handle(lock_workflow_id(digest))
            try:
                async with signal:
                    await handle.signal("release", ReleaseLock(release_id=input.release_id))
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise

        await asyncio.gather(*(one(d) for d in input.digests))

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
