"""The pure parts of the cluster commands: task order, what a retry reuses, parameter checks,
the layered layout and the pictures (Mermaid, DOT, SVG)."""

from __future__ import annotations

import contextlib
import io
import itertools
import random
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from kopflow.api.workflow import WorkflowSpec
from kopflow.cli import main
from kopflow.cliclient import CliError
from kopflow.commands.common import check_params, task_order
from kopflow.commands.inspect import describe
from kopflow.commands.retry import reusable
from kopflow.graphlayout import layers_of, layout
from kopflow.graphs import FILL, Node, dot, mermaid, nodes_of, svg

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"
DIAMOND = {
    "tasks": [
        {"name": "a"},
        {"name": "d", "dependsOn": ["b", "c"]},
        {"name": "b", "dependsOn": ["a"]},
        {"name": "c", "dependsOn": ["a"]},
    ],
    "onFailure": [{"name": "page"}],
}


def test_tasks_are_shown_in_dependency_order_whatever_order_the_api_returns() -> None:
    tasks = {n: {} for n in sorted(["a", "b", "c", "d", "page", "zz-unknown"])}
    assert task_order(DIAMOND, tasks) == ["a", "b", "c", "d", "page", "zz-unknown"]


def run_of(phases: dict[str, str], outputs: dict[str, dict[str, str]] | None = None) -> Any:
    tasks = {n: {"phase": p, "outputs": (outputs or {}).get(n)} for n, p in phases.items()}
    return {
        "metadata": {"name": "r1", "namespace": "ns"},
        "spec": {"workflowRef": {"name": "wf"}},
        "status": {"phase": "Failed", "workflow": DIAMOND, "tasks": tasks},
    }


def test_retry_reuses_every_success_and_from_reruns_a_task_and_its_downstream() -> None:
    run = run_of(
        {"a": "Succeeded", "b": "Succeeded", "c": "Failed", "d": "Skipped", "page": "Succeeded"},
        {"a": {"rows": "1"}},
    )
    assert reusable(run, None) == {"a": {"rows": "1"}, "b": {}}  # onFailure tasks never
    assert reusable(run, "b") == {"a": {"rows": "1"}}
    assert reusable(run, "a") == {}
    with pytest.raises(
        CliError, match=r'--from x: no task "x" in run "r1" \(its tasks: a, d, b, c\)'
    ):
        reusable(run, "x")


def test_parameters_are_checked_naming_the_parameter_and_the_allowed_ones() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "parameters": [{"name": "mode", "enum": ["full", "delta"], "default": "full"},
                           {"name": "day", "required": True}],
            "tasks": [{"name": "t", "image": "i", "command": ["true"]}],
        }
    )  # fmt: skip
    check_params("etl", spec, {"day": "1"})
    with pytest.raises(CliError, match=r'-p size: workflow "etl" has no parameter "size" \(its '
                       r"parameters: mode, day\)") as err:  # fmt: skip
        check_params("etl", spec, {"day": "1", "size": "3"})
    assert err.value.code == 2
    with pytest.raises(CliError, match=r'-p mode: "x" is not an allowed value of "mode"; use one'):
        check_params("etl", spec, {"day": "1", "mode": "x"})
    with pytest.raises(CliError, match=r'-p day: required parameter "day" is not set'):
        check_params("etl", spec, {})


def test_get_shows_phase_attempts_cached_reused_message_and_outputs() -> None:
    run = run_of({"a": "Succeeded", "b": "Failed"}, {"a": {"rows": "1", "url": "x"}})
    run["status"]["tasks"]["a"].update(reused=True, message="reused the result of run r0")
    run["status"]["tasks"]["b"].update(attempts=3, reason="Error", message="Error (exit code 2)")
    run["status"]["tasks"]["c"] = {"phase": "Succeeded", "cached": True, "attempts": 0}
    text = describe(run)
    lines = text.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("TASK")))
    rows = [line.split() for line in lines[header + 1 :]]
    assert [r[0] for r in rows] == ["a", "b", "c", "d", "page"]
    assert rows[0][4] == "reused" and rows[0][-1] == "rows=1,url=x"
    assert rows[1][:3] == ["b", "Failed", "3"] and "Error (exit code 2)" in lines[header + 2]
    assert rows[2][:4] == ["c", "Succeeded", "0", "yes"]
    assert rows[3][:3] == ["d", "Pending", "0"]
    assert "Workflow:    wf" in text


# --- layout and pictures ---------------------------------------------------------------------


def test_layers_follow_the_longest_dependency_chain() -> None:
    deps = {"a": [], "b": ["a"], "c": ["a", "b"], "d": []}
    assert layers_of(deps) == {"a": 0, "d": 0, "b": 1, "c": 2}
    with pytest.raises(ValueError, match="a -> b -> a"):
        layers_of({"a": ["b"], "b": ["a"]})


def test_ordering_removes_crossings_declaration_order_would_draw() -> None:
    # declared x, y above and p (from y), q (from x) below: drawn in that order they cross
    deps = {"x": [], "y": [], "p": ["y"], "q": ["x"]}
    picture = layout(deps, dict.fromkeys(deps, (50.0, 30.0)))
    assert picture.crossings == 0
    boxes = picture.boxes
    assert (boxes["x"].y < boxes["y"].y) == (boxes["q"].y < boxes["p"].y)


def test_an_edge_over_several_layers_bends_through_each_layer() -> None:
    deps = {"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"]}
    picture = layout(deps, dict.fromkeys(deps, (40.0, 20.0)))
    (long,) = [e for e in picture.edges if (e.source, e.target) == ("a", "d")]
    assert len(long.points) == 4  # out of a, through layers 1 and 2, into d
    xs = [x for x, _ in long.points]
    assert xs == sorted(xs)
    for box in picture.boxes.values():  # nothing outside the picture
        assert box.x >= 0 and box.x + box.width <= picture.width
        assert box.y >= 0 and box.y + box.height <= picture.height


def edges_cross(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    (p1, p2), (p3, p4) = a, b

    def side(p: Any, q: Any, r: Any) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    return side(p1, p2, p3) * side(p1, p2, p4) < 0 and side(p3, p4, p1) * side(p3, p4, p2) < 0


def test_boxes_never_overlap_in_a_large_random_dag() -> None:
    rng = random.Random(7)
    names = [f"t{i}" for i in range(300)]
    deps = {n: rng.sample(names[:i], min(i, rng.randint(0, 3))) for i, n in enumerate(names)}
    picture = layout(deps, {n: (60.0 + len(n), 30.0) for n in names})
    assert set(picture.boxes) == set(names)
    assert len(picture.edges) == sum(len(d) for d in deps.values())
    for a, b in itertools.combinations(picture.boxes.values(), 2):
        apart_x = a.x + a.width <= b.x or b.x + b.width <= a.x
        apart_y = a.y + a.height <= b.y or b.y + b.height <= a.y
        assert apart_x or apart_y
    for edge in picture.edges:  # every dependency points forward, left to right
        assert picture.boxes[edge.source].x < picture.boxes[edge.target].x


def test_svg_is_valid_with_one_node_per_task_coloured_by_phase() -> None:
    status = {"a": {"phase": "Succeeded", "reused": True}, "b": {"phase": "Failed", "attempts": 2}}
    nodes = nodes_of(DIAMOND, status)
    text = svg(nodes, title="run <r1> & co")
    root = ET.fromstring(text.split("?>", 1)[1])
    assert root.tag == f"{SVG}svg" and float(root.get("width") or 0) > 0
    groups = root.findall(f"{SVG}g[@class='task']")
    assert sorted(g.get("data-task") or "" for g in groups) == ["a", "b", "c", "d", "page"]
    fills = {g.get("data-task"): g.find(f"{SVG}rect").get("fill") for g in groups}  # type: ignore[union-attr]
    assert fills == {"a": FILL["Succeeded"], "b": FILL["Failed"], "c": FILL["Pending"],
                     "d": FILL["Pending"], "page": FILL["Pending"]}  # fmt: skip
    texts = {"".join(g.itertext()) for g in groups}
    assert any("Succeeded (reused)" in t for t in texts)
    assert any("Failed (attempt 2)" in t for t in texts)
    assert len(root.findall(f"{SVG}path[@class='edge']")) == 4
    assert root.find(f"{SVG}title").text == "run <r1> & co"  # type: ignore[union-attr]


def test_mermaid_and_dot_have_every_task_and_dependency() -> None:
    nodes = nodes_of(DIAMOND, None)
    text = mermaid(nodes)
    assert text.startswith("flowchart LR\n")
    assert text.count("-->") == 4 and 't4(["page"])' in text and "classDef" not in text
    graph = dot([Node("a", ()), Node("b", ("a",), "Running")])
    assert '"a" -> "b";' in graph and f'fillcolor="{FILL["Running"]}"' in graph


def test_graph_of_a_file_needs_no_cluster(tmp_path: Path) -> None:
    out = tmp_path / "etl.svg"
    with contextlib.redirect_stdout(io.StringIO()):
        etl = str(ROOT / "examples" / "etl.yaml")
        argv = ["--kubeconfig", str(tmp_path / "none"), "graph", etl, "--format", "svg"]
        assert main([*argv, "--out", str(out)]) == 0
    root = ET.fromstring(out.read_text().split("?>", 1)[1])
    assert len(root.findall(f"{SVG}g[@class='task']")) == 5
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["graph", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in err.getvalue()
