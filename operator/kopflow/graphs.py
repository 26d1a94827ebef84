"""The DAG of a workflow (or of a run, coloured by each task's phase) as Mermaid, DOT or SVG."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from kopflow.graphlayout import layout

FILL = {
    "Pending": "#e5e7eb",
    "Running": "#93c5fd",
    "Retrying": "#fde68a",
    "Succeeded": "#86efac",
    "Failed": "#fca5a5",
    "Skipped": "#f3f4f6",
    "Cancelled": "#d8b4fe",
}
"""Fill colour by task phase; a workflow (no run) is drawn white."""
NO_PHASE = "#ffffff"
CHAR_WIDTH = 7.2
"""Average width of a 12px sans-serif character: boxes fit their labels."""
BOX_HEIGHT = 42.0


@dataclass(frozen=True)
class Node:
    """One task as drawn: its name, dependencies, and (for a run) phase and notes."""

    name: str
    deps: tuple[str, ...]
    phase: str | None = None
    note: str = ""
    """`cached`, `reused`, `attempt 2`...: shown under the phase."""
    handler: bool = False
    """An onFailure task (drawn with a dashed border; it runs only when the run failed)."""


def nodes_of(workflow: Mapping[str, object], tasks: Mapping[str, object] | None) -> list[Node]:
    """The nodes of a workflow spec (as JSON) and, for a run, its status.tasks (as JSON)."""
    out = []
    for key, handler in (("tasks", False), ("onFailure", True)):
        for task in workflow.get(key) or []:  # type: ignore[attr-defined]
            name = task["name"]
            status = (tasks or {}).get(name) or {}
            assert isinstance(status, dict)
            phase = status.get("phase") if tasks is not None else None
            notes = []
            if status.get("reused"):
                notes.append("reused")
            elif status.get("cached"):
                notes.append("cached")
            if (status.get("attempts") or 0) > 1:
                notes.append(f"attempt {status['attempts']}")
            if tasks is not None and phase is None:
                phase = "Pending"
            deps = tuple(task.get("dependsOn") or ())
            out.append(Node(name, deps, phase, ", ".join(notes), handler))
    return out


def _label(node: Node) -> str:
    return " ".join(x for x in (node.phase or "", node.note and f"({node.note})") if x)


def mermaid(nodes: list[Node]) -> str:
    """A Mermaid flowchart, left to right; classes colour the phases."""
    ids = {n.name: f"t{i}" for i, n in enumerate(nodes)}
    lines = ["flowchart LR"]
    for n in nodes:
        text = n.name if not n.phase else f"{n.name}<br/>{_label(n)}"
        text = text.replace('"', "#quot;")
        shape = f'(["{text}"])' if n.handler else f'["{text}"]'
        lines.append(f"  {ids[n.name]}{shape}")
    for n in nodes:
        for dep in n.deps:
            if dep in ids:
                lines.append(f"  {ids[dep]} --> {ids[n.name]}")
    phases = sorted({n.phase for n in nodes if n.phase})
    for phase in phases:
        lines.append(f"  classDef {phase} fill:{FILL.get(phase, NO_PHASE)},stroke:#374151")
        members = ",".join(ids[n.name] for n in nodes if n.phase == phase)
        lines.append(f"  class {members} {phase}")
    return "\n".join(lines) + "\n"


def dot(nodes: list[Node]) -> str:
    """A Graphviz DOT digraph, left to right, filled by phase."""
    lines = [
        "digraph workflow {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="sans-serif", fillcolor="#ffffff"];',
    ]
    for n in nodes:
        label = n.name if not n.phase else f"{n.name}\n{_label(n)}"
        attrs = [f"label={json.dumps(label)}"]
        if n.phase:
            attrs.append(f'fillcolor="{FILL.get(n.phase, NO_PHASE)}"')
        if n.handler:
            attrs.append('style="rounded,filled,dashed"')
        lines.append(f"  {json.dumps(n.name)} [{', '.join(attrs)}];")
    known = {n.name for n in nodes}
    for n in nodes:
        for dep in n.deps:
            if dep in known:
                lines.append(f"  {json.dumps(dep)} -> {json.dumps(n.name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(nodes: list[Node], title: str = "") -> str:
    """A standalone SVG picture: one `<g class="task">` per task, edges as arrowed paths."""
    size = {
        n.name: (max(80.0, CHAR_WIDTH * max(len(n.name), len(_label(n))) + 24), BOX_HEIGHT)
        for n in nodes
    }
    deps = {n.name: [d for d in n.deps if d in size] for n in nodes}
    picture = layout(deps, size)
    width, height = max(picture.width, 120.0), picture.height
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title or 'workflow')}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#6b7280"/></marker></defs>',
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
    ]
    for edge in picture.edges:
        path = "M " + " L ".join(f"{x:.1f} {y:.1f}" for x, y in edge.points)
        parts.append(
            f'<path class="edge" data-from={quoteattr(edge.source)} data-to='
            f'{quoteattr(edge.target)} d="{path}" fill="none" stroke="#6b7280" '
            'stroke-width="1.5" marker-end="url(#arrow)"/>'
        )
    for n in nodes:
        box = picture.boxes[n.name]
        fill = FILL.get(n.phase, NO_PHASE) if n.phase else NO_PHASE
        dash = ' stroke-dasharray="5 3"' if n.handler or "reused" in n.note else ""
        cx = box.x + box.width / 2
        parts.append(
            f'<g class="task" data-task={quoteattr(n.name)} data-phase={quoteattr(n.phase or "")}>'
        )
        parts.append(f"<title>{escape(n.name)}{escape(' ' + _label(n) if n.phase else '')}</title>")
        parts.append(
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" '
            f'height="{box.height:.1f}" rx="6" fill="{fill}" stroke="#374151"{dash}/>'
        )
        if n.phase:
            parts.append(
                f'<text x="{cx:.1f}" y="{box.y + 17:.1f}" text-anchor="middle" '
                f'font-weight="bold">{escape(n.name)}</text>'
            )
            parts.append(
                f'<text x="{cx:.1f}" y="{box.y + 33:.1f}" text-anchor="middle" '
                f'fill="#374151">{escape(_label(n))}</text>'
            )
        else:
            parts.append(
                f'<text x="{cx:.1f}" y="{box.y + 25:.1f}" text-anchor="middle" '
                f'font-weight="bold">{escape(n.name)}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


RENDERERS = {"mermaid": mermaid, "dot": dot}
