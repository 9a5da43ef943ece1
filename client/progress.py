"""Targets a running batch has finished, read from its heartbeat, for ``relman status``.

A wave snapshots and applies its targets in one activity per step, and hears of them only
when that activity returns; the activity heartbeats the targets done so far
(``BatchProgress``). Temporal shows a running activity's last heartbeat in the describe of
its workflow, so the CLI reads it there and shows each target as it finishes: the release
records nothing more, and a worker that dies mid-batch leaves the same progress for the
next attempt to go on from.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from temporalio.client import Client

from client.checks_progress import with_check_progress
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


async def with_batch_progress(client: Client, status: ReleaseStatus) -> ReleaseStatus:
    """``status`` with the targets its waves' running batches have finished (a copy); as
    it was when no batch runs, or when Temporal cannot say (progress is a nicety: the
    status itself came from the release). Baking waves' checks show their latest probes
    (client.checks_progress)."""
    if status.finished:
        return status
    status = await with_check_progress(client, status)
    unfinished = {
        w.name
        for w in status.waves
        if any(t.phase == TargetPhase.APPLYING for t in w.targets)
        or (w.phase == WavePhase.DEPLOYING and any(t.phase in _UNFINISHED for t in w.targets))
    }
    if not unfinished:
        return status
    merged = status.model_copy(deep=True)
    try:
        described = await client.get_workflow_handle(status.release_id).describe()
        for child in described.raw_description.pending_children:
            parts = child.workflow_id.split(WAVE_ID_SEPARATOR)
            if len(parts) == 3 and parts[0] == status.release_id and parts[1] in unfinished:
                for progress in await _batches(client, child.workflow_id):
                    merge_batch_progress(merged.wave(parts[1]), progress)
    except Exception as exc:  # RPC, codec or model errors: show what the release said
        log.debug("no batch progress for %s: %s", status.release_id, exc)
        return status
    return merged


async def _batches(client: Client, wave_workflow_id: str) -> list[BatchProgress]:
    """The last heartbeat of each snapshot or apply batch the wave runs now."""
    described = await client.get_workflow_handle(wave_workflow_id).describe()
    found = []
    for pending in described.raw_description.pending_activities:
        if pending.activity_type.name not in BATCHES or not pending.heartbeat_details.payloads:
            continue
        details = await client.data_converter.decode(pending.heartbeat_details.payloads)
        try:
            found.append(BatchProgress.model_validate(details[0]))
        except ValidationError:
            continue  # heartbeated by relman before batches reported progress
    return found
