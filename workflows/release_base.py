"""Shared state and helpers of the release workflow: status, timeline, visibility."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        NOTIFY,
        NOTIFY_DESTINATIONS,
        Change,
        Notification,
        NotifyDestinationsInput,
        NotifyDestinationsResult,
        NotifyInput,
        NotifyResult,
        OperatorInput,
        TargetActionInput,
        WaveActionInput,
    )
    from models.plan import ReleasePlan
    from models.status import (
        FINAL_PHASES,
        ReleasePhase,
        ReleaseStatus,
        TargetPhase,
        TimelineEvent,
        WavePhase,
        WaveStatus,
    )
    from workflows.notifications import notification_for, notified_event
    from workflows.release_state import (
        active_phase,
        pending_approvals,
    )
    from workflows.wave_base import cause


# Search attributes relman keeps current, for `relman list` and `relman approvals`.
SA_APPLICATION = SearchAttributeKey.for_keyword("RelmanApplication")
SA_VERSION = SearchAttributeKey.for_keyword("RelmanVersion")
SA_REQUESTER = SearchAttributeKey.for_keyword("RelmanRequester")
SA_PHASE = SearchAttributeKey.for_keyword("RelmanPhase")
SA_APPROVERS = SearchAttributeKey.for_keyword_list("RelmanApprovers")
SA_DEPARTMENTS = SearchAttributeKey.for_keyword_list("RelmanDepartments")
# Short digests of the resources a release deploys (see release_state.target_keys).
SA_TARGETS = SearchAttributeKey.for_keyword_list("RelmanTargets")
SEARCH_ATTRIBUTES = (
    SA_APPLICATION,
    SA_VERSION,
    SA_REQUESTER,
    SA_PHASE,
    SA_APPROVERS,
    SA_DEPARTMENTS,
    SA_TARGETS,
)
SYSTEM_ACTOR = "relman"

# Notifications run beside the release and never hold it up: a few attempts with backoff,
# then the failure is recorded in the timeline (`notification_failed`) and the release goes on.
NOTIFY_TIMEOUT = timedelta(seconds=30)
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)
# workflow.patched() id: releases started before notifications existed do not send them.
NOTIFICATIONS_PATCH = "notifications"
NOTIFY_DESTINATIONS_TIMEOUT = timedelta(seconds=30)
SKIP_UNCHANGED_UPSERTS = "skip-unchanged-upserts"


class StopRelease(Exception):
    """Raised inside a wave to end it when the release is stopping."""


class ReleaseBase:
    """State every part of the release workflow shares, and the helpers that keep its
    status, timeline and visibility current. The handlers live in mixins beside it."""

    _plan: ReleasePlan
    _status: ReleaseStatus
    _saga: list[Change]
    _stopping: ReleasePhase | None
    _rollback_requested: bool
    _rollbacks_running: int
    _overrides: dict[str, bool]
    _decisions: dict[str, tuple[str, WaveActionInput | TargetActionInput]]
    _retry_rollback: bool
    _children: dict[str, workflow.ChildWorkflowHandle]  # type: ignore[type-arg]
    _failed_waves: set[str]
    _rollback_skipped: set[str]
    _worker_destinations: asyncio.Future[NotifyDestinationsResult] | None
    _visible: tuple[str, tuple[str, ...]] | None
    _notifications_sent: int
    _notifications_pending: int

    def _wave_status(self, name: str) -> WaveStatus:
        wave = next((w for w in self._status.waves if w.name == name), None)
        if wave is None:
            names = ", ".join(w.name for w in self._status.waves)
            raise ValueError(f"release {self._plan.id} has no wave {name!r} (waves: {names})")
        return wave

    async def _signal_waves(self, signal: str, input: OperatorInput) -> None:
        for handle in list(self._children.values()):
            await handle.signal(signal, input)

    def _merge_targets(self, wave: WaveStatus, targets: list) -> None:  # type: ignore[type-arg]
        for reported in targets:
            current = next(t for t in wave.targets if t.name == reported.name)
            if current.phase in (TargetPhase.ROLLED_BACK, TargetPhase.ROLLBACK_FAILED):
                continue
            if reported.phase == TargetPhase.SKIPPED and current.phase != TargetPhase.PENDING:
                continue
            current.phase, current.percent = reported.phase, reported.percent
            current.before = reported.before or current.before
            current.after, current.error = reported.after, reported.error

    def _set_wave(self, status: WaveStatus, phase: WavePhase, message: str) -> None:
        status.phase = phase
        self._event(f"wave_{phase.value}", message, actor=SYSTEM_ACTOR, wave=status.name)
        self._refresh()

    def _operator_event(
        self, kind: str, message: str, input: OperatorInput, wave: str | None = None
    ) -> None:
        self._event(kind, message, actor=input.actor, wave=wave, comment=input.reason or None)
        self._refresh()

    def _event(self, kind: str, message: str, **fields: str | None) -> None:
        entry = TimelineEvent(at=workflow.now(), kind=kind, message=message, **fields)
        self._status.timeline.append(entry)
        self._notify(entry)

    def _notify(self, entry: TimelineEvent) -> None:
        """Send a timeline entry as a notification if it is one, without waiting for it."""
        if notified_event(self._plan, entry.kind) is None:
            return
        if not workflow.patched(NOTIFICATIONS_PATCH):
            return
        self._notifications_sent += 1
        self._notifications_pending += 1
        notification = notification_for(self._plan, self._status, self._notifications_sent, entry)
        # Fire and forget: the release goes on while the notification is delivered (and
        # retried); _notifications_delivered() keeps the workflow open until it has been.
        asyncio.ensure_future(self._deliver(notification))

    async def _deliver(self, notification: Notification) -> None:
        if self._plan.notifications is None and not await self._worker_notifies():
            self._notifications_pending -= 1
            return
        try:
            await workflow.execute_activity(
                NOTIFY,
                NotifyInput(notification=notification, destinations=self._plan.notifications),
                result_type=NotifyResult,
                start_to_close_timeout=NOTIFY_TIMEOUT,
                retry_policy=NOTIFY_RETRY,
                summary=f"notify {notification.event}"
                + (f" of wave {notification.wave}" if notification.wave else ""),
            )
        except ActivityError as err:
            self._event(
                "notification_failed",
                f"{notification.event} notification not delivered: {cause(err)}",
                actor=SYSTEM_ACTOR,
                wave=notification.wave,
            )
        finally:
            self._notifications_pending -= 1

    async def _worker_notifies(self) -> bool:
        """Whether the worker has destinations of its own, asked once per release.

        A plan without a ``notifications`` section sends only where the worker's
        configuration says; when that is nowhere, the release schedules no notify activity
        at all. A local activity: one marker in the history, no task-queue round trip.
        """
        if self._worker_destinations is None:
            self._worker_destinations = asyncio.ensure_future(
                workflow.execute_local_activity(
                    NOTIFY_DESTINATIONS,
                    NotifyDestinationsInput(release_id=self._plan.id),
                    result_type=NotifyDestinationsResult,
                    start_to_close_timeout=NOTIFY_DESTINATIONS_TIMEOUT,
                )
            )
        return (await self._worker_destinations).configured

    async def _notifications_delivered(self) -> None:
        """Wait until every notification started is delivered or recorded as failed."""
        await workflow.wait_condition(lambda: not self._notifications_pending)

    def _refresh(self) -> None:
        """Recompute the release phase and pending approvals from the waves."""
        if self._status.phase in FINAL_PHASES:
            return
        self._status.pending_approvals = pending_approvals(self._plan, self._status)
        if not self._rollbacks_running:
            self._status.phase = active_phase(self._status, self._status.paused)
        details = "; ".join(
            f"waiting for {', '.join(f'{n} more from {g}' for g, n in p.missing.items())} "
            f"on wave {p.wave}"
            for p in self._status.pending_approvals
        )
        workflow.set_current_details(details or f"release {self._status.phase.value}")
        self._upsert_visibility()

    def _upsert_visibility(self) -> None:
        # Only a release started with relman's search attributes keeps them current: a
        # server without them registered (the time-skipping test server) would fail the task.
        if workflow.info().typed_search_attributes.get(SA_PHASE) is None:
            return
        approvers = sorted(
            {a for p in self._status.pending_approvals for a in p.eligible_approvers}
        )
        visible = (self._status.phase.value, tuple(approvers))
        if visible == self._visible and workflow.patched(SKIP_UNCHANGED_UPSERTS):
            return  # each upsert is a command and a history event: send only changes
        self._visible = visible
        workflow.upsert_search_attributes(
            [SA_PHASE.value_set(self._status.phase.value), SA_APPROVERS.value_set(approvers)]
        )

    def _stop_release(self, end: ReleasePhase) -> None:
        if self._stopping is not None:
            return
        self._stopping = end
        self._rollback_requested = end != ReleasePhase.REJECTED or (
            self._plan.on_rejection == "rollback"
        )
        for handle in self._children.values():
            # Waves stop at their next safe point and report what they changed.
            asyncio.ensure_future(handle.signal("stop", OperatorInput(actor=SYSTEM_ACTOR)))

    def _wave_stops_release(
        self, status: WaveStatus, end: ReleasePhase, wave_end: WavePhase
    ) -> None:
        status.finished_at = workflow.now()
        self._set_wave(status, wave_end, f"wave {status.name} {wave_end.value}")
        self._stop_release(end)
