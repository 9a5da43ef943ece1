"""Which timeline events a release also sends as notifications, and the message each becomes.

No Temporal here: the release workflow calls this with workflow time and its own state.
"""

from __future__ import annotations

import shlex

from models.messages import ApprovalRequest, Notification
from models.plan import NotificationEvent, ReleasePlan
from models.status import ReleaseStatus, TimelineEvent
from workflows import gates

# Timeline kinds that are notified, under the event names a plan's ``events`` filter uses.
# An escalated gate needs approval again, now from the escalation groups too.
NOTIFIED_KINDS: dict[str, NotificationEvent] = {
    "wave_awaiting_approval": "approval_needed",
    "approval_escalated": "approval_needed",
    # When the release starts the wave (which may then wait for its window). The wave's
    # own wave_deploying, when it starts changing AWS, is not sent: it reaches the timeline
    # in the wave's report, and notifying it would add an activity to releases in flight.
    "wave_started": "wave_started",
    "wave_completed": "wave_completed",
    "rollback_started": "rollback_started",
    "rollback_finished": "rollback_finished",
    "rollback_halted": "rollback_failed",
    "finished": "release_finished",
}


def approve_command(release_id: str, wave: str) -> str:
    """The command an approver runs to approve ``wave`` (``--as`` defaults to RELMAN_USER)."""
    return f"relman approve {shlex.quote(release_id)} --wave {shlex.quote(wave)}"


def notified_event(plan: ReleasePlan, kind: str) -> NotificationEvent | None:
    """The notification a timeline event of ``kind`` is sent as, or None if it is not sent.

    Events outside the plan's ``events`` filter are not sent; without a ``notifications``
    section every notified kind is, and the worker decides where it goes (if anywhere).
    """
    event = NOTIFIED_KINDS.get(kind)
    if event is None:
        return None
    if plan.notifications is not None and event not in plan.notifications.events:
        return None
    return event


def notification_for(
    plan: ReleasePlan,
    roster: gates.Roster,
    status: ReleaseStatus,
    sequence: int,
    entry: TimelineEvent,
) -> Notification:
    """The message of timeline ``entry`` (a notified kind), as the release stands now."""
    event = NOTIFIED_KINDS[entry.kind]
    finished = event == "release_finished"
    approval = None
    if event == "approval_needed" and entry.wave is not None:
        gate = status.wave(entry.wave)
        approval = ApprovalRequest(
            groups=gates.gate_missing(gate),
            eligible_approvers=gates.eligible_approvers(roster, gate),
            command=approve_command(plan.id, entry.wave),
        )
    return Notification(
        id=f"{plan.id}/{sequence}",
        sequence=sequence,
        release_id=plan.id,
        application=plan.application,
        version=plan.version,
        event=event,
        wave=entry.wave,
        message=entry.message,
        actor=entry.actor,
        time=entry.at,
        approval=approval,
        outcome=status.phase if finished else None,
        error=status.error if finished or event == "rollback_started" else None,
    )
