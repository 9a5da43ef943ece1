"""AWS misbehaving under a release: an endpoint that goes away, throttling and 503s.

The worker reaches moto through a proxy (``aws_proxy``). The outage scenario stops it while
an apply is in flight, during a bake and while a compensation is, for ``OUTAGE_SECONDS``;
the fault scenario answers a seeded share of all calls with ThrottlingException (400, or
Lambda's 429) and 503 in each protocol's error shape. Releases retry with backoff and end right.
"""

from __future__ import annotations

import pytest

from models.durations import parse_duration
from models.status import ReleasePhase
from tests.reliability.conftest import Campaign
from tests.reliability.scenarios import OUTAGE_SECONDS, Outcome
from tests.reliability.test_crashes import assert_nothing_lost

pytestmark = [pytest.mark.devserver, pytest.mark.timeout(600)]


@pytest.mark.scenario("outages")
async def test_release_waits_out_aws_outages_mid_apply_and_mid_rollback(
    campaign: Campaign,
) -> None:
    outcome: Outcome = await campaign.outcome("outages")

    assert_nothing_lost(outcome, ReleasePhase.ROLLED_BACK)
    for moment in ("mid-apply", "mid-rollback"):
        outage = outcome.figures[moment]
        assert outage["down_seconds"] >= OUTAGE_SECONDS
        # The activity kept retrying (with backoff) while the endpoint was down.
        assert outage["attempts_while_down"] >= 2, outage
        assert outage["last_failure"], outage
    # The bake counted only the time it read its alarms, and the timeline says so.
    bake = outcome.figures["mid-bake"]
    [unread] = bake["timeline"]
    spelled = unread.removeprefix("alarms unread for ").split(" ", 1)[0]
    assert parse_duration(spelled).total_seconds() >= OUTAGE_SECONDS, bake
    assert " while baking at 50% (" in unread, bake
    assert "last error: Could not connect to the endpoint URL" in unread, bake
    assert unread.endswith(f"): the bake lasts {spelled} longer"), bake


@pytest.mark.scenario("faults")
async def test_throttling_and_503_answers_do_not_change_the_outcome(campaign: Campaign) -> None:
    outcome: Outcome = await campaign.outcome("faults")

    complete, rejected = outcome.releases
    assert outcome.statuses[complete.id].phase == ReleasePhase.COMPLETED
    assert outcome.statuses[rejected.id].phase == ReleasePhase.REJECTED
    for release in outcome.releases:
        assert outcome.aws_after[release.id] == outcome.aws_expected[release.id], release.id
    assert outcome.ssm_new_versions == outcome.ssm_expected_versions
    assert outcome.problems == []
    injected = outcome.figures["faults injected"]
    services = {key.split(" ", 1)[1].split(":")[0] for key in injected}
    assert services >= {"ssm", "lambda", "elasticloadbalancing", "monitoring"}, injected
    assert sum(n for k, n in injected.items() if k.startswith("throttle")) >= 10, injected
    assert sum(n for k, n in injected.items() if k.startswith("503")) >= 5, injected


@pytest.mark.scenario("unreachable_aws")
async def test_worker_without_aws_fails_the_release_clearly_and_changes_nothing(
    campaign: Campaign,
) -> None:
    outcome: Outcome = await campaign.outcome("unreachable_aws")

    (release,) = outcome.releases
    status = outcome.statuses[release.id]
    endpoint = outcome.figures["endpoint"]
    # It cannot even name its resources (the worker's account, from STS) to lock them.
    assert status.phase == ReleasePhase.FAILED
    assert status.error and status.error.startswith(
        f"release {release.id} refused: cannot name the resources it changes, to lock them: "
    )
    assert f'Could not connect to the endpoint URL: "{endpoint}/' in status.error
    assert status.error.endswith("; it changed nothing")
    # `relman submit` waited for the worker's answer and reported the refusal (exit 1).
    code, said = outcome.figures["submit"]
    assert code == 1 and f"release {release.id} refused: cannot name the resources" in said
    code, shown, errors = outcome.figures["status"]
    assert code == 0 and "Could not connect to the endpoint URL" in shown, errors
    assert outcome.aws_after[release.id] == outcome.aws_expected[release.id]
