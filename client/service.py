"""What the CLI asks of Temporal: start releases, query them, decide gates, list them.

Each function returns models; the command modules turn them into text or JSON.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from client.progress import with_running_progress
from client.replay import ReplayFailed, replayed_status
from client.signer import sign_decision
from client.workers import TaskQueuePolls, seconds, task_queue_polls, worker_wait
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
from models.durations import format_duration
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
from models.signing import (
    DEFAULT_MAX_SKEW,
    DecisionAction,
    DecisionPayload,
    SignedDecision,
    plan_digest,
)
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

# The marker the SDK records for each local activity's outcome.
LOCAL_ACTIVITY_MARKER = "core_local_activity"

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
# A Query that checks whether a worker answers for a release gets at least this long.
QUERY_FLOOR_SECONDS = 1.0
# How often a command waiting for a worker looks again.
WORKER_CHECK_INTERVAL = 0.5
# A worker that has just answered gets at least this long to take a decision, and to
# return its outcome once it has, however little of the wait is left.
ACCEPT_FLOOR_SECONDS = 5.0
# --queue-until-worker: how long a decision waits for a worker to take it at once.
QUEUE_SEND_SECONDS = 5.0


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


class Unreadable(BaseModel):
    """A release the command could not ask, and why."""

    release_id: str
    reason: str


class VisibleRelease(BaseModel):
    """What Temporal knows of a running release without a worker: its search attributes
    (kept current by the release as it goes), its memo and its task queue's last poll."""

    release_id: str
    status: str
    application: str | None
    version: str | None
    requested_by: str | None
    phase: str | None
    pending_approvers: list[str]
    departments: list[str]
    # RelmanTargets: short digests of the resources it deploys (what overlap checks compare).
    resource_keys: list[str]
    started_at: datetime | None
    plan_digest: str | None
    task_queue: str
    worker: dict[str, Any]
    note: str


class NoWorker(CliError):
    """No worker answered for a release: ``reason`` says so, ``release`` is what Temporal
    itself knows of the release."""

    def __init__(self, release_id: str, reason: str, release: VisibleRelease):
        super().__init__(f"release {release_id}: {reason}")
        self.reason, self.release = reason, release


@dataclass
class Queued:
    """A decision sent with ``--queue-until-worker`` that no worker has taken yet."""

    release_id: str
    message: str


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


def _fail(release_id: str, exc: RPCError) -> NoReturn:
    """The CLI error for what the server answered about ``release_id``."""
    if exc.status == RPCStatusCode.NOT_FOUND:
        raise BadInput(f"unknown release {release_id!r}") from None
    if _not_ready(exc):
        raise CliError(f"release {release_id}: {NOT_READY_MESSAGE}") from None
    raise CliError(f"release {release_id}: {exc.message}") from None


async def _known(release_id: str, call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await _patiently(call)
    except RPCError as exc:
        _fail(release_id, exc)


def _no_answer(exc: RPCError) -> bool:
    """No worker took a Query: none polls its task queue, or none answered in time (the
    server's deadline, or the client's own: CANCELLED, "Timeout expired")."""
    return exc.status in (
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.CANCELLED,
    ) or "no poller seen" in (exc.message or "")


async def _described(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionDescription:
    """The release's workflow as Temporal describes it (no worker needed)."""
    try:
        return await handle.describe()
    except RPCError as exc:
        _fail(handle.id, exc)


def _has_ended(described: WorkflowExecutionDescription) -> bool:
    return described.status not in (None, WorkflowExecutionStatus.RUNNING)


async def _visible(
    described: WorkflowExecutionDescription, polls: TaskQueuePolls
) -> VisibleRelease:
    sa = described.typed_search_attributes
    digest = await described.memo_value(PLAN_DIGEST_MEMO, None)
    return VisibleRelease(
        release_id=described.id,
        status=(described.status or WorkflowExecutionStatus.RUNNING).name.lower(),
        application=sa.get(SA_APPLICATION),
        version=sa.get(SA_VERSION),
        requested_by=sa.get(SA_REQUESTER),
        phase=sa.get(SA_PHASE),
        pending_approvers=list(sa.get(SA_APPROVERS) or []),
        departments=list(sa.get(SA_DEPARTMENTS) or []),
        resource_keys=list(sa.get(SA_TARGETS) or []),
        started_at=described.start_time,
        plan_digest=str(digest) if digest else None,
        task_queue=described.task_queue,
        worker=polls.to_json(),
        note=polls.line(),
    )


async def _asked(
    client: Client,
    described: WorkflowExecutionDescription,
    call: Callable[[], Awaitable[T]],
    wait: float | None,
) -> T:
    """``call()`` (Queries of the release) as a worker answers it within ``wait`` seconds
    (default: ``worker_wait()``); :class:`NoWorker`, with what Temporal knows of the
    release, when none does. A task queue no worker has polled for a while is not asked."""
    wait = worker_wait() if wait is None else wait
    polls = await task_queue_polls(client, described.task_queue)
    if polls.polled is not False:
        try:
            async with asyncio.timeout(max(wait, QUERY_FLOOR_SECONDS)):
                return await _patiently(call)
        except TimeoutError:
            pass
        except RPCError as exc:
            if not _no_answer(exc):
                _fail(described.id, exc)
        polls = await task_queue_polls(client, described.task_queue)
    reason = f"no worker answered within {seconds(wait)}: {polls.line()}"
    raise NoWorker(described.id, reason, await _visible(described, polls))


async def _ended(
    client: Client, described: WorkflowExecutionDescription, wait: float | None
) -> ReleaseStatus:
    """An ended release's status with its whole timeline, replayed here from its history
    (no worker needed); else (a history this relman cannot replay, e.g. recorded by a
    newer one) as a worker answers."""
    try:
        return await replayed_status(client, described.id)
    except ReplayFailed as failed:
        why = str(failed)
    handle = _handle(client, described.id)
    try:
        return await _asked(client, described, lambda: _paged_history(handle), wait)
    except NoWorker as silent:
        raise NoWorker(
            described.id,
            f"it has ended, but this relman cannot replay its history ({why}), and {silent.reason}",
            silent.release,
        ) from None


def _latest(status: ReleaseStatus, timeline_tail: int | None) -> ReleaseStatus:
    """``status`` with its latest ``timeline_tail`` events only, as the status query cuts."""
    if timeline_tail is None:
        return status
    events = status.timeline
    latest = events[len(events) - timeline_tail :] if timeline_tail else []
    return status.model_copy(update={"timeline": latest, "timeline_total": len(events)})


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
                ReleaseInput(plan=plan, submission=signed),
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


async def status(
    release_id: str, timeline_tail: int | None = None, wait: float | None = None
) -> ReleaseStatus:
    """The release's status query (its latest ``timeline_tail`` events only, when given),
    with the targets its running batches have finished. An ended release's comes from its
    history with no worker; for a running one no worker answers within ``wait`` seconds,
    :class:`NoWorker` carries what Temporal knows of it."""
    async with temporal() as client:
        handle = _handle(client, release_id)
        described = await _described(handle)
        if _has_ended(described):
            return _latest(await _ended(client, described, wait), timeline_tail)
        current = await _asked(
            client, described, lambda: _status_query(handle, timeline_tail), wait
        )
        return await with_running_progress(client, current)


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


async def history(release_id: str, wait: float | None = None) -> ReleaseStatus:
    """The release's status with its complete timeline: an ended release's from its
    history with no worker; a running one's from its worker, fetched page by page so that a
    release of any size stays under the server's message size limits (and the targets its
    running batches have finished), or :class:`NoWorker` when none answers in ``wait`` s."""
    async with temporal() as client:
        handle = _handle(client, release_id)
        described = await _described(handle)
        if _has_ended(described):
            return await _ended(client, described, wait)
        whole = await _asked(client, described, lambda: _paged_history(handle), wait)
        return await with_running_progress(client, whole)


async def _paged_history(handle: WorkflowHandle[Any, Any]) -> ReleaseStatus:
    """The release's status with its complete timeline, asked of its worker page by page."""
    current = await _status_query(handle, 0)
    if current.timeline_total is None:  # a worker without the timeline query
        return await _status_query(handle, None)
    events: list[TimelineEvent] = []
    while True:
        page = await handle.query(
            ReleaseWorkflow.timeline, TimelineRequest(offset=len(events), limit=TIMELINE_PAGE)
        )
        events.extend(page.events)
        if not page.events or len(events) >= page.total:
            return current.model_copy(update={"timeline": events, "timeline_total": None})


def local_activity(event: HistoryEvent) -> tuple[str, list[Payload]] | None:
    """A local activity's name and result payloads, if ``event`` is the marker that records
    one (an SDK marker whose ``data`` names the activity; no result if it failed)."""
    if not event.HasField("marker_recorded_event_attributes"):
        return None
    marker = event.marker_recorded_event_attributes
    if marker.marker_name != LOCAL_ACTIVITY_MARKER or "data" not in marker.details:
        return None
    data = json.loads(marker.details["data"].payloads[0].data)
    result = marker.details["result"].payloads if "result" in marker.details else []
    return data["activity_type"], list(result)


async def policies_of(release_id: str) -> list[Policy]:
    """Every organisation policy version the release ran under, from its Temporal history:
    the results of its ``load_policy`` reads (local activities, or activities for releases
    started before relman 1.4) that carried a policy (each change)."""
    async with temporal() as client:
        handle = _handle(client, release_id)

        async def collect() -> list[Policy]:
            loads: set[int] = set()
            found: dict[str, Policy] = {}
            async for event in handle.fetch_history_events():
                results: list[Payload] = []
                if event.HasField("activity_task_scheduled_event_attributes"):
                    scheduled = event.activity_task_scheduled_event_attributes
                    if scheduled.activity_type.name == LOAD_POLICY:
                        loads.add(event.event_id)
                elif event.HasField("activity_task_completed_event_attributes"):
                    done = event.activity_task_completed_event_attributes
                    if done.scheduled_event_id in loads:
                        results = list(done.result.payloads)
                elif (local := local_activity(event)) is not None and local[0] == LOAD_POLICY:
                    results = local[1]
                if not results:
                    continue
                [snapshot] = await client.data_converter.decode(results, [PolicySnapshot])
                if snapshot.policy is not None:
                    found[snapshot.digest] = snapshot.policy
            return list(found.values())

        return await _known(release_id, collect)


async def watch(
    release_id: str,
    on_status: Callable[[ReleaseStatus], None],
    interval: float,
    timeline_tail: int | None = None,
    on_silence: Callable[[str], None] | None = None,
) -> ReleaseStatus:
    """Call ``on_status`` with fresh status until the release ends.

    While no worker answers (none polls, one restarts), ``on_silence`` is told why and
    watching goes on: an outage of the workers does not end the watch. An ended release
    is read from its history, with no worker."""
    async with temporal() as client:
        handle = _handle(client, release_id)
        while True:
            described = await _described(handle)
            if _has_ended(described):
                current = _latest(await _ended(client, described, interval), timeline_tail)
                on_status(current)
                return current
            try:
                current = await _asked(
                    client, described, lambda: _status_query(handle, timeline_tail), interval
                )
            except CliError as exc:
                if on_silence is not None:
                    on_silence(exc.reason if isinstance(exc, NoWorker) else str(exc))
                await asyncio.sleep(interval)
                continue
            on_status(await with_running_progress(client, current))
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
    handle: WorkflowHandle[Any, Any],
    action: DecisionAction,
    arg: DecisionMessage,
    key: Path,
    attestation: dict[str, str] | None = None,
) -> DecisionMessage:
    """``arg`` carrying its actor's signature of ``action`` on the release, made now (or an
    attester's, ``key`` being its key: ``attestation`` names it and the OIDC identity)."""
    digest = await _known(handle.id, lambda: release_plan_digest(handle))
    payload = decision_payload(
        action, arg, release_id=handle.id, plan_digest=digest, issued_at=datetime.now(UTC)
    )
    if attestation:
        payload = DecisionPayload.model_validate({**payload.model_dump(), **attestation})
    signed = await asyncio.to_thread(sign_decision, payload, key)
    return arg.model_copy(update={"signed": signed})


async def _decidable(
    handle: WorkflowHandle[Any, Any], refused: str
) -> WorkflowExecutionDescription:
    """The release, described, if it is running (a decision on it can still apply)."""
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise BadInput(f"unknown release {handle.id!r}") from None
        raise CliError(f"{refused}: {exc.message}") from None
    if _has_ended(described):
        phase = (described.typed_search_attributes.get(SA_PHASE) or "").strip()
        ended = f" ({phase})" if phase else ""
        raise CliError(f"{refused}: the release has already ended{ended}")
    return described


async def _worker_answers(
    client: Client,
    handle: WorkflowHandle[Any, Any],
    queue: str,
    wait: float,
    refused: str,
) -> None:
    """Return once a worker answers a Query of the release, trying for ``wait`` seconds;
    else refuse, naming the task queue and when a worker last polled it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    not_ready = False
    while True:
        polls = await task_queue_polls(client, queue)
        if polls.polled is not False:
            try:
                async with asyncio.timeout(max(deadline - loop.time(), QUERY_FLOOR_SECONDS)):
                    await _status_query(handle, 0)
                return
            except WorkflowQueryFailedError:
                return  # a worker ran the query (and its handler failed): one is there
            except TimeoutError:
                pass
            except RPCError as exc:
                not_ready = _not_ready(exc)
                if not (not_ready or _no_answer(exc)):
                    raise CliError(f"{refused}: {exc.message}") from None
        if loop.time() >= deadline:
            break
        await asyncio.sleep(min(WORKER_CHECK_INTERVAL, max(deadline - loop.time(), 0.0)))
    if not_ready:
        raise CliError(f"{refused}: {NOT_READY_MESSAGE}. The decision was not sent")
    polls = await task_queue_polls(client, queue)
    raise CliError(
        f"{refused}: no worker answered for the release within {seconds(wait)} "
        f"({polls.line()}). The decision was not sent, so it will not be applied: start a "
        "worker (`relman worker`) and run the command again, or add --queue-until-worker "
        "to leave it with Temporal for the next worker"
    )


def _held(polls: TaskQueuePolls, within: float, expires: datetime) -> str:
    """What becomes of a decision Temporal holds that no worker has taken."""
    return (
        f"no worker took it within {seconds(within)} ({polls.line()}). Temporal holds it, "
        "in memory, for the next worker that picks the release up: the release applies it "
        f"if that happens before {expires.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
        f"({format_duration(DEFAULT_MAX_SKEW)} after it was signed) and refuses it after; "
        "it is lost if the Temporal server restarts first"
    )


async def _update(
    release_id: str,
    update: Any,
    action: DecisionAction,
    arg: DecisionMessage,
    key: Path,
    what: str,
    update_id: str | None = None,
    *,
    wait: float | None = None,
    queue_until_worker: bool = False,
    attestation: dict[str, str] | None = None,
) -> Any:
    """Sign ``arg`` for ``action`` with ``key`` and send it as an Update once a worker
    answers for the release, waiting up to ``wait`` seconds (default: ``worker_wait()``);
    a refusal by its validator becomes a CLI error naming ``what``.

    Temporal keeps an Update no worker has taken in memory and hands it to the next worker
    that picks the release up, however late (until the signature's 10 minutes run out). So
    a decision is sent only once a worker has just answered a Query of the release; if even
    then none takes it in time (it stopped meanwhile), the error says what becomes of it.
    ``queue_until_worker`` sends it at once, and returns :class:`Queued` if no worker takes
    it within ``QUEUE_SEND_SECONDS`` (or ``wait``, if shorter).
    """
    from temporalio.client import (
        WorkflowUpdateFailedError,
        WorkflowUpdateRPCTimeoutOrCancelledError,
        WorkflowUpdateStage,
    )

    wait = worker_wait() if wait is None else wait
    refused = f"cannot {what} {release_id}"
    async with temporal() as client:
        handle = _handle(client, release_id)
        described = await _decidable(handle, refused)
        signed = await _signed(handle, action, arg, key, attestation)
        assert signed.signed is not None
        expires = signed.signed.payload.issued_at + DEFAULT_MAX_SKEW
        loop = asyncio.get_running_loop()
        started = loop.time()
        if queue_until_worker:
            take_within = min(wait, QUEUE_SEND_SECONDS)
        else:
            await _worker_answers(client, handle, described.task_queue, wait, refused)
            take_within = max(wait - (loop.time() - started), ACCEPT_FLOOR_SECONDS)
        try:
            try:
                async with asyncio.timeout(take_within):
                    sent = await _patiently(
                        lambda: handle.start_update(
                            update,
                            signed,
                            id=update_id,
                            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                        )
                    )
            except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
                held = _held(
                    await task_queue_polls(client, described.task_queue), take_within, expires
                )
                if queue_until_worker:
                    return Queued(release_id, f"queued: {held}")
                again = (
                    "Sending it again is safe: Temporal applies the same decision once"
                    if update_id is not None
                    else f"Check `relman status {release_id}` before sending it again"
                )
                raise CliError(f"{refused}: the decision was sent, but {held}. {again}") from None
            try:
                async with asyncio.timeout(max(wait, ACCEPT_FLOOR_SECONDS)):
                    return await sent.result()
            except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
                raise CliError(
                    f"{refused}: the release accepted the decision (it is in its history), "
                    f"but its outcome did not come back within "
                    f"{seconds(max(wait, ACCEPT_FLOOR_SECONDS))}: `relman status "
                    f"{release_id}` shows whether it took effect"
                ) from None
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
    release_id: str,
    wave: str,
    user: str,
    comment: str,
    approve: bool,
    key: Path,
    *,
    wait: float | None = None,
    queue_until_worker: bool = False,
    attestation: dict[str, str] | None = None,
) -> DecisionResult | Queued:
    """Approve or reject a wave's gate as ``user``, signed with ``key``, once a worker
    answers for the release (see :func:`_update` for ``wait`` and ``queue_until_worker``).

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
        wait=wait,
        queue_until_worker=queue_until_worker,
        attestation=attestation,
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
    release_id: str,
    operation: str,
    arg: DecisionMessage,
    key: Path,
    *,
    wait: float | None = None,
    queue_until_worker: bool = False,
    attestation: dict[str, str] | None = None,
) -> OperatorResult | Queued:
    """Run an operator action (pause, abort, override_window, ...) on a release, signed
    by its actor with ``key``, once a worker answers for it (see :func:`_update`)."""
    update, action, what = OPERATIONS[operation]
    return await _update(
        release_id,
        update,
        action,
        arg,
        key,
        what,
        wait=wait,
        queue_until_worker=queue_until_worker,
        attestation=attestation,
    )


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


async def _pending_status(
    client: Client, release_id: str, wait: float | None
) -> ReleaseStatus | None:
    """A listed release's status as its worker answers (:class:`NoWorker` if none does),
    or None if it has ended or gone since it was listed."""
    handle = _handle(client, release_id)
    try:
        described = await _described(handle)
    except BadInput:
        return None
    if _has_ended(described):
        return None
    return await _asked(client, described, lambda: _status_query(handle, 0), wait)


async def approvals_for(
    user: str, wait: float | None = None
) -> tuple[list[ApprovalWaiting], list[Unreadable]]:
    """Gates across running releases that ``user`` may decide now, and the releases that
    list ``user`` as a pending approver but could not be asked (no worker answered within
    ``wait`` seconds, ...): an answer is never "nothing waiting" for want of asking."""
    query = _query({SA_APPROVERS.name: user}, running_only=True)
    async with temporal() as client:
        found = []
        unreadable: list[Unreadable] = []
        try:
            listed = [(e.id, e.task_queue) async for e in client.list_workflows(query)]
        except RPCError as exc:
            raise CliError(f"cannot list releases: {exc.message}") from None
        silent: dict[str, str] = {}  # task queue -> why no worker answered there
        for release_id, queue in listed:
            if queue in silent:  # no need to wait again for the same absent worker
                unreadable.append(Unreadable(release_id=release_id, reason=silent[queue]))
                continue
            try:
                st = await _pending_status(client, release_id, wait)
            except NoWorker as exc:
                silent[queue] = exc.reason
                unreadable.append(Unreadable(release_id=release_id, reason=exc.reason))
                continue
            except CliError as exc:
                unreadable.append(Unreadable(release_id=release_id, reason=str(exc)))
                continue
            if st is None:
                continue  # ended since the listing
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
        return found, unreadable
