"""A worker SIGKILLed while a fleet batch's SSM command is sent: every instance runs the
command once, the release completes, the fleet ends back in service (see
``fleet_scenarios``)."""

from __future__ import annotations

from collections import Counter

import pytest

from models.fleet import InstancePhase
from models.status import ReleasePhase
from tests.reliability.conftest import Campaign
from tests.reliability.scenarios import Outcome

pytestmark = [pytest.mark.devserver, pytest.mark.timeout(600)]


@pytest.mark.scenario("fleet_crash")
async def test_a_worker_killed_while_a_batch_command_is_sent_runs_it_once_per_instance(
    campaign: Campaign,
) -> None:
    outcome: Outcome = await campaign.outcome("fleet_crash")

    (status,) = outcome.statuses.values()
    assert status.phase == ReleasePhase.COMPLETED, status.error
    ids, sent = outcome.figures["instances"], outcome.figures["sent"]
    # One command per batch reached AWS, in batch order; batch 2's is the one sent by the
    # killed worker (its answer lost), found again by the next worker rather than resent.
    assert [c["instances"] for c in sent] == [ids[0:2], ids[2:4], ids[4:6]]
    assert Counter(i for c in sent for i in c["instances"]) == dict.fromkeys(ids, 1)
    assert sent[1]["comment"] == outcome.figures["batch_2_comment"]
    # Batch 2's next attempt had no heartbeat to go by (its worker died before the answer):
    # it looked the command up by its comment (one ListCommands per attempt).
    assert outcome.figures["aws_calls"]["ssm:ListCommands"] == 4
    (fleet,) = status.wave("web").targets
    assert [(i.id, i.phase, i.batch, i.result) for i in fleet.instances] == [
        (i, InstancePhase.DONE, n // 2 + 1, "Success") for n, i in enumerate(ids)
    ]
    assert [i.command_id for i in fleet.instances] == [
        c["command_id"] for c in sent for _ in c["instances"]
    ]
    # Every instance registered again, on its port, and healthy.
    port = outcome.figures["port"]
    assert outcome.figures["health"] == {f"{i}:{port}": "healthy" for i in ids}
    (kill,) = outcome.kills
    assert kill.recovered_seconds is not None
    assert outcome.problems == []
