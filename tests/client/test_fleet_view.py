"""How plan check and status show a fleet: its rollout in one line, its instances by phase
(every instance of a small fleet; of a large one only those neither pending nor done)."""

from __future__ import annotations

from pathlib import Path

from client.fleet_view import plan_lines, status_lines
from models.fleet import InstancePhase, InstanceStatus
from models.loader import load_plan
from models.status import TargetStatus

EXAMPLE = Path(__file__).parents[2] / "examples" / "fleet-patching.yaml"


def test_plan_check_says_how_the_example_fleet_is_patched_and_undone() -> None:
    plan = load_plan(EXAMPLE)

    assert plan_lines(plan, plan.wave("web")) == [
        "fleet web-fleet: batches of 34%, at least 60% in service; AWS-RunPatchBaseline "
        "(Operation=Install, RebootOption=RebootIfNeeded); rollback: none"
    ]


def fleet_status(count: int) -> TargetStatus:
    instances = [
        InstanceStatus(
            id=f"i-{n:03d}",
            batch=n // 10 + 1,
            phase=InstancePhase.DONE,
            result="Success",
            exit_code=0,
        )
        for n in range(count)
    ]
    instances[12] = instances[12].model_copy(
        update={
            "phase": InstancePhase.FAILED,
            "result": "Failed",
            "exit_code": 3,
            "error": "disk full",
        }
    )
    for instance in instances[13:]:
        instance.phase, instance.result, instance.exit_code = InstancePhase.PENDING, None, None
    return TargetStatus(name="web", kind="ec2_fleet", resource="ec2 fleet", instances=instances)


def test_a_large_fleet_shows_counts_and_only_the_instances_worth_a_look() -> None:
    assert status_lines("w", fleet_status(100)) == [
        "fleet web: 87 pending, 12 done, 1 failed (100 instance(s) in 10 batch(es), wave w)",
        "  i-012 batch 2 failed (Failed, exit 3): disk full",
    ]


def test_a_small_fleet_shows_every_instance() -> None:
    lines = status_lines("w", fleet_status(14))
    assert (
        lines[0]
        == "fleet web: 1 pending, 12 done, 1 failed (14 instance(s) in 2 batch(es), wave w)"
    )
    assert lines[1] == "  i-000 batch 1 done (Success, exit 0)"
    assert lines[-1] == "  i-013 batch 2 pending"
    assert len(lines) == 15
