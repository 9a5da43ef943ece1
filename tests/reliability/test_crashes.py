"""SIGKILL the worker and the Temporal server mid-release: after a restart nothing is lost.

Each scenario (see ``scenarios``) drives a multi-wave release of SSM parameters, a Lambda
alias and ELB listener weights, and kills a process at points it finds by watching the
release: a call of one apply held at the AWS proxy, an activity attempt running, a wave
waiting for its window or its approvals. What every release must show at its end:

- the phase it was heading for, and every resource exactly as expected (full describe);
- one new SSM parameter version per change: no write applied twice, none lost;
- each approval given before a crash counted once, a retried approval not twice;
- a timeline without duplicate steps; traffic never moved backwards except in a rollback.
"""

from __future__ import annotations

import pytest

from models.status import ReleasePhase
from tests.reliability.conftest import Campaign
from tests.reliability.scenarios import FAILOVER_TARGETS, Outcome
from workflows.steps import TARGET_HEARTBEAT_TIMEOUT

pytestmark = [pytest.mark.devserver, pytest.mark.timeout(600)]


def assert_nothing_lost(outcome: Outcome, end: ReleasePhase) -> None:
    for release_id, status in outcome.statuses.items():
        assert status.phase == end, (release_id, status.phase, status.error)
        assert outcome.aws_after[release_id] == outcome.aws_expected[release_id], release_id
    assert outcome.ssm_new_versions == outcome.ssm_expected_versions
    assert outcome.problems == []


@pytest.mark.scenario("completing")
async def test_ten_worker_kills_during_a_release_lose_nothing(campaign: Campaign) -> None:
    outcome: Outcome = await campaign.outcome("completing")

    assert_nothing_lost(outcome, ReleasePhase.COMPLETED)
    points = [k.point for k in outcome.kills]
    assert len(set(points)) == len(points) == 10, points
    assert all(k.victim == "worker" for k in outcome.kills)
    (status,) = outcome.statuses.values()
    assert sorted(a.approver for a in status.wave("canary").approvals) == ["bob", "dave"]
    assert outcome.figures["approval repeated"]["accepted"] is True
    assert {e.kind for e in status.timeline} >= {"gate_passed", "waiting_for_window"}
    code, message = outcome.figures["late approval"]
    assert code == 1 and "the release has already ended (completed)" in message


@pytest.mark.scenario("rolling_back")
async def test_worker_kills_during_a_rollback_restore_everything_once(
    campaign: Campaign,
) -> None:
    outcome: Outcome = await campaign.outcome("rolling_back")

    assert_nothing_lost(outcome, ReleasePhase.ROLLED_BACK)
    assert len(outcome.kills) == 3
    (status,) = outcome.statuses.values()
    restored = [e.target for e in status.timeline if e.kind == "target_restored"]
    assert restored == ["b-alb", "b-fn", "b-cfg"]  # newest first, each once
    assert [a.approver for a in status.wave("canary").approvals] == ["carol"]


@pytest.mark.scenario("server_kills")
async def test_temporal_server_kills_on_the_same_sqlite_file(campaign: Campaign) -> None:
    outcome: Outcome = await campaign.outcome("server_kills")

    assert_nothing_lost(outcome, ReleasePhase.REJECTED)
    assert [k.victim for k in outcome.kills] == ["temporal"] * 4
    (status,) = outcome.statuses.values()
    assert [a.approver for a in status.wave("one").approvals] == ["bob"]
    assert [a.decision for a in status.wave("two").approvals] == ["rejected"]


@pytest.mark.scenario("random_kills")
async def test_kills_at_random_points_lose_nothing(campaign: Campaign) -> None:
    outcome: Outcome = await campaign.outcome("random_kills")
    seed = outcome.figures["seed"]

    for release_id, status in outcome.statuses.items():
        assert status.phase == ReleasePhase.COMPLETED, (seed, release_id, status.error)
        assert outcome.aws_after[release_id] == outcome.aws_expected[release_id], seed
    assert outcome.ssm_new_versions == outcome.ssm_expected_versions, seed
    assert outcome.problems == [], seed
    assert len(outcome.kills) + len(outcome.figures.get("not reached", [])) == len(
        outcome.figures["points"]
    )


@pytest.mark.scenario("failover")
async def test_a_worker_killed_mid_apply_hands_the_rest_to_an_idle_worker_in_seconds(
    campaign: Campaign,
) -> None:
    outcome: Outcome = await campaign.outcome("failover")

    assert_nothing_lost(outcome, ReleasePhase.REJECTED)
    apply, restore = outcome.figures["apply"], outcome.figures["restore"]
    # While the first worker ran the batch, status showed each target it had finished.
    assert outcome.figures["status before the kill"] == {
        "applied": FAILOVER_TARGETS - 1,
        "applying": 1,
    }
    bound = TARGET_HEARTBEAT_TIMEOUT.total_seconds() + 5
    for moment in (apply, restore):
        assert "Heartbeat" in moment["failure noticed"], moment
        assert moment["resumed after kill (s)"] <= bound, moment
    # The retry read and wrote the one target left, not all 42 again.
    ssm_calls = apply["ssm calls after the kill"]
    assert ssm_calls.get("ssm:PutParameter") == 1, ssm_calls
    assert sum(ssm_calls.values()) <= 5, ssm_calls
