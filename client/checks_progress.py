"""Checks' latest probes while a bake runs, read from its heartbeat, for ``relman status``.

A wave hears of its bake's checks only when the checks activity returns; the activity
heartbeats every check's last probe (``ChecksProgress``), which Temporal shows in the
describe of the wave's workflow. The CLI reads it there, as it reads running batches
(client.progress); the release records nothing more.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from temporalio.client import Client

from models.checks import RUN_CHECKS, CheckResult, ChecksProgress
from models.messages import WAVE_ID_SEPARATOR
from models.status import ReleaseStatus, WavePhase

log = logging.getLogger(__name__)


async def with_check_progress(client: Client, status: ReleaseStatus) -> ReleaseStatus:
    """``status`` with the latest probes of its baking waves' checks (a copy); as it was
    when none bakes with checks, or when Temporal cannot say."""
    if status.finished:
        return status
    baking = {w.name for w in status.waves if w.phase == WavePhase.BAKING and w.checks}
    if not baking:
        return status
    merged = status.model_copy(deep=True)
    try:
        described = await client.get_workflow_handle(status.release_id).describe()
        for child in described.raw_description.pending_children:
            parts = child.workflow_id.split(WAVE_ID_SEPARATOR)
            if len(parts) == 3 and parts[0] == status.release_id and parts[1] in baking:
                latest = await _latest(client, child.workflow_id)
                if latest:
                    wave = merged.wave(parts[1])
                    by_name = {c.name: c for c in wave.checks} | {c.name: c for c in latest}
                    wave.checks = list(by_name.values())
    except Exception as exc:  # RPC, codec or model errors: show what the release said
        log.debug("no check progress for %s: %s", status.release_id, exc)
        return status
    return merged


async def _latest(client: Client, wave_workflow_id: str) -> list[CheckResult]:
    described = await client.get_workflow_handle(wave_workflow_id).describe()
    for pending in described.raw_description.pending_activities:
        if pending.activity_type.name != RUN_CHECKS or not pending.heartbeat_details.payloads:
            continue
        details = await client.data_converter.decode(pending.heartbeat_details.payloads)
        try:
            return ChecksProgress.model_validate(details[0]).results
        except ValidationError:
            continue
    return []
