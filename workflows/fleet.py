"""Decisions about an ``ec2_fleet`` target that need no Temporal API: how its instances
split into batches under the minimum healthy share, how long each stage may take, what
each instance's status and the fleet's record of its batches say.

Used by ``WaveWorkflow`` (rolling a fleet out), ``ReleaseWorkflow`` (its rollback) and
the tests directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from models.fleet import InstancePhase, InstanceResult, InstanceStatus
from models.plan import Ec2FleetTarget
from models.status import TargetStatus

# Stages poll AWS this often (a draining or registering batch, command invocations); the
# wave's bake interval if shorter.
FLEET_POLL = timedelta(seconds=5)
# Every stage's activity heartbeats at least every poll; this many missed polls and more
# mean its worker is gone.
FLEET_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
# An attempt lasts the stage's own wait plus this margin (AWS calls, a slow worker).
FLEET_MARGIN = timedelta(minutes=2)
# What instance errors keep of a command's output.
OUTPUT_SHOWN = 200


class FleetRefused(ValueError):
    """The fleet cannot be rolled out as the plan asks (nothing has changed)."""


def batch_size(target: Ec2FleetTarget, total: int) -> int:
    """Instances per batch for a fleet of ``total``: the plan's count, or its percentage
    rounded up (at least one)."""
    size = target.batch_size
    if isinstance(size, str):
        return max(1, math.ceil(total * int(size.rstrip("%")) / 100))
    return min(size, total)


def plan_batches(target: Ec2FleetTarget, instance_ids: Sequence[str]) -> list[list[str]]:
    """The fleet's batches, in the order they run (instance ids sorted, so every run of
    the same fleet splits it the same way).

    Refused when a batch would leave fewer instances in service than
    ``min_healthy_percent`` of the fleet."""
    ids = sorted(instance_ids)
    total = len(ids)
    if not total:
        raise FleetRefused(f"{target.resource} has no running instance")
    size = batch_size(target, total)
    needed = math.ceil(total * target.min_healthy_percent / 100)
    if total - size < needed:
        raise FleetRefused(
            f"{target.resource}: a batch of {size} of {total} instance(s) leaves "
            f"{total - size} in service, fewer than min_healthy_percent "
            f"{target.min_healthy_percent}% ({needed}); make batch_size at most "
            f"{max(total - needed, 0)} or lower min_healthy_percent"
        )
    return [ids[i : i + size] for i in range(0, total, size)]


def initial_instances(batches: Sequence[Sequence[str]]) -> list[InstanceStatus]:
    """Every instance pending, with its batch (numbered from 1)."""
    return [
        InstanceStatus(id=instance, batch=number)
        for number, batch in enumerate(batches, start=1)
        for instance in batch
    ]


def command_key(wave_workflow_id: str, target: str, batch: int) -> str:
    """The idempotency key of one batch's command: the wave's child workflow id names the
    release, the wave and the wave's attempt."""
    return f"{wave_workflow_id}:{target}:b{batch}"


def drain_timeout(target: Ec2FleetTarget) -> timedelta:
    """A drain attempt's timeout: the target's drain wait and a margin."""
    return target.drain_timeout + FLEET_MARGIN


def healthy_timeout(target: Ec2FleetTarget) -> timedelta:
    """A return to service's attempt: the target's health wait and a margin."""
    return target.healthy_timeout + FLEET_MARGIN


def command_timeout(target: Ec2FleetTarget) -> timedelta:
    """A command attempt's timeout: the command's own and a margin."""
    return target.command.timeout + FLEET_MARGIN


def restore_timeout(target: Ec2FleetTarget, written: dict[str, Any] | None) -> timedelta:
    """A fleet restore's attempt: for every batch that changed, a drain, the rollback
    command and the return to service."""
    batches = len((written or {}).get("batches", [])) or 1
    rollback = target.rollback.timeout if target.rollback != "none" else timedelta(0)
    per_batch = target.drain_timeout + rollback + target.healthy_timeout
    return per_batch * batches + FLEET_MARGIN


def poll_seconds(bake_interval: timedelta) -> float:
    """How often a stage polls AWS: the wave's bake interval, at most ``FLEET_POLL``."""
    return min(FLEET_POLL, bake_interval).total_seconds()


def record_batch(written: dict[str, Any] | None, instances: Sequence[str]) -> dict[str, Any]:
    """The fleet's record of its batches with one more, about to leave service."""
    batches = list((written or {}).get("batches", []))
    return {"batches": [*batches, {"instances": list(instances), "command": False}]}


def record_command(written: dict[str, Any]) -> dict[str, Any]:
    """The record with its newest batch's command about to be sent (it may run from now)."""
    batches = [dict(b) for b in written["batches"]]
    batches[-1]["command"] = True
    return {"batches": batches}


def merged_record(
    earlier: dict[str, Any] | None, latest: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The record a wave reports (``latest``), after the batches of an earlier attempt of
    the wave (``earlier``) whose instances it has not changed again: those changed first."""
    if not earlier:
        return latest
    again = {i for b in (latest or {}).get("batches", []) for i in b["instances"]}
    kept = []
    for batch in earlier.get("batches", []):
        left = [i for i in batch["instances"] if i not in again]
        if left:
            kept.append({**batch, "instances": left})
    batches = kept + list((latest or {}).get("batches", []))
    return {"batches": batches} if batches else latest


def done_instances(targets: Sequence[TargetStatus]) -> dict[str, list[InstanceStatus]]:
    """Each fleet's instances that are done, by target: what a retried wave need not run
    again."""
    done = {t.name: [i for i in t.instances if i.phase == InstancePhase.DONE] for t in targets}
    return {name: instances for name, instances in done.items() if instances}


def done_before(ids: Sequence[str], earlier: Sequence[InstanceStatus]) -> bool:
    """Whether an earlier attempt of the wave finished every instance of the batch ``ids``
    (so the batch is not run again); ``earlier`` holds the instances it finished."""
    done = {i.id for i in earlier}
    return bool(ids) and all(i in done for i in ids)


def keep_earlier(instances: list[InstanceStatus], earlier: Sequence[InstanceStatus]) -> None:
    """Each instance as an earlier attempt of the wave left it, where it has one."""
    by_id = {i.id: i for i in earlier}
    instances[:] = [by_id.get(i.id, i).model_copy() for i in instances]


def set_phase(instances: list[InstanceStatus], ids: Sequence[str], phase: InstancePhase) -> None:
    """Move the instances ``ids`` to ``phase``."""
    chosen = set(ids)
    for instance in instances:
        if instance.id in chosen:
            instance.phase = phase


def result_text(result: InstanceResult) -> str:
    """How an invocation that did not succeed reads: ``Failed (exit 3): disk full``."""
    text = result.status + (f" (exit {result.exit_code})" if result.exit_code is not None else "")
    why = result.output or (result.details if result.details != result.status else "")
    return text + (f": {why[-OUTPUT_SHOWN:]}" if why else "")


def record_results(
    instances: list[InstanceStatus], command_id: str, results: Sequence[InstanceResult]
) -> None:
    """Each instance's invocation of its batch's command."""
    by_id = {r.instance_id: r for r in results}
    for instance in instances:
        result = by_id.get(instance.id)
        if result is None:
            continue
        instance.command_id = command_id
        instance.result, instance.exit_code = result.status, result.exit_code
        instance.error = None if result.succeeded else result_text(result)


def batch_failed(instances: list[InstanceStatus], ids: Sequence[str], why: str) -> None:
    """Every instance of a failed batch is failed (it stays out of service); those whose
    own command succeeded say why the batch failed."""
    chosen = set(ids)
    for instance in instances:
        if instance.id in chosen:
            instance.phase = InstancePhase.FAILED
            instance.error = instance.error or why


def rolled_back(instances: list[InstanceStatus], written: dict[str, Any] | None) -> None:
    """After a fleet's restore: the instances of every batch that changed are rolled back."""
    changed = {i for b in (written or {}).get("batches", []) for i in b["instances"]}
    for instance in instances:
        if instance.id in changed:
            instance.phase = InstancePhase.ROLLED_BACK


def counts(instances: Sequence[InstanceStatus]) -> str:
    """``3 done, 1 failed, 6 pending`` in the order of the phases."""
    tally = {p: sum(1 for i in instances if i.phase == p) for p in InstancePhase}
    return ", ".join(f"{n} {p.value.replace('_', ' ')}" for p, n in tally.items() if n)
