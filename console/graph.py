"""The release page's wave graph: waves laid out by dependency order, drawn as inline SVG.

A wave stands in the column of its longest chain of ``after:`` waves (the first waves in
column 0), waves of one column in plan order; an arrow runs from each wave to every wave
that waits for it. Each box names the wave, its phase (in words, not only in colour) and
what it is doing or waiting for, and links to the wave's section of the page.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.status import WavePhase, WaveStatus

NODE_WIDTH = 220
NODE_HEIGHT = 66
GAP_X = 56
GAP_Y = 18
MARGIN = 8
# Characters of the detail line that fit in a box.
DETAIL_CHARS = 32

# Fill and border by phase: light fills under dark text keep WCAG AA contrast.
PHASE_STYLE: dict[WavePhase, tuple[str, str]] = {
    WavePhase.PENDING: ("#f2f2f2", "#555"),
    WavePhase.WAITING_FOR_WINDOW: ("#fff4d6", "#8a6100"),
    WavePhase.AWAITING_APPROVAL: ("#fff4d6", "#8a6100"),
    WavePhase.DEPLOYING: ("#e6f0ff", "#0645ad"),
    WavePhase.BAKING: ("#e6f0ff", "#0645ad"),
    WavePhase.PAUSED: ("#fff4d6", "#8a6100"),
    WavePhase.COMPLETED: ("#e3f4e8", "#0a6b2a"),
    WavePhase.REJECTED: ("#fde2e1", "#a40000"),
    WavePhase.FAILED: ("#fde2e1", "#a40000"),
    WavePhase.ROLLED_BACK: ("#fde2e1", "#a40000"),
    WavePhase.SKIPPED: ("#f2f2f2", "#555"),
    WavePhase.CANCELLED: ("#f2f2f2", "#555"),
}


@dataclass(frozen=True)
class Node:
    """One wave's box: where it is drawn and what it says."""

    name: str
    phase: str
    detail: str
    x: int
    y: int
    fill: str
    stroke: str


@dataclass(frozen=True)
class Edge:
    """An arrow from a wave to one that waits for it, as an SVG path."""

    source: str
    target: str
    path: str


@dataclass(frozen=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int
    description: str


def columns(waves: list[WaveStatus]) -> dict[str, int]:
    """Each wave's column: the length of its longest chain of ``after:`` waves.

    An ``after:`` naming no wave of the release is ignored, and a cycle (which plan
    validation refuses) cannot loop: a wave is placed once.
    """
    names = {w.name: w for w in waves}
    placed: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        if name in placed:
            return placed[name]
        before = [a for a in names[name].after if a in names and a not in seen]
        placed[name] = max((depth(a, seen | {name}) + 1 for a in before), default=0)
        return placed[name]

    for wave in waves:
        depth(wave.name, frozenset())
    return placed


def detail(wave: WaveStatus) -> str:
    """What the wave is doing or waiting for, in a few words."""
    if wave.phase == WavePhase.AWAITING_APPROVAL and wave.required_approvals:
        given = {g: 0 for g in wave.required_approvals}
        for a in wave.approvals:
            if a.decision == "approved":
                for g in a.groups:
                    if g in given:
                        given[g] += 1
        text = "gate: " + ", ".join(
            f"{given[g]}/{n} {g}" for g, n in wave.required_approvals.items()
        )
    elif wave.phase in (WavePhase.DEPLOYING, WavePhase.BAKING):
        text = f"step {wave.step}, {wave.percent}% of traffic"
    elif wave.waiting_for:
        text = wave.waiting_for
    elif wave.next_start is not None:
        text = f"opens {wave.next_start:%Y-%m-%d %H:%M} UTC"
    else:
        text = wave.department
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


def layout(waves: list[WaveStatus]) -> Graph:
    """The graph of ``waves``, laid out left to right by dependency order."""
    column = columns(waves)
    rows: dict[int, int] = {}
    position: dict[str, tuple[int, int]] = {}
    nodes = []
    for wave in waves:
        col = column[wave.name]
        row = rows.get(col, 0)
        rows[col] = row + 1
        x = MARGIN + col * (NODE_WIDTH + GAP_X)
        y = MARGIN + row * (NODE_HEIGHT + GAP_Y)
        position[wave.name] = (x, y)
        fill, stroke = PHASE_STYLE.get(wave.phase, ("#f2f2f2", "#555"))
        nodes.append(
            Node(wave.name, wave.phase.value.replace("_", " "), detail(wave), x, y, fill, stroke)
        )
    edges = []
    for wave in waves:
        for source in wave.after:
            if source not in position:
                continue
            sx, sy = position[source]
            tx, ty = position[wave.name]
            start = (sx + NODE_WIDTH, sy + NODE_HEIGHT // 2)
            end = (tx - 2, ty + NODE_HEIGHT // 2)
            bend = (start[0] + end[0]) // 2
            path = f"M{start[0]},{start[1]} C{bend},{start[1]} {bend},{end[1]} {end[0]},{end[1]}"
            edges.append(Edge(source, wave.name, path))
    width = MARGIN * 2 + (max(column.values(), default=0) + 1) * (NODE_WIDTH + GAP_X) - GAP_X
    height = MARGIN * 2 + max(rows.values(), default=1) * (NODE_HEIGHT + GAP_Y) - GAP_Y
    return Graph(nodes, edges, width, height, describe(waves))


def describe(waves: list[WaveStatus]) -> str:
    """The graph in words, for screen readers: each wave, its phase and what it follows."""
    parts = []
    for wave in waves:
        after = f", after {', '.join(wave.after)}" if wave.after else ", first"
        parts.append(f"{wave.name}: {wave.phase.value.replace('_', ' ')}{after}")
    return "; ".join(parts) + "."
