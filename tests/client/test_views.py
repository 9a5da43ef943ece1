"""What `relman status` shows a person, rendered to text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from rich.console import Console

from client.views import StatusView, countdown
from models.status import (
    PendingApproval,
    ReleasePhase,
    ReleaseStatus,
    TargetPhase,
    TargetStatus,
    WavePhase,
    WaveStatus,
)

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def test_countdown() -> None:
    assert countdown(NOW + timedelta(days=2, hours=3, minutes=5), NOW) == "in 2d 3h 5m"
    assert countdown(NOW + timedelta(seconds=30), NOW) == "in 30s"
    assert countdown(NOW - timedelta(minutes=1), NOW) == "now"


def test_status_shows_waits_traffic_and_who_may_approve() -> None:
    status = ReleaseStatus(
        release_id="payments-2.4.0",
        application="payments",
        version="2.4.0",
        requested_by="alice",
        phase=ReleasePhase.AWAITING_APPROVAL,
        paused=True,
        waves=[
            WaveStatus(
                name="finance",
                department="finance",
                phase=WavePhase.BAKING,
                waiting_for="baking 30m at 10%",
                targets=[
                    TargetStatus(
                        name="api",
                        kind="lambda_alias",
                        resource="lambda alias api:live",
                        phase=TargetPhase.APPLIED,
                        percent=10,
                        before="1: 100%",
                        after="1: 90% / 2: 10%",
                    )  # fmt: skip
                ],
            ),
            WaveStatus(
                name="ops",
                department="operations",
                phase=WavePhase.WAITING_FOR_WINDOW,
                next_start=datetime(2030, 1, 1, 8, tzinfo=UTC),
                window="mon-fri 09:00-18:00 Asia/Tokyo",
                timezone="Asia/Tokyo",
                targets=[
                    TargetStatus(name="cfg", kind="ssm_parameter", resource="ssm parameter /x")
                ],
            ),
        ],
        pending_approvals=[
            PendingApproval(wave="hr", missing={"hr-cab": 2}, eligible_approvers=["bob", "carol"])
        ],
    )
    console = Console(record=True, width=200)
    StatusView(status).render(console)
    text = console.export_text()
    assert "paused by an operator" in text
    assert "baking 30m at 10%" in text
    assert "10%" in text and "1: 90% / 2: 10%" in text
    assert "waiting on wave hr: 2 more from hr-cab (bob, carol)" in text
    # In the wave's own time zone (its window's) beside UTC, and how long until then.
    [starts] = [line for line in text.splitlines() if line.startswith("wave ops next starts")]
    assert re.fullmatch(
        r"wave ops next starts in (\d+d )?(\d+h )?(\d+m)?: "
        r"2030-01-01 17:00 Asia/Tokyo \(08:00 UTC\)",
        starts.strip(),
    ), starts


def test_status_says_dev_policy_while_one_is_in_use() -> None:
    from models.status import PolicyInfo

    def shown(policy: PolicyInfo) -> str:
        status = ReleaseStatus(
            release_id="r", application="a", version="1", requested_by="alice", policy=policy
        )
        console = Console(record=True, width=160)
        StatusView(status).render(console)
        return console.export_text()

    dev = PolicyInfo(
        source="/x/.relman/dev-policy.yaml", version="dev", digest="sha256:ab", dev=True
    )
    assert "policy: dev policy dev (the local stack's; not for production)" in shown(dev)
    real = PolicyInfo(
        source="s3://org/relman.yaml", version="2026-03-01.1", digest="sha256:" + "a" * 64
    )
    text = shown(real)
    assert "policy: 2026-03-01.1 (sha256:aaaaaaaaaaaa) from s3://org/relman.yaml" in text
    assert "dev policy" not in text


def failed_wave_status(targets: list[TargetStatus]) -> ReleaseStatus:
    return ReleaseStatus(
        release_id="payments-2.4.0",
        application="payments",
        version="2.4.0",
        requested_by="alice",
        phase=ReleasePhase.ROLLED_BACK,
        waves=[
            WaveStatus(
                name="apac",
                department="apac",
                phase=WavePhase.FAILED,
                error="alarm in ALARM while baking at 50%: api-5xx (threshold crossed)",
                targets=targets,
            )
        ],
    )


def target(name: str, phase: TargetPhase) -> TargetStatus:
    return TargetStatus(name=name, kind="ssm_parameter", resource=f"ssm parameter /{name}",
                        phase=phase)  # fmt: skip


def test_a_failed_wave_says_its_targets_were_rolled_back() -> None:
    status = failed_wave_status(
        [target("api", TargetPhase.ROLLED_BACK), target("cfg", TargetPhase.ROLLED_BACK)]
    )
    console = Console(record=True, width=200)
    StatusView(status).render(console)
    phase_column = [
        line.split("│")[3].strip()
        for line in console.export_text().splitlines()
        if line.startswith("│") and line.split("│")[3].strip()
    ]
    assert phase_column == [
        "failed",
        "alarm in ALARM while baking at 50%: api-5xx (threshold crossed)",
        "its targets were rolled back",
    ]
    # -o json says the same.
    [wave] = StatusView(status).to_json()["waves"]
    assert (wave["phase"], wave["error"], wave["targets_note"]) == (
        "failed",
        "alarm in ALARM while baking at 50%: api-5xx (threshold crossed)",
        "its targets were rolled back",
    )


def test_a_failed_wave_names_what_was_rolled_back_or_that_nothing_changed() -> None:
    some = failed_wave_status(
        [target("api", TargetPhase.ROLLED_BACK), target("cfg", TargetPhase.PENDING)]
    )
    assert some.waves[0].targets_note == "api rolled back"
    untouched = failed_wave_status([target("api", TargetPhase.PENDING)])
    assert untouched.waves[0].targets_note == "nothing was changed"
    # Snapshotted, so it may have been changed before the wave heard of it: no claim.
    snapshotted = failed_wave_status([target("api", TargetPhase.PENDING)])
    snapshotted.waves[0].targets[0].before = "2.3.1"
    assert snapshotted.waves[0].targets_note is None
    # A wave that did not fail needs no note.
    untouched.waves[0].phase = WavePhase.COMPLETED
    assert untouched.waves[0].targets_note is None
