"""The pure rules of a fleet's batches (workflows.fleet): sizes by count or percentage, the
minimum healthy share, the record of what changed that the rollback reads."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from models.fleet import InstancePhase
from models.plan import Ec2FleetTarget
from workflows import fleet as logic

IDS = [f"i-{n:02d}" for n in range(10)]


def fleet(**fields: Any) -> Ec2FleetTarget:
    return Ec2FleetTarget.model_validate(
        {
            "name": "web",
            "kind": "ec2_fleet",
            "instances": {"tags": {"app": "web"}},
            "command": {"commands": ["deploy"], "timeout": "20m"},
            "rollback": {"commands": ["undo"], "timeout": "10m"},
        }
        | fields
    )


@pytest.mark.parametrize(
    ("batch_size", "sizes"),
    [(1, [1] * 10), (3, [3, 3, 3, 1]), ("10%", [1] * 10), ("34%", [4, 4, 2]), ("100%", [10])],
)
def test_batches_by_count_or_percentage_rounded_up(batch_size: int | str, sizes: list[int]) -> None:
    batches = logic.plan_batches(fleet(batch_size=batch_size), list(reversed(IDS)))
    assert [len(b) for b in batches] == sizes
    assert [i for b in batches for i in b] == IDS  # sorted: every run splits alike


def test_a_batch_must_leave_the_minimum_healthy_share_in_service() -> None:
    assert len(logic.plan_batches(fleet(batch_size="30%", min_healthy_percent=70), IDS)) == 4
    with pytest.raises(logic.FleetRefused, match=r"a batch of 4 of 10 instance\(s\) leaves 6"):
        logic.plan_batches(fleet(batch_size=4, min_healthy_percent=70), IDS)
    with pytest.raises(logic.FleetRefused, match="no running instance"):
        logic.plan_batches(fleet(), [])


def test_the_record_of_batches_says_which_ran_their_command() -> None:
    written = logic.record_batch(None, IDS[:2])
    written = logic.record_command(written)
    written = logic.record_batch(written, IDS[2:4])
    assert written == {
        "batches": [
            {"instances": IDS[:2], "command": True},
            {"instances": IDS[2:4], "command": False},
        ]
    }
    instances = logic.initial_instances([IDS[:2], IDS[2:4], IDS[4:]])
    logic.rolled_back(instances, written)
    assert [i.phase for i in instances[:5]] == [InstancePhase.ROLLED_BACK] * 4 + [
        InstancePhase.PENDING
    ]
    # Each changed batch: drain, rollback command and return to service, plus a margin.
    assert logic.restore_timeout(fleet(), written) == 2 * timedelta(minutes=30) + logic.FLEET_MARGIN


def test_bad_fleet_sections_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="invalid batch_size '0%'"):
        fleet(batch_size="0%")
    with pytest.raises(ValueError, match="instances need tags, an auto_scaling_group or both"):
        fleet(instances={})
    with pytest.raises(ValueError, match="AWS-RunShellScript needs commands"):
        fleet(command={"document": "AWS-RunShellScript"})
    with pytest.raises(ValueError, match="rollback"):
        Ec2FleetTarget.model_validate(
            {
                "name": "w",
                "kind": "ec2_fleet",
                "instances": {"tags": {"a": "b"}},
                "command": {"commands": ["x"]},
            }
        )


def test_a_retried_waves_record_keeps_what_the_earlier_attempt_changed() -> None:
    earlier = {
        "batches": [
            {"instances": IDS[:2], "command": True},
            {"instances": IDS[2:4], "command": True},
        ]
    }
    latest = {"batches": [{"instances": IDS[:2], "command": True}]}

    assert (
        logic.merged_record(earlier, latest)
        == {
            "batches": [
                {"instances": IDS[2:4], "command": True},  # older: rolled back last
                {"instances": IDS[:2], "command": True},
            ]
        }
    )
    assert logic.merged_record(latest, latest) == latest  # a report merged twice
    assert logic.merged_record(None, latest) == latest
    assert logic.merged_record(earlier, None) == earlier
