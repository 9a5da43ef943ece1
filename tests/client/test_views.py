"""What `relman status` shows a person, rendered to text."""

from __future__ import annotations

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
    assert "wave ops next starts 2030-01-01 08:00:00 UTC (in " in text


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
