"""A worker SIGKILLed while a job step starts its ECS task: the task runs once, the release
completes (see ``job_scenarios``)."""

from __future__ import annotations

import pytest

from models.jobs import JobPhase
from models.status import ReleasePhase
from tests.reliability.conftest import Campaign
from tests.reliability.scenarios import Outcome

pytestmark = [pytest.mark.devserver, pytest.mark.timeout(600)]


@pytest.mark.scenario("job_crash")
async def test_a_worker_killed_while_starting_a_migration_never_starts_a_second_one(
    campaign: Campaign,
) -> None:
    outcome: Outcome = await campaign.outcome("job_crash")

    (status,) = outcome.statuses.values()
    assert status.phase == ReleasePhase.COMPLETED, status.error
    tasks = outcome.figures["tasks"]
    assert [t["startedBy"] for t in tasks] == [outcome.figures["started_by"]]
    (job,) = status.wave("db").jobs
    assert job.phase == JobPhase.SUCCEEDED and job.reference == tasks[0]["taskArn"]
    assert outcome.ssm_new_versions == outcome.ssm_expected_versions
    assert outcome.problems == []
