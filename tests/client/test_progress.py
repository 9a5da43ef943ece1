"""``relman status`` shows what a running batch has done, from its heartbeat."""

from __future__ import annotations

from client.progress import merge_batch_progress
from models.messages import ApplyResult, BatchProgress, Snapshot
from models.status import TargetPhase, TargetStatus, WavePhase, WaveStatus


def target(name: str, kind: str, phase: TargetPhase, **fields: object) -> TargetStatus:
    return TargetStatus(name=name, kind=kind, resource=f"{kind} {name}", phase=phase, **fields)


def wave(*targets: TargetStatus) -> WaveStatus:
    return WaveStatus(
        name="edge", department="ops", phase=WavePhase.DEPLOYING, targets=list(targets)
    )


def test_applied_targets_show_what_they_hold_at_the_steps_percent():
    edge = wave(
        target(
            "alias",
            "lambda_alias",
            TargetPhase.APPLYING,
            before="version 1 (all traffic)",
            percent=10,
        ),
        target("flag", "ssm_parameter", TargetPhase.APPLYING),
        target("lb", "elbv2_weights", TargetPhase.APPLYING),
        target("old", "ssm_parameter", TargetPhase.FAILED, error="denied"),
    )
    done = {
        "alias": ApplyResult(resource="lambda alias", changed=True, display="1: 50%, 2: 50%"),
        "flag": ApplyResult(resource="ssm parameter", changed=False, display="on"),
        "old": ApplyResult(resource="ssm parameter", changed=True, display="x"),
    }
    progress = BatchProgress(
        what="apply",
        total=4,
        percent=50,
        results={name: r.model_dump(mode="json") for name, r in done.items()},
    )

    merge_batch_progress(edge, progress)

    assert [(t.name, t.phase, t.after, t.percent) for t in edge.targets] == [
        ("alias", TargetPhase.APPLIED, "1: 50%, 2: 50%", 50),
        ("flag", TargetPhase.APPLIED, "on", 100),
        ("lb", TargetPhase.APPLYING, None, 0),
        ("old", TargetPhase.FAILED, None, 0),  # what the release said stands
    ]


def test_snapshotted_targets_show_what_they_were_before():
    edge = wave(target("flag", "ssm_parameter", TargetPhase.PENDING))
    snapshot = Snapshot(resource="ssm parameter /flag", exists=True, display="off")
    progress = BatchProgress(
        what="snapshot", total=1, results={"flag": snapshot.model_dump(mode="json")}
    )

    merge_batch_progress(edge, progress)

    assert [(t.phase, t.before) for t in edge.targets] == [(TargetPhase.PENDING, "off")]
