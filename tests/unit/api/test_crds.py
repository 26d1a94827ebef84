"""The generated CRDs: in sync with the models, structural, and enforcing what they promise."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.api.schema_check import CRD_DIR, all_errors, cel_errors, schema_errors

from kopflow import manifests
from kopflow.api import crd
from kopflow.engine.validation import validate_document

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.yaml"))


def test_generated_crds_match_the_committed_files() -> None:
    rendered = crd.render()
    assert sorted(rendered) == sorted(p.name for p in CRD_DIR.glob("*.yaml"))
    for name, text in rendered.items():
        assert (CRD_DIR / name).read_text() == text, f"{name} drifted: run `kopflow crds`"
    shipped = json.loads(crd.SCHEMAS_FILE.read_text())
    assert shipped == crd.schemas(), f"{crd.SCHEMAS_FILE} drifted: run `kopflow crds`"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, sub in node.get("properties", {}).items():
            out += _walk(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            out += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


@pytest.mark.parametrize("name", sorted(crd.render()))
def test_crd_is_structural_and_bounded(name: str) -> None:
    doc = yaml.safe_load(crd.render()[name])
    version = doc["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert doc["spec"]["names"]["categories"] == ["kopflow"]
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "$defs"} & set(node), path
        assert (
            "type" in node
            or node.get("x-kubernetes-preserve-unknown-fields")
            or node.get("x-kubernetes-int-or-string")
        ), path
        if node.get("type") == "array" and not path.startswith(".status"):
            assert "maxItems" in node, f"{path}: unbounded list"


def test_names_and_printer_columns() -> None:
    wf, run = crd.workflow_crd(), crd.workflow_run_crd()
    assert wf["spec"]["names"]["shortNames"] == ["wf"]
    assert run["spec"]["names"]["shortNames"] == ["wfr"]
    run_cols = [c["name"] for c in run["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert run_cols[:4] == ["Phase", "Progress", "Duration", "Age"]
    wf_cols = [c["name"] for c in wf["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert wf_cols == ["Schedule", "Suspended", "Last Run", "Next Run", "Age"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_the_crd(path: Path) -> None:
    for doc in manifests.load(path):
        assert all_errors(doc.body) == []


def _etl() -> dict[str, Any]:
    return copy.deepcopy(manifests.load(CRD_DIR.parent / "examples" / "etl.yaml")[0].body)


def _mutate(change: str) -> dict[str, Any]:
    doc = _etl()
    spec, tasks = doc["spec"], doc["spec"]["tasks"]
    match change:
        case "bad task name":
            tasks[0]["name"] = "Extract_Data"
        case "string parallelism":
            spec["parallelism"] = "four"
        case "retry kind":
            tasks[0]["retry"] = {"limit": 1, "reasons": ["Crashed"]}
        case "negative limit":
            tasks[0]["retry"] = {"limit": -1}
        case "missing tasks":
            del spec["tasks"]
        case "too many tasks":
            spec["tasks"] = [{"name": f"t{i}", "command": ["true"]} for i in range(2001)]
        case "bad when operator":
            tasks[4]["when"][0]["operator"] = "equals"
        case "bad concurrency":
            spec["schedule"] = {"cron": "* * * * *", "concurrencyPolicy": "Sometimes"}
    return doc


SCHEMA_BAD = [
    "bad task name",
    "string parallelism",
    "retry kind",
    "negative limit",
    "missing tasks",
    "too many tasks",
    "bad when operator",
    "bad concurrency",
]


@pytest.mark.parametrize("change", SCHEMA_BAD)
def test_schema_refuses_bad_manifests(change: str) -> None:
    assert schema_errors(_mutate(change), "workflows")


def test_cel_command_xor_script() -> None:
    doc = _etl()
    doc["spec"]["tasks"][2]["command"] = ["python3"]
    errors = cel_errors(doc, "workflows")
    assert errors == ["spec.tasks[2].script: set either command or script, not both"]


def _rules(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [r["rule"] for r in node.get("x-kubernetes-validations", ())]
        return own + [r for v in node.values() for r in _rules(v)]
    if isinstance(node, list):
        return [r for v in node for r in _rules(v)]
    return []


def test_templates_in_code_are_refused_by_validation_not_by_cel() -> None:
    """String-scanning rules exceed the real server's CEL budget (see crd.py): not in the CRD."""
    rules = _rules(crd.workflow_crd()) + _rules(crd.workflow_run_crd())
    assert rules and not [r for r in rules if "matches(" in r or "contains(" in r]
    doc = _etl()
    doc["spec"]["tasks"][0]["script"]["source"] = "print('{{ params.date }}')"
    doc["spec"]["tasks"][3]["command"] = ["sh", "-c", "echo {{params.mode}}"]
    assert cel_errors(doc, "workflows") == []
    paths = [i.path for i in validate_document(doc)]
    assert paths == ["spec.tasks[0].script.source", "spec.tasks[3].command[2]"]
    ok = _etl()
    ok["spec"]["tasks"][0]["script"]["source"] = "print('{{ .Values.go_template }}')"
    assert validate_document(ok) == []


def test_cel_parameter_rules_and_on_failure_names() -> None:
    doc = _etl()
    doc["spec"]["parameters"][1]["default"] = "everything"
    doc["spec"]["parameters"][0]["required"] = True
    doc["spec"]["onFailure"] = [{"name": "load", "command": ["true"]}]
    assert cel_errors(doc, "workflows") == [
        "spec.onFailure: onFailure task names must differ from the names in tasks",
        "spec.parameters[0].required: a required parameter cannot have a default; drop one of them",
        "spec.parameters[1].default: default must be one of enum",
    ]


def test_cel_run_needs_exactly_one_workflow_source() -> None:
    both = {
        "apiVersion": "kopflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "r"},
        "spec": {"workflowRef": {"name": "etl"}, "workflow": _etl()["spec"]},
    }
    assert all_errors(both) == ["spec: set exactly one of spec.workflowRef or spec.workflow"]
    neither = {**both, "spec": {"parameters": {"a": "b"}}}
    assert all_errors(neither) == ["spec: set exactly one of spec.workflowRef or spec.workflow"]
