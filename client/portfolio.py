"""Many releases at once, read through Temporal, for ``relman calendar`` and ``relman report``.

Releases are found through visibility (relman's search attributes, paged), never by
walking histories. Then, per release, a bounded read:

- the calendar asks each running release for its status (the status query without its
  timeline, as ``relman approvals`` does) and reads its plan from the first event of its
  history (the release's input);
- the report reads the timelines of at most ``limit`` of the most recently ended releases
  whose histories hold at most ``EVENT_LIMIT`` events, each history fetched once and
  replayed here as ``relman status`` does for an ended release (no worker needed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError

from client.change_calendar import NotRead as CalendarNotRead
from client.replay import ReplayFailed, replayed_status
from client.report import NotRead, ReleaseFacts, timeline_facts
from client.service import NoWorker, _pending_status, _query
from common.connection import temporal
from common.errors import CliError
from common.search_attributes import SA_APPLICATION, SA_DEPARTMENTS, SA_PHASE
from models.messages import ReleaseInput
from models.plan import ReleasePlan
from models.status import FINAL_PHASES, ReleasePhase, ReleaseStatus

# Visibility answers in pages of this many releases.
PAGE_SIZE = 1000
# The report reads the timeline of a release whose history holds at most this many events
# (a release of a few waves has one or two hundred; Temporal's own limit is 51,200).
EVENT_LIMIT = 5000
# The report reads the timelines of this many of the most recently ended releases by default.
DEFAULT_TIMELINES = 200
# Histories fetched and replayed at once.
READ_CONCURRENCY = 4


async def _listed(client: Client, query: str) -> list[WorkflowExecution]:
    try:
        return [e async for e in client.list_workflows(query, page_size=PAGE_SIZE)]
    except RPCError as exc:
        raise CliError(f"cannot list releases: {exc.message}") from None


async def release_plan(client: Client, release_id: str) -> ReleasePlan:
    """The plan a release runs, from its input: the first event of its history."""
    handle = client.get_workflow_handle(release_id)
    async for event in handle.fetch_history_events(page_size=1):
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        [started] = await client.data_converter.decode(payloads, [ReleaseInput])
        return started.plan
    raise CliError(f"release {release_id} has no history")


# --- the calendar ----------------------------------------------------------------------------


async def running_releases(
    application: str | None, department: str | None, wait: float | None
) -> tuple[list[tuple[ReleasePlan, ReleaseStatus]], list[CalendarNotRead]]:
    """Each running release (of ``application``, with a wave of ``department``) as its plan
    and status; and those that could not be read (no worker answered, ...), with why."""
    query = _query(
        {SA_APPLICATION.name: application, SA_DEPARTMENTS.name: department}, running_only=True
    )
    async with temporal() as client:
        listed = await _listed(client, query)
        found: list[tuple[ReleasePlan, ReleaseStatus]] = []
        not_read: list[CalendarNotRead] = []
        silent: dict[str, str] = {}  # task queue -> why no worker answered there
        for execution in sorted(listed, key=lambda e: e.id):
            if execution.task_queue in silent:  # no need to wait again for the same absence
                not_read.append(CalendarNotRead(execution.id, silent[execution.task_queue]))
                continue
            try:
                status = await _pending_status(client, execution.id, wait)
                if status is None:
                    continue  # it ended since the listing
                plan = await release_plan(client, execution.id)
            except NoWorker as exc:
                silent[execution.task_queue] = exc.reason
                not_read.append(CalendarNotRead(execution.id, exc.reason))
                continue
            except (CliError, RPCError, ValueError) as exc:
                not_read.append(CalendarNotRead(execution.id, _reason(exc)))
                continue
            found.append((plan, status))
        return found, not_read


def _reason(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)


# --- the report ------------------------------------------------------------------------------


# A workflow that ended without a final RelmanPhase: neither a completed release nor one
# whose change failed, whatever its workflow status.
_UNPHASED = {
    WorkflowExecutionStatus.COMPLETED: "unknown",
    WorkflowExecutionStatus.FAILED: "workflow_failed",
}


def _facts(execution: WorkflowExecution) -> ReleaseFacts:
    sa = execution.typed_search_attributes
    phase = sa.get(SA_PHASE)
    status = execution.status or WorkflowExecutionStatus.RUNNING
    if phase in {p.value for p in FINAL_PHASES} or phase == ReleasePhase.ROLLBACK_FAILED.value:
        outcome = str(phase)
    else:  # ended without a final phase (terminated, timed out, ...): what Temporal says
        outcome = _UNPHASED.get(status, status.name.lower())
    return ReleaseFacts(
        release_id=execution.id,
        application=sa.get(SA_APPLICATION),
        departments=list(sa.get(SA_DEPARTMENTS) or []),
        outcome=outcome,
        submitted=execution.start_time,
        ended=execution.close_time,
        history_length=execution.history_length,
    )


@dataclass
class ReportInput:
    """The releases a report counts, and the timelines it did not read."""

    releases: list[ReleaseFacts]
    not_read: list[NotRead]


async def report_releases(
    since: datetime,
    application: str | None,
    department: str | None,
    limit: int = DEFAULT_TIMELINES,
) -> ReportInput:
    """Releases (of ``application``, with a wave of ``department``) that ended since
    ``since``, and running ones stuck in rollback_failed, from visibility; with the
    timelines of the ``limit`` most recently ended whose histories are at most
    ``EVENT_LIMIT`` events."""
    filters: dict[str, str | None] = {
        SA_APPLICATION.name: application,
        SA_DEPARTMENTS.name: department,
    }
    instant = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    now = datetime.now(UTC)
    async with temporal() as client:
        ended = await _listed(client, f"{_query(filters)} AND CloseTime >= '{instant}'")
        stuck = await _listed(
            client,
            _query(
                {**filters, SA_PHASE.name: ReleasePhase.ROLLBACK_FAILED.value}, running_only=True
            ),
        )
        # Each release counts once, should visibility list it in both answers.
        releases = list({e.id: _facts(e) for e in [*ended, *stuck]}.values())
        releases.sort(key=lambda r: r.ended or now, reverse=True)
        not_read: list[NotRead] = []
        chosen: list[ReleaseFacts] = []
        for r in releases:
            if r.history_length > EVENT_LIMIT:
                not_read.append(
                    NotRead(
                        r.release_id,
                        f"its history holds {r.history_length} events (more than {EVENT_LIMIT})",
                    )
                )
            elif len(chosen) < limit:
                chosen.append(r)
        gate = asyncio.Semaphore(READ_CONCURRENCY)

        async def read(r: ReleaseFacts) -> None:
            async with gate:
                try:
                    status = await replayed_status(client, r.release_id)
                except (ReplayFailed, RPCError) as exc:
                    not_read.append(NotRead(r.release_id, _reason(exc)))
                    return
            r.timeline = timeline_facts(status)

        await asyncio.gather(*(read(r) for r in chosen))
        not_read.sort(key=lambda n: n.release_id)
        return ReportInput(releases, not_read)
