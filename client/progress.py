"""What a wave's running activities have done so far, read from their heartbeats, for
``relman status`` and the console.

A wave hears what an activity did only when the activity returns. Three kinds report as
they go, in their heartbeat details, which Temporal shows in the describe of the wave's
workflow:

- a snapshot or apply batch (``BatchProgress``): each target it has finished;
- a bake's checks (``ChecksProgress``): each check's latest probe;
- a fleet batch's command (``FleetCommandProgress``): each instance whose invocation ended.

The CLI reads them there and shows each as it happens: the release records nothing more,
and a worker that dies mid-activity leaves the same details for the next attempt to go on
from.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client

from models.checks import RUN_CHECKS, ChecksProgress
from models.fleet import FLEET_COMMAND, FleetCommandProgress, InstancePhase, InstanceResult
from models.messages import (
    APPLY_TARGETS,
    SNAPSHOT_TARGETS,
    WAVE_ID_SEPARATOR,
    ApplyResult,
    BatchProgress,
    Snapshot,
)
from models.plan import TRAFFIC_KINDS
from models.status import ReleaseStatus, TargetPhase, WavePhase, WaveStatus
from workflows.fleet import record_results

log = logging.getLogger(__name__)

BATCHES = (APPLY_TARGETS, SNAPSHOT_TARGETS)
# Targets a running batch may still change.
_UNFINISHED = (TargetPhase.PENDING, TargetPhase.APPLYING)


def merge_batch_progress(wave: WaveStatus, progress: BatchProgress) -> None:
    """Show in ``wave`` what its running batch has done: applied targets as ``applied``
    (what they hold now, at the batch's percent), snapshotted ones with their *before*."""
    for target in wave.targets:
        data = progress.results.get(target.name)
        if data is None or target.phase not in _UNFINISHED:
            continue
        if progress.what == "snapshot":
            if target.before is None:
                target.before = Snapshot.model_validate(data).display
            continue
        result = ApplyResult.model_validate(data)
        target.phase = TargetPhase.APPLIED
        target.after = result.display
        target.error = None
        target.percent = 100
        if target.kind in TRAFFIC_KINDS and progress.percent is not None:
            target.percent = progress.percent


def merge_check_progress(wave: WaveStatus, progress: ChecksProgress) -> None:
    """Show in a baking ``wave`` each check's latest probe."""
    if wave.phase != WavePhase.BAKING:
        return
    by_name = {c.name: c for c in wave.checks} | {c.name: c for c in progress.results}
    wave.checks = list(by_name.values())


def merge_fleet_progress(wave: WaveStatus, progress: FleetCommandProgress) -> None:
    """Show in ``wave`` the result of each instance of a fleet's running batch whose
    command invocation has ended; the others keep running."""
    results = [InstanceResult.model_validate(r) for r in progress.results.values()]
    for target in wave.targets:
        running = [i for i in target.instances if i.phase == InstancePhase.RUNNING]
        if running:
            record_results(running, progress.command_id, results)


def _busy(wave: WaveStatus) -> bool:
    """Whether an activity of ``wave`` may be reporting progress now."""
    if wave.phase == WavePhase.BAKING:
        return bool(wave.checks)
    return any(t.phase == TargetPhase.APPLYING for t in wave.targets) or (
        wave.phase == WavePhase.DEPLOYING and any(t.phase in _UNFINISHED for t in wave.targets)
    )


# Each reporting activity: the shape of its details and where they go.
_MERGES: dict[str, tuple[type[Any], Any]] = {
    APPLY_TARGETS: (BatchProgress, merge_batch_progress),
    SNAPSHOT_TARGETS: (BatchProgress, merge_batch_progress),
    RUN_CHECKS: (ChecksProgress, merge_check_progress),
    FLEET_COMMAND: (FleetCommandProgress, merge_fleet_progress),
}


async def with_running_progress(client: Client, status: ReleaseStatus) -> ReleaseStatus:
    """``status`` (a copy) with what its waves' running activities have done so far; as it
    was when none runs, or when Temporal cannot say (progress is a nicety: the status
    itself came from the release)."""
    if status.finished:
        return status
    busy = {w.name for w in status.waves if _busy(w)}
    if not busy:
        return status
    merged = status.model_copy(deep=True)
    try:
        described = await client.get_workflow_handle(status.release_id).describe()
        for child in described.raw_description.pending_children:
            parts = child.workflow_id.split(WAVE_ID_SEPARATOR)
            if len(parts) == 3 and parts[0] == status.release_id and parts[1] in busy:
                wave = merged.wave(parts[1])
                for kind, details in await _heartbeats(client, child.workflow_id):
                    shape, merge = _MERGES[kind]
                    try:
                        merge(wave, shape.model_validate(details))
                    except ValidationError:
                        continue  # heartbeated by a relman that reported no progress yet
    except Exception as exc:  # RPC, codec or model errors: show what the release said
        log.debug("no progress for %s: %s", status.release_id, exc)
        return status
    return merged


async def _heartbeats(client: Client, wave_workflow_id: str) -> list[tuple[str, Any]]:
    """The last heartbeat of each reporting activity the wave runs now, with its type."""
    described = await client.get_workflow_handle(wave_workflow_id).describe()
    found = []
    for pending in described.raw_description.pending_activities:
        kind = pending.activity_type.name
        if kind not in _MERGES or not pending.heartbeat_details.payloads:
            continue
        details = await client.data_converter.decode(pending.heartbeat_details.payloads)
        found.append((kind, details[0]))
    return found
