"""How ``relman status`` shows an ``ec2_fleet``'s instances, batch by batch."""

from __future__ import annotations

from models.fleet import InstancePhase, InstanceStatus
from models.plan import Ec2FleetTarget, ReleasePlan, Wave
from models.status import TargetStatus
from workflows.fleet import counts

# Up to this many instances each get a line; a larger fleet shows only the instances that
# are neither pending nor done (the others are counted in its summary line).
ALL_SHOWN = 20
QUIET = (InstancePhase.PENDING, InstancePhase.DONE)


def phase_words(phase: InstancePhase) -> str:
    """``rolled back`` for ``rolled_back``."""
    return phase.value.replace("_", " ")


def command_result(instance: InstanceStatus) -> str | None:
    """``Failed, exit 3``: SSM's status of the instance's invocation and the exit code."""
    if instance.result is None:
        return None
    code = f", exit {instance.exit_code}" if instance.exit_code is not None else ""
    return f"{instance.result}{code}"


def instance_line(instance: InstanceStatus) -> str:
    """``i-0abc batch 2 failed (Failed, exit 3): deploy: disk full``."""
    text = f"  {instance.id} batch {instance.batch} {phase_words(instance.phase)}"
    if (result := command_result(instance)) is not None:
        text += f" ({result})"
    if instance.error:
        text += f": {instance.error}"
    return text


def size(target: TargetStatus) -> str:
    """``100 instance(s) in 10 batch(es)``."""
    batches = max((i.batch for i in target.instances), default=0)
    return f"{len(target.instances)} instance(s) in {batches} batch(es)"


def shown(target: TargetStatus) -> list[InstanceStatus]:
    """The instances worth a line: all of a small fleet, else those neither pending nor done."""
    every = len(target.instances) <= ALL_SHOWN
    return [i for i in target.instances if every or i.phase not in QUIET]


def status_lines(wave: str, target: TargetStatus) -> list[str]:
    """A summary line for the fleet, then one line per instance worth showing."""
    if not target.instances:
        return []
    lines = [f"fleet {target.name}: {counts(target.instances)} ({size(target)}, wave {wave})"]
    return lines + [instance_line(i) for i in shown(target)]


def plan_lines(plan: ReleasePlan, wave: Wave) -> list[str]:
    """``plan check``'s line for each fleet of ``wave``: how it is rolled out and undone."""
    lines = []
    for name in wave.targets:
        target = plan.target(name)
        if not isinstance(target, Ec2FleetTarget):
            continue
        undo = "none" if target.rollback == "none" else target.rollback.text
        lines.append(
            f"fleet {name}: batches of {target.batch_size}, at least "
            f"{target.min_healthy_percent}% in service; {target.command.text}; rollback: {undo}"
        )
    return lines
