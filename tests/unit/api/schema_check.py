"""Check documents against a CRD the way the API server does: OpenAPI schema, then CEL rules."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

CRD_DIR = Path(__file__).resolve().parents[3] / "crds"


@cache
def crd_schema(plural: str) -> dict[str, Any]:
    """The openAPIV3Schema of a generated CRD file."""
    crd = yaml.safe_load((CRD_DIR / f"{plural}.kopflow.dev.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def schema_errors(doc: dict[str, Any], plural: str) -> list[str]:
    """OpenAPI errors as `path: message` (x-kubernetes-* keywords are ignored by jsonschema)."""
    validator = jsonschema.Draft7Validator(crd_schema(plural))
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def _rules(schema: dict[str, Any], doc: Any, path: str) -> Iterator[tuple[str, dict, Any]]:
    for rule in schema.get("x-kubernetes-validations", ()):
        yield path, rule, doc
    if isinstance(doc, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in doc:
                yield from _rules(sub, doc[key], f"{path}.{key}")
    elif isinstance(doc, list) and "items" in schema:
        for i, item in enumerate(doc):
            yield from _rules(schema["items"], item, f"{path}[{i}]")


@cache
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_errors(doc: dict[str, Any], plural: str) -> list[str]:
    """Messages of every x-kubernetes-validations rule that evaluates to false on doc, as
    created: transition rules (those reading oldSelf) apply to updates only."""
    errors = []
    for path, rule, node in _rules(crd_schema(plural), doc, ""):
        if "oldSelf" in rule["rule"]:
            continue
        result = _program(rule["rule"]).evaluate({"self": celpy.json_to_cel(node)})
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and result):
            errors.append(f"{path.lstrip('.')}{rule.get('fieldPath', '')}: {rule['message']}")
    return errors


def all_errors(doc: dict[str, Any]) -> list[str]:
    """What a real API server would refuse about doc (schema first, CEL when it passes)."""
    plural = {"Workflow": "workflows", "WorkflowRun": "workflowruns"}[doc["kind"]]
    return schema_errors(doc, plural) or cel_errors(doc, plural)
