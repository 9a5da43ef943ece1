"""What the console reads from Temporal, beyond ``client.service``: a page of releases."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass

from temporalio.service import RPCError

from client.service import (
    ApprovalWaiting,
    NoWorker,
    ReleaseSummary,
    Unreadable,
    _pending_status,
    _query,
    _summary,
)
from common.connection import temporal
from common.errors import CliError
from common.search_attributes import (
    SA_APPLICATION,
    SA_APPROVERS,
    SA_DEPARTMENTS,
    SA_PHASE,
    SA_REQUESTER,
)
from models.messages import ReleaseInput
from models.plan import ReleasePlan
from models.status import ReleaseStatus

PAGE_SIZE = 25


@dataclass
class ReleasePage:
    """One page of the release list and the token of the next (None: the last page)."""

    releases: list[ReleaseSummary]
    next_token: str | None


async def release_page(
    filters: dict[str, str | None], token: str | None = None, page_size: int = PAGE_SIZE
) -> ReleasePage:
    """Releases matching ``filters`` (application, phase, department, requester) through
    Temporal visibility, newest first, ``page_size`` at a time."""
    query = _query(
        {
            SA_APPLICATION.name: filters.get("application"),
            SA_PHASE.name: filters.get("phase"),
            SA_DEPARTMENTS.name: filters.get("department"),
            SA_REQUESTER.name: filters.get("requester"),
        }
    )
    raw = base64.urlsafe_b64decode(token.encode()) if token else None
    async with temporal() as client:
        listing = client.list_workflows(query, page_size=page_size, next_page_token=raw)
        await listing.fetch_next_page()
        releases = [_summary(e) for e in listing.current_page or []]
        after = listing.next_page_token
    return ReleasePage(releases, base64.urlsafe_b64encode(after).decode() if after else None)


# Plans never change within a release: each is read from its history once per process.
_PLANS: dict[str, ReleasePlan | None] = {}
PLAN_CACHE_SIZE = 2048


async def release_plan(release_id: str) -> ReleasePlan | None:
    """The plan ``release_id`` was started with, from the first event of its history
    (decoded with the payload codec); None when it cannot be read."""
    if release_id in _PLANS:
        return _PLANS[release_id]
    plan: ReleasePlan | None = None
    try:
        async with temporal() as client:
            handle = client.get_workflow_handle(release_id)
            async for event in handle.fetch_history_events():
                attributes = event.workflow_execution_started_event_attributes
                payloads = list(attributes.input.payloads)
                if payloads:
                    decoded = await client.data_converter.decode(payloads, [ReleaseInput])
                    plan = decoded[0].plan
                break
    except (RPCError, CliError, ValueError, IndexError):
        return None
    if len(_PLANS) >= PLAN_CACHE_SIZE:
        _PLANS.clear()
    _PLANS[release_id] = plan
    return plan


# Gates shown per page of *My approvals*: each is one status query, asked concurrently.
APPROVALS_PAGE = 20


@dataclass
class GateWaiting:
    """A gate the person may decide, with its release's status (for what it changes)."""

    waiting: ApprovalWaiting
    status: ReleaseStatus


@dataclass
class ApprovalsPage:
    gates: list[GateWaiting]
    unreadable: list[Unreadable]
    next_token: str | None


async def approvals_page(
    person: str, token: str | None = None, wait: float = 5.0, page_size: int = APPROVALS_PAGE
) -> ApprovalsPage:
    """Gates ``person`` may decide now, ``page_size`` releases at a time (those listing
    them as a pending approver, through visibility), each release asked at once; a release
    that cannot be asked is listed as such, never left out."""
    query = _query({SA_APPROVERS.name: person}, running_only=True)
    raw = base64.urlsafe_b64decode(token.encode()) if token else None
    async with temporal() as client:
        listing = client.list_workflows(query, page_size=page_size, next_page_token=raw)
        await listing.fetch_next_page()
        ids = [e.id for e in listing.current_page or []]
        after = listing.next_page_token

        async def asked(release_id: str) -> ReleaseStatus | Unreadable | None:
            try:
                return await _pending_status(client, release_id, wait)
            except CliError as exc:
                reason = exc.reason if isinstance(exc, NoWorker) else str(exc)
                return Unreadable(release_id=release_id, reason=reason)

        answers = await asyncio.gather(*(asked(i) for i in ids))
    gates: list[GateWaiting] = []
    unreadable = [a for a in answers if isinstance(a, Unreadable)]
    for status in answers:
        if not isinstance(status, ReleaseStatus):
            continue
        for pending in status.pending_approvals:
            if person in pending.eligible_approvers:
                waiting = ApprovalWaiting(
                    release_id=status.release_id,
                    application=status.application,
                    version=status.version,
                    requested_by=status.requested_by,
                    pending=pending,
                )
                gates.append(GateWaiting(waiting, status))
    return ApprovalsPage(
        gates, unreadable, base64.urlsafe_b64encode(after).decode() if after else None
    )
