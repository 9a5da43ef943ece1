"""What the CLI asks of Temporal: start releases, query them, decide gates, list them.

Each function returns models; the command modules turn them into text or JSON.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from client.signer import sign_decision
from common.connection import task_queue, temporal
from common.errors import BadInput, CliError
from common.search_attributes import (
    SA_APPLICATION,
    SA_APPROVERS,
    SA_DEPARTMENTS,
    SA_PHASE,
    SA_REQUESTER,
    SA_TARGETS,
    SA_VERSION,
)
from models.messages import (
    DecisionInput,
    DecisionMessage,
    DecisionResult,
    OperatorResult,
    ReleaseInput,
    decision_payload,
)
from models.plan import ReleasePlan
from models.policy import LOAD_POLICY, Policy, PolicySnapshot
from models.signing import DecisionAction, DecisionPayload, SignedDecision, plan_digest
from models.status import (
    PendingApproval,
    ReleasePhase,
    ReleaseStatus,
    StatusRequest,
    TimelineEvent,
    TimelineRequest,
)
from workflows.release import ReleaseWorkflow
from workflows.release_state import overlap_queries, target_keys

T = TypeVar("T")
# While a release's workflow task is failing (a worker died holding it, say, until its
# timeout hands it to another worker) the server refuses its queries and Updates. A command
# keeps asking this long, in real seconds, before it gives up.
NOT_READY_PATIENCE = 60.0
# The memo key under which a release records the digest of its plan (set at submit): what
# every later decision signs, readable with no worker running.
PLAN_DIGEST_MEMO = "plan_digest"
# How the release's validators refuse a wave or target name it does not have: bad input.
_NAMES_NOTHING = re.compile(r"^release \S+ has no (wave|target) ")


class ReleaseSummary(BaseModel):
    """One line of ``relman list``."""

    release_id: str
    application: str | None
    version: str | None
    phase: str | None
    requested_by: str | None
    started_at: datetime | None
    status: str


class ApprovalWaiting(BaseModel):
    """A gate a given user may decide, in one release."""

    release_id: str
    application: str
    version: str
    requested_by: str
    pending: PendingApproval


def _handle(client: Client, release_id: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(release_id)


def _not_ready(exc: RPCError) -> bool:
    """The server's "Workflow Task in failed state": the release cannot answer just now."""
    return exc.status == RPCStatusCode.FAILED_PRECONDITION and "Workflow Task in failed state" in (
        exc.message or ""
    )


NOT_READY_MESSAGE = (
    "the release is not processing requests: its workflow task keeps failing (a worker "
    "died while running it, or no worker can run it; see the worker's log). Try again shortly"
)


async def _patiently(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, asked again with backoff while the release is not ready, up to
    ``NOT_READY_PATIENCE`` seconds; then the server's error is raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + NOT_READY_PATIENCE
    delay = 0.2
    while True:
        try:
            return await call()
        except RPCError as exc:
            if not _not_ready(exc) or loop.time() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def _known(release_id: str, call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await _patiently(call)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise BadInput(f"unknown release {release_id!r}") from None
        if _not_ready(exc):
            raise CliError(f"release {release_id}: {NOT_READY_MESSAGE}") from None
        raise CliError(f"release {release_id}: {exc.message}") from None


def start_search_attributes(plan: ReleasePlan) -> TypedSearchAttributes:
    """The visibility attributes a release starts with; the workflow keeps phase current."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(SA_APPLICATION, plan.application),
            SearchAttributePair(SA_VERSION, plan.version),
            SearchAttributePair(SA_REQUESTER, plan.requested_by),
            SearchAttributePair(SA_PHASE, ReleasePhase.PENDING.value),
            SearchAttributePair(SA_APPROVERS, []),
            SearchAttributePair(SA_DEPARTMENTS, sorted({w.department for w in plan.waves})),
            SearchAttributePair(SA_TARGETS, target_keys(plan)),
        ]
    )


async def overlapping_releases(client: Client, plan: ReleasePlan) -> list[ReleaseSummary]:
    """Running releases that deploy at least one of the plan's resources.

    Visibility is eventually consistent: two submissions within a second of each other may
    both pass this check. The release itself checks again once it is visible (the later of
    two overlapping releases fails, or queues with ``queue: true``).
    """
    queries = overlap_queries(plan, SA_APPLICATION.name, SA_TARGETS.name)
    found: dict[str, ReleaseSummary] = {}
    for query in queries:
        async for execution in client.list_workflows(query):
            if execution.id != plan.id:
                found[execution.id] = _summary(execution)
    return list(found.values())


def submission(plan: ReleasePlan, key: Path) -> SignedDecision:
    """The requester's signed submission of ``plan``, signed now with ``key``."""
    payload = DecisionPayload(
        release_id=plan.id,
        plan_digest=plan_digest(plan),
        action="submit",
        actor=plan.requested_by,
        issued_at=datetime.now(UTC),
    )
    return sign_decision(payload, key)


async def submit(plan: ReleasePlan, key: Path, queue: str | None = None) -> str:
    """Start the release, its submission signed by the requester with ``key``; its id is
    the plan's id, usable once only (an audit trail).

    A running release that deploys one of the same resources blocks the submission, or,
    with ``queue: true`` in the plan, the new release waits for it to end.
    """
    signed = await asyncio.to_thread(submission, plan, key)
    async with temporal() as client:
        try:
            overlapping = await overlapping_releases(client, plan)
        except RPCError as exc:
            # Temporal's time-skipping test server has no visibility: nothing to check there.
            if exc.status != RPCStatusCode.UNIMPLEMENTED:
                raise CliError(f"cannot check for overlapping releases: {exc.message}") from None
            overlapping = []
        if overlapping and not plan.queue:
            names = ", ".join(
                f"{r.release_id} ({r.application} {r.version}, {r.phase})" for r in overlapping
            )
            raise CliError(
                f"release {plan.id} deploys resources that running release(s) {names} also "
                "deploy; wait for them to end, or set `queue: true` in the plan to queue "
                "behind them"
            )
        try:
            await client.start_workflow(
                ReleaseWorkflow.run,
                ReleaseInput(
                    plan=plan,
                    queued_behind=[r.release_id for r in overlapping],
                    submission=signed,
                ),
                id=plan.id,
                task_queue=queue or task_queue(),
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=start_search_attributes(plan),
                static_summary=f"{plan.application} {plan.version} by {plan.requested_by}",
                memo={PLAN_DIGEST_MEMO: signed.payload.plan_digest},
            )
        except WorkflowAlreadyStartedError:
            raise CliError(
                f"release id {plan.id!r} is already used by another release; give the plan a new id"
            ) from None
        except RPCError as exc:
            raise CliError(f"could not start release {plan.id}: {exc.message}") from None
    return plan.id


# Events per timeline page ``relman history`` asks for (each page is one query).
TIMELINE_PAGE = 500


async def _status_query(
    handle: WorkflowHandle[Any, Any], timeline_tail: int | None
) -> ReleaseStatus:
    """The status query, with only the latest ``timeline_tail`` events when given.

    A worker older than the ``timeline_tail`` argument refuses it: it is asked again
    without, as it was before.
    """
    if timeline_tail is None:
        return await handle.query(ReleaseWorkflow.status)
    try:
        return await handle.query(
            ReleaseWorkflow.status, StatusRequest(timeline_tail=timeline_tail)
        )
    except WorkflowQueryFailedError:
        return await handle.query(ReleaseWorkflow.status)


async def status(release_id: str, timeline_tail: int | None = None) -> ReleaseStatus:
    """The release's status query (its latest ``timeline_tail`` events only, when given)."""
    async with temporal() as client:
        handle = _handle(client, release_id)
        return await _known(release_id, lambda: _status_query(handle, timeline_tail))


# What ends a release's start: checked, refused, or waiting in line for a lock.
START_EVENTS = ("preflight", "refused", "queued")


async def started(release_id: str, limit: float) -> ReleaseStatus | None:
    """The release's status once its worker has decided whether it starts (its AWS
    preflight passed, it was refused, or it queues behind another release); None if that
    did not happen within ``limit`` seconds (no worker polling its task queue?)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    async with temporal() as client:
        handle = _handle(client, release_id)
        while True:
            try:
                current = await _status_query(handle, 20)
            except RPCError:  # no workflow task yet (no worker): keep waiting
                current = None
            if current is not None and (
                current.finished_at is not None
                or any(e.kind in START_EVENTS for e in current.timeline)
            ):
                return current
            if loop.time() > deadline:
                return None
            await asyncio.sleep(0.3)


async def history(release_id: str) -> ReleaseStatus:
    """The release's status with its complete timeline, fetched page by page so that a
    release of any size stays under the server's message size limits."""
    async with temporal() as client:
        handle = _handle(client, release_id)
        current = await _known(release_id, lambda: _status_query(handle, 0))
        if current.timeline_total is None:  # a worker without the timeline query
            return await _known(release_id, lambda: _status_query(handle, None))
        events: list[TimelineEvent] = []
        while True:
            page = await _known(
                release_id,
                lambda: handle.query(
                    ReleaseWorkflow.timeline,
                    TimelineRequest(offset=len(events), limit=TIMELINE_PAGE),
                ),
            )
            events.extend(page.events)
            if not page.events or len(events) >= page.total:
                return current.model_copy(update={"timeline": events, "timeline_total": None})


async def policies_of(release_id: str) -> list[Policy]:
    """Every organisation policy version the release ran under, from its Temporal history:
    the results of its ``load_policy`` activity that carried a policy (each change)."""
    async with temporal() as client:
        handle = _handle(client, release_id)

        async def collect() -> list[Policy]:
            loads: set[int] = set()
            found: dict[str, Policy] = {}
            async for event in handle.fetch_history_events():
                if event.HasField("activity_task_scheduled_event_attributes"):
                    scheduled = event.activity_task_scheduled_event_attributes
                    if scheduled.activity_type.name == LOAD_POLICY:
                        loads.add(event.event_id)
                elif event.HasField("activity_task_completed_event_attributes"):
                    done = event.activity_task_completed_event_attributes
                    if done.scheduled_event_id not in loads or not done.result.payloads:
                        continue
                    [snapshot] = await client.data_converter.decode(
                        done.result.payloads, [PolicySnapshot]
                    )
                    if snapshot.policy is not None:
                        found[snapshot.digest] = snapshot.policy
            return list(found.values())

        return await _known(release_id, collect)


async def watch(
    release_id: str,
    on_status: Callable[[ReleaseStatus], None],
    interval: float,
    timeline_tail: int | None = None,
) -> ReleaseStatus:
    """Call ``on_status`` with fresh status until the release ends."""
    async with temporal() as client:
        handle = _handle(client, release_id)
        while True:
            current = await _known(release_id, lambda: _status_query(handle, timeline_tail))
            on_status(current)
            if current.finished:
                return current
            await asyncio.sleep(interval)


async def release_plan_digest(handle: WorkflowHandle[Any, Any]) -> str:
    """The digest of the plan the release runs: its memo (set at submit, readable with no
    worker running), else its status."""
    described = await handle.describe()
    digest = await described.memo_value(PLAN_DIGEST_MEMO, None)
    if not digest:
        digest = (await _status_query(handle, 0)).plan_digest
    if not digest:
        raise CliError(
            f"release {handle.id} does not record the digest of its plan, so no decision "
            "on it can be signed (it was started by a relman without signed decisions)"
        )
    return str(digest)


async def _signed(
    handle: WorkflowHandle[Any, Any], action: DecisionAction, arg: DecisionMessage, key: Path
) -> DecisionMessage:
    """``arg`` carrying its actor's signature of ``action`` on the release, made now."""
    digest = await _known(handle.id, lambda: release_plan_digest(handle))
    payload = decision_payload(
        action, arg, release_id=handle.id, plan_digest=digest, issued_at=datetime.now(UTC)
    )
    signed = await asyncio.to_thread(sign_decision, payload, key)
    return arg.model_copy(update={"signed": signed})


async def _update(
    release_id: str,
    update: Any,
    action: DecisionAction,
    arg: DecisionMessage,
    key: Path,
    what: str,
    update_id: str | None = None,
) -> Any:
    """Sign ``arg`` for ``action`` with ``key`` and send it as an Update; a refusal by its
    validator becomes a CLI error naming ``what``."""
    from temporalio.client import WorkflowUpdateFailedError

    async with temporal() as client:
        handle = _handle(client, release_id)
        signed = await _signed(handle, action, arg, key)
        try:
            return await _patiently(lambda: handle.execute_update(update, signed, id=update_id))
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            message = getattr(cause, "message", None) or str(cause or exc)
            if _NAMES_NOTHING.search(message):  # a wave or target the release does not have
                raise BadInput(f"cannot {what} {release_id}: {message}") from None
            raise CliError(f"cannot {what} {release_id}: {message}") from None
        except RPCError as exc:
            # The server answers an Update to a closed workflow before any validator runs.
            try:
                described = await handle.describe()
            except RPCError:
                raise BadInput(f"unknown release {release_id!r}") from None
            if described.status != WorkflowExecutionStatus.RUNNING:
                phase = (described.typed_search_attributes.get(SA_PHASE) or "").strip()
                ended = f" ({phase})" if phase else ""
                raise CliError(
                    f"cannot {what} {release_id}: the release has already ended{ended}"
                ) from None
            message = NOT_READY_MESSAGE if _not_ready(exc) else exc.message
            raise CliError(f"cannot {what} {release_id}: {message}") from None


async def decide(
    release_id: str, wave: str, user: str, comment: str, approve: bool, key: Path
) -> DecisionResult:
    """Approve or reject a wave's gate as ``user``, signed with ``key``.

    The update id is derived from release, wave, user and decision, so a retried command
    (after a timeout, say) is applied once.
    """
    verb: DecisionAction = "approve" if approve else "reject"
    return await _update(
        release_id,
        ReleaseWorkflow.approve if approve else ReleaseWorkflow.reject,
        verb,
        DecisionInput(wave=wave, approver=user, comment=comment),
        key,
        f"{verb} wave {wave!r} of",
        update_id=f"{verb}:{wave}:{user}",
    )


# Operator actions: the Update each sends, the action its actor signs, how an error names it.
OPERATIONS: dict[str, tuple[Any, DecisionAction, str]] = {
    "pause": (ReleaseWorkflow.pause, "pause", "pause"),
    "resume": (ReleaseWorkflow.resume, "resume", "resume"),
    "abort": (ReleaseWorkflow.abort, "abort", "abort"),
    "add_freeze": (ReleaseWorkflow.add_freeze, "freeze_add", "add a freeze to"),
    "override_window": (ReleaseWorkflow.override_window, "override_window", "override a window of"),
    "retry": (ReleaseWorkflow.retry, "retry", "retry"),
    "rollback": (ReleaseWorkflow.rollback, "rollback", "roll back"),
    "skip_target": (ReleaseWorkflow.skip_target, "skip_target", "skip a target of"),
}


async def operate(
    release_id: str, operation: str, arg: DecisionMessage, key: Path
) -> OperatorResult:
    """Run an operator action (pause, abort, override_window, ...) on a release, signed
    by its actor with ``key``."""
    update, action, what = OPERATIONS[operation]
    return await _update(release_id, update, action, arg, key, what)


def _summary(execution: Any) -> ReleaseSummary:
    sa = execution.typed_search_attributes
    return ReleaseSummary(
        release_id=execution.id,
        application=sa.get(SA_APPLICATION),
        version=sa.get(SA_VERSION),
        phase=sa.get(SA_PHASE),
        requested_by=sa.get(SA_REQUESTER),
        started_at=execution.start_time,
        status=(execution.status or WorkflowExecutionStatus.RUNNING).name.lower(),
    )


def _query(filters: dict[str, str | None], running_only: bool = False) -> str:
    clauses = ["WorkflowType = 'ReleaseWorkflow'"]
    for attribute, value in filters.items():
        if value:
            escaped = value.replace("'", "\\'")
            clauses.append(f"{attribute} = '{escaped}'")
    if running_only:
        clauses.append("ExecutionStatus = 'Running'")
    return " AND ".join(clauses)


async def list_releases(
    application: str | None = None,
    phase: str | None = None,
    department: str | None = None,
    limit: int = 200,
) -> list[ReleaseSummary]:
    """Releases through Temporal visibility, newest first."""
    query = _query(
        {
            SA_APPLICATION.name: application,
            SA_PHASE.name: phase,
            SA_DEPARTMENTS.name: department,
        }
    )
    async with temporal() as client:
        out = []
        try:
            async for execution in client.list_workflows(query, limit=limit):
                out.append(_summary(execution))
        except RPCError as exc:
            raise CliError(f"cannot list releases: {exc.message}") from None
        return out


async def approvals_for(user: str) -> list[ApprovalWaiting]:
    """Gates across running releases that ``user`` may decide now."""
    query = _query({SA_APPROVERS.name: user}, running_only=True)
    async with temporal() as client:
        found = []
        try:
            ids = [e.id async for e in client.list_workflows(query)]
        except RPCError as exc:
            raise CliError(f"cannot list releases: {exc.message}") from None
        for release_id in ids:
            try:
                st = await _status_query(_handle(client, release_id), 0)
            except RPCError:
                continue  # ended between the listing and the query
            for pending in st.pending_approvals:
                if user in pending.eligible_approvers:
                    found.append(
                        ApprovalWaiting(
                            release_id=st.release_id,
                            application=st.application,
                            version=st.version,
                            requested_by=st.requested_by,
                            pending=pending,
                        )
                    )
        return found
