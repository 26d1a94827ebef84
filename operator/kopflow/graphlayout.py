"""A small layered (Sugiyama-style) layout of a task DAG, left to right, for `kopflow graph`.

No graphviz binary is installed where kopflow runs, and a DAG of tasks needs little: each task
goes to the layer of its longest dependency chain, an edge that skips layers passes through a
waypoint in each layer it crosses, and the order within each layer is improved by barycenter
sweeps (keeping the order with the fewest crossings). Pure and deterministic: the same graph
gives the same picture.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kopflow.engine import dag

SWEEPS = 8
"""Barycenter passes (down, up, down...): crossings rarely improve after a few."""
LAYER_GAP = 70.0
"""Horizontal space between two layers, where the edges run."""
ROW_GAP = 18.0
"""Vertical space between two boxes of a layer."""
MARGIN = 20.0
WAYPOINT = 10.0
"""Height reserved for an edge passing through a layer, so passing edges do not bunch up."""


@dataclass(frozen=True)
class Box:
    """Where a task is drawn: its top-left corner and size."""

    x: float
    y: float
    width: float
    height: float
    layer: int

    @property
    def left(self) -> tuple[float, float]:
        return (self.x, self.y + self.height / 2)

    @property
    def right(self) -> tuple[float, float]:
        return (self.x + self.width, self.y + self.height / 2)


@dataclass(frozen=True)
class Edge:
    """A dependency drawn from `source` (upstream) to `target`, through `points`."""

    source: str
    target: str
    points: list[tuple[float, float]]


@dataclass
class Layout:
    boxes: dict[str, Box] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0
    crossings: int = 0
    """Edge crossings between adjacent layers in the chosen order (0 for a tree)."""


def layers_of(deps: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each task's layer: 0 without dependencies, else one more than its deepest dependency.

    Raises ValueError on a cycle (naming it); unknown dependencies are ignored."""
    cycle = dag.find_cycle(deps)
    if cycle is not None:
        raise ValueError(f"the dependencies form a cycle: {' -> '.join(cycle)}")
    layer: dict[str, int] = {}
    for name in dag.topological_order(deps):
        layer[name] = 1 + max((layer[d] for d in deps[name] if d in layer), default=-1)
    return layer


def _crossings(upper: list[str], lower: list[str], links: Mapping[str, Sequence[str]]) -> int:
    """Crossings between two adjacent layers; links: lower node -> its upper neighbours."""
    pos = {n: i for i, n in enumerate(upper)}
    pairs = sorted((i, pos[u]) for i, n in enumerate(lower) for u in links.get(n, ()) if u in pos)
    count = 0
    for a, (la, ua) in enumerate(pairs):
        for lb, ub in pairs[a + 1 :]:
            if lb != la and ub < ua:
                count += 1
    return count


def _order(
    rows: list[list[str]], up: dict[str, list[str]], down: dict[str, list[str]]
) -> tuple[list[list[str]], int]:
    """Rows reordered by barycenter sweeps; the best order seen and its crossings."""

    def total(order: list[list[str]]) -> int:
        return sum(_crossings(order[i - 1], order[i], up) for i in range(1, len(order)))

    best, best_count = [list(r) for r in rows], total(rows)
    current = [list(r) for r in rows]
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        indices = range(1, len(current)) if downward else range(len(current) - 2, -1, -1)
        for i in indices:
            ref = current[i - 1] if downward else current[i + 1]
            pos = {n: p for p, n in enumerate(ref)}
            links = up if downward else down

            def key(
                item: tuple[int, str],
                pos: dict[str, int] = pos,
                links: dict[str, list[str]] = links,
            ) -> float:
                at, name = item
                near = [pos[n] for n in links.get(name, ()) if n in pos]
                return sum(near) / len(near) if near else float(at)

            current[i] = [n for _, n in sorted(enumerate(current[i]), key=key)]
        count = total(current)
        if count < best_count:
            best, best_count = [list(r) for r in current], count
        if best_count == 0:
            break
    return best, best_count


def layout(
    deps: Mapping[str, Sequence[str]],
    size: Mapping[str, tuple[float, float]],
) -> Layout:
    """Boxes and edge paths of a DAG. deps: task -> its dependencies, in declaration order;
    size: task -> (width, height) of its box."""
    layer = layers_of(deps)
    up: dict[str, list[str]] = {n: [] for n in layer}
    down: dict[str, list[str]] = {n: [] for n in layer}
    chains: list[list[str]] = []
    for name in deps:
        for dep in deps[name]:
            if dep not in layer:
                continue
            chain = [dep]
            for hop in range(layer[dep] + 1, layer[name]):
                waypoint = f"\0{dep}\0{name}\0{hop}"
                layer[waypoint] = hop
                up[waypoint], down[waypoint] = [], []
                chain.append(waypoint)
            chain.append(name)
            for a, b in itertools.pairwise(chain):
                up[b].append(a)
                down[a].append(b)
            chains.append(chain)
    count = 1 + max(layer.values(), default=-1)
    rows: list[list[str]] = [[] for _ in range(count)]
    for name in layer:  # declaration order first, waypoints after
        rows[layer[name]].append(name)
    rows, crossings = _order(rows, up, down)

    def dims(name: str) -> tuple[float, float]:
        return size.get(name, (0.0, 0.0)) if name in deps else (0.0, WAYPOINT)

    widths = [max((dims(n)[0] for n in row), default=0.0) for row in rows]
    heights = [sum(dims(n)[1] + ROW_GAP for n in row) - ROW_GAP for row in rows]
    tallest = max(heights, default=0.0)
    result = Layout(crossings=crossings)
    points: dict[str, tuple[float, float]] = {}
    x = MARGIN
    for i, row in enumerate(rows):
        y = MARGIN + (tallest - heights[i]) / 2
        for name in row:
            w, h = dims(name)
            if name in deps:
                box = Box(x + (widths[i] - w) / 2, y, w, h, i)
                result.boxes[name] = box
            else:
                points[name] = (x + widths[i] / 2, y + h / 2)
            y += h + ROW_GAP
        x += widths[i] + LAYER_GAP
    for chain in chains:
        source, target = chain[0], chain[-1]
        path = [result.boxes[source].right]
        path += [points[w] for w in chain[1:-1]]
        path.append(result.boxes[target].left)
        result.edges.append(Edge(source, target, path))
    result.width = x - LAYER_GAP + MARGIN if rows else 2 * MARGIN
    result.height = tallest + 2 * MARGIN
    return result
