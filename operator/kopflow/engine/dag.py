"""Graph helpers over task dependencies: order, cycles, ancestry.

All functions take `deps`, a mapping of task name -> names it depends on, in declaration order,
and are linear in the size of the graph.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One dependency cycle as a path that ends where it starts (`[a, b, a]`), or None.

    Iterative DFS so a 5,000-task chain does not hit the recursion limit. Unknown names are
    ignored (they are reported separately).
    """
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(deps, WHITE)
    for root in deps:
        if color[root] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        color[root] = GREY
        while stack:
            node, i = stack[-1]
            children = deps[node]
            if i < len(children):
                stack[-1] = (node, i + 1)
                child = children[i]
                state = color.get(child)
                if state == GREY:
                    return [*path[path.index(child) :], child]
                if state == WHITE:
                    color[child] = GREY
                    stack.append((child, 0))
                    path.append(child)
            else:
                color[node] = BLACK
                stack.pop()
                path.pop()
    return None


def topological_order(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Tasks ordered so that dependencies come first; ties keep declaration order.

    Kahn's algorithm with a ready list scanned in declaration order: deterministic, which is
    what makes "which task starts first" reproducible. Assumes no cycle.
    """
    index = {name: i for i, name in enumerate(deps)}
    remaining = {name: len(set(d for d in ds if d in index)) for name, ds in deps.items()}
    dependents: dict[str, list[str]] = {name: [] for name in deps}
    for name, ds in deps.items():
        for d in set(ds):
            if d in dependents:
                dependents[d].append(name)
    ready = [index[name] for name, n in remaining.items() if n == 0]
    heapq.heapify(ready)
    names = list(deps)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for child in dependents[name]:
            remaining[child] -= 1
            if remaining[child] == 0:
                heapq.heappush(ready, index[child])
    return order


def ancestors(deps: Mapping[str, Sequence[str]], name: str) -> set[str]:
    """Every task name transitively upstream of name."""
    seen: set[str] = set()
    stack = list(deps.get(name, ()))
    while stack:
        current = stack.pop()
        if current in seen or current not in deps:
            continue
        seen.add(current)
        stack.extend(deps[current])
    return seen
