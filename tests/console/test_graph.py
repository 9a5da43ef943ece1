"""The release page's wave graph: waves in dependency order, an arrow for each `after:`,
each box saying the wave's phase in words and what it waits for."""

from __future__ import annotations

from datetime import UTC, datetime

from console.graph import GAP_X, MARGIN, NODE_WIDTH, columns, layout
from models.status import ApprovalRecord, WavePhase, WaveStatus

AT = datetime(2026, 12, 5, 9, tzinfo=UTC)


def waves() -> list[WaveStatus]:
    return [
        WaveStatus(name="finance", department="finance", phase=WavePhase.COMPLETED),
        WaveStatus(name="hr", department="hr", phase=WavePhase.BAKING, after=["finance"],
                   step=1, percent=50),
        WaveStatus(name="ops", department="operations", after=["finance"],
                   phase=WavePhase.AWAITING_APPROVAL, required_approvals={"ops-leads": 2},
                   approvals=[ApprovalRecord(approver="olga", decision="approved",
                                             groups=["ops-leads"], at=AT)]),
        WaveStatus(name="tokyo", department="apac", after=["hr", "ops"],
                   phase=WavePhase.WAITING_FOR_WINDOW, next_start=AT),
    ]  # fmt: skip


def test_waves_stand_in_the_column_of_their_longest_chain_of_after() -> None:
    assert columns(waves()) == {"finance": 0, "hr": 1, "ops": 1, "tokyo": 2}
    graph = layout(waves())
    x = {n.name: n.x for n in graph.nodes}
    assert x["finance"] == MARGIN and x["hr"] == x["ops"] == MARGIN + NODE_WIDTH + GAP_X
    assert {n.name: n.y for n in graph.nodes}["ops"] > {n.name: n.y for n in graph.nodes}["hr"]
    assert sorted((e.source, e.target) for e in graph.edges) == [
        ("finance", "hr"), ("finance", "ops"), ("hr", "tokyo"), ("ops", "tokyo"),
    ]  # fmt: skip
    assert graph.width == 2 * MARGIN + 3 * NODE_WIDTH + 2 * GAP_X


def test_each_box_says_the_phase_in_words_and_what_the_wave_waits_for() -> None:
    nodes = {n.name: n for n in layout(waves()).nodes}
    assert (nodes["finance"].phase, nodes["finance"].detail) == ("completed", "finance")
    assert nodes["hr"].detail == "step 1, 50% of traffic"
    assert (nodes["ops"].phase, nodes["ops"].detail) == ("awaiting approval", "gate: 1/2 ops-leads")
    assert nodes["tokyo"].detail == "opens 2026-12-05 09:00 UTC"
    assert layout(waves()).description == (
        "finance: completed, first; hr: baking, after finance; ops: awaiting approval, after "
        "finance; tokyo: waiting for window, after hr, ops."
    )


def test_an_after_naming_no_wave_or_a_cycle_does_not_break_the_page() -> None:
    odd = [
        WaveStatus(name="a", department="x", after=["b"]),
        WaveStatus(name="b", department="x", after=["a", "gone"]),
    ]
    graph = layout(odd)
    assert {n.name for n in graph.nodes} == {"a", "b"}
    assert len(graph.edges) == 2
