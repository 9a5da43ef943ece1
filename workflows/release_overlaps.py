"""Releases that deploy the same resources: the check at the start, refusal, and the queue.

``relman submit`` looks for overlapping running releases through visibility, which is
eventually consistent; a release also looks once it is visible itself. Of two overlapping
releases the later one (by start time, then id) ends without changing anything, or, with
``queue: true``, waits until the earlier ones have ended.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        FIND_OVERLAPPING_RELEASES,
        WAIT_FOR_RELEASES,
        FindOverlapsInput,
        OverlapsFound,
        WaitForReleasesInput,
    )
    from workflows.release_base import (
        SA_APPLICATION,
        SA_TARGETS,
        SYSTEM_ACTOR,
        ReleaseBase,
    )
    from workflows.release_state import overlap_queries

QUEUE_WAIT_TIMEOUT = timedelta(days=30)
OVERLAP_CHECK_TIMEOUT = timedelta(minutes=1)
# workflow.patched() id: the release looks for overlapping releases itself at its start.
OVERLAP_CHECK_AT_START = "overlap-check-at-start"
QUEUE_HEARTBEAT_TIMEOUT = timedelta(minutes=2)


class OverlapChecks(ReleaseBase):
    """The release's own overlap check, its refusal, and its wait in the queue."""

    def _checks_overlaps(self) -> bool:
        """Releases submitted through relman carry their resources' keys: they check for
        overlaps themselves once visible, closing the race of two submissions at once."""
        if workflow.info().typed_search_attributes.get(SA_TARGETS) is None:
            return False  # started without relman's search attributes (tests, benchmarks)
        return workflow.patched(OVERLAP_CHECK_AT_START)

    async def _overlapping_ahead(self) -> list[str]:
        """Running releases that deploy one of the same resources and started before this
        one (by start time, then id: of two overlapping releases exactly one goes first)."""
        found = await workflow.execute_activity(
            FIND_OVERLAPPING_RELEASES,
            FindOverlapsInput(
                release_id=self._plan.id,
                queries=overlap_queries(self._plan, SA_APPLICATION.name, SA_TARGETS.name),
            ),
            result_type=OverlapsFound,
            start_to_close_timeout=OVERLAP_CHECK_TIMEOUT,
            summary="look for overlapping releases started before this one",
        )
        me = (workflow.info().workflow_start_time, self._plan.id)
        return [r.release_id for r in found.releases if (r.started_at, r.release_id) < me]

    def _refuse_overlap(self, ahead: list[str]) -> None:
        """Record why the release ends without changing anything: an overlapping release
        started first (the release then ends ``failed``)."""
        plan = self._plan
        self._status.error = (
            f"release {plan.id} deploys resources that running release(s) "
            f"{', '.join(ahead)} also deploy, and they started first; it changed nothing. "
            "Submit it again once they have ended, or set `queue: true` to queue behind them"
        )
        self._event("refused", self._status.error, actor=SYSTEM_ACTOR)

    async def _wait_in_queue(self, releases: list[str]) -> None:
        """Wait until running releases that deploy the same targets have ended."""
        self._event(
            "queued",
            f"queued behind {', '.join(releases)}: they deploy some of the same targets",
            actor=SYSTEM_ACTOR,
        )
        await workflow.execute_activity(
            WAIT_FOR_RELEASES,
            WaitForReleasesInput(release_ids=releases),
            start_to_close_timeout=QUEUE_WAIT_TIMEOUT,
            heartbeat_timeout=QUEUE_HEARTBEAT_TIMEOUT,
            summary=f"wait for {', '.join(releases)} to end",
        )
        self._event("dequeued", "releases ahead have ended; starting", actor=SYSTEM_ACTOR)
