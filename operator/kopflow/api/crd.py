"""Generate the CustomResourceDefinitions from the pydantic models.

The models are the single source of truth: this turns their JSON schema into a Kubernetes
structural schema (no $ref, no anyOf, every object typed), then adds what JSON schema cannot say
(list-map keys, CEL rules, printer columns).
"""

from __future__ import annotations

import ast
import copy
import inspect
import itertools
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from kopflow import yamlspec
from kopflow.api.base import Model
from kopflow.api.run import WorkflowRunSpec, WorkflowRunStatus
from kopflow.api.workflow import GROUP, VERSION, WorkflowSpec, WorkflowStatus

Schema = dict[str, Any]

# CEL rules, attached by the path of the object they guard (JSON schema property names).
#
# The API server refuses a CRD whose rules may cost too much: each rule's estimated cost of one
# evaluation, times how often it can run in one object (the product of the maxItems above it),
# must stay under 10^7 (StaticEstimatedCostLimit), and the sum over all rules under 10^8. A
# string of maxLength L counts as 4*L bytes, and scanning it costs 0.1 per byte. Costs below
# were read from kube-apiserver v1.36.2's refusals ("exceeds budget by factor of F", with
# maxItems scaled up until it speaks):
#
# - No template in `script.source` (`matches()` of an 11-unit regex on 64 KiB): 288,500 per
#   source, x 2,000 tasks = 5.8*10^8, 58x the budget. No template in `command` items (256 of
#   4 KiB): 4.6*10^6 per task, 9.2*10^9 for 2,000 tasks. Even `contains('{{')` costs 26,000
#   per source, 5.2x the budget. To fit, scripts would have to stay under ~1,100 characters (or
#   a run under ~35 script tasks); 2,000 tasks, 64 KiB scripts and 4 KiB arguments are what the
#   models promise and `kopflow run` accepts, so these two checks are not in the CRD. The
#   operator's validation makes such a run Invalid (status.message names the field, plus a
#   RunInvalid Event) and marks such a Workflow Valid=False; `kopflow validate` says the same
#   before anything reaches a cluster.
# - Kept, cheap: command xor script (3 per task, 6,150 for 2,050 tasks); parameter default in
#   enum (108 per parameter, 10,800 for 100); required vs default; onFailure names distinct from
#   task names (34 per pair, 50 x 2,000 pairs = 3.4*10^6, a third of the budget); exactly one of
#   workflowRef/workflow. Dependency checks (names exist, no cycles) would compare dependsOn
#   entries with all tasks (2,000 x 2,000 x 2,000 x 34 ~ 2.7*10^11): the operator does them.
_TASK_RULES = [
    {
        "rule": "!(has(self.command) && has(self.script))",
        "message": "set either command or script, not both",
        "fieldPath": ".script",
    },
]
_PARAMETER_RULES = [
    {
        "rule": "!has(self.enum) || !has(self.default) || self.default in self.enum",
        "message": "default must be one of enum",
        "fieldPath": ".default",
    },
    {
        "rule": "!(has(self.required) && self.required && has(self.default))",
        "message": "a required parameter cannot have a default; drop one of them",
        "fieldPath": ".required",
    },
]
_WORKFLOW_SPEC_RULES = [
    {
        "rule": "!has(self.onFailure) || "
        "self.onFailure.all(f, !self.tasks.exists(t, t.name == f.name))",
        "message": "onFailure task names must differ from the names in tasks",
        "fieldPath": ".onFailure",
    },
]
_RUN_SPEC_RULES = [
    {
        "rule": "has(self.workflowRef) != has(self.workflow)",
        "message": "set exactly one of spec.workflowRef or spec.workflow",
    },
]


def _inline(node: Any, defs: Schema) -> Any:
    """Resolve $ref, drop null branches and pydantic-only keys, recursively."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**target, **rest}, defs)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"unsupported union in CRD schema: {node}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _inline({**branches[0], **rest}, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in ("title", "default", "$defs", "const"):
            continue
        if key == "additionalProperties" and value is False:
            continue  # structural schemas prune unknown fields instead
        if key == "description":
            out[key] = " ".join(str(value).split())
        elif key == "properties":
            out[key] = {name: _inline(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _inline(value, defs)
    if out.get("type") == "object" and "properties" not in out:
        extra = out.get("additionalProperties")
        if not extra or extra is True:
            out.pop("additionalProperties", None)
            out["x-kubernetes-preserve-unknown-fields"] = True
    if (
        not out.get("type")
        and not out.get("x-kubernetes-preserve-unknown-fields")
        and not out.get("x-kubernetes-int-or-string")
    ):
        out["type"] = "object"
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _own_docs(node: ast.ClassDef) -> dict[str, str]:
    """Attribute docstrings of a class body: the string right under `name: type [= ...]`."""
    docs: dict[str, str] = {}
    body = node.body
    for stmt, after in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


@cache
def _module_docs(module: str) -> dict[str, dict[str, str]]:
    source = Path(sys.modules[module].__file__ or "").read_text()
    tree = ast.parse(source)
    return {n.name: _own_docs(n) for n in tree.body if isinstance(n, ast.ClassDef)}


def _models() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    stack: list[type[BaseModel]] = [Model]
    while stack:
        cls = stack.pop()
        found[cls.__name__] = cls
        stack.extend(cls.__subclasses__())
    return found


def _field_docs(cls: type[BaseModel]) -> dict[str, str]:
    """Alias -> attribute docstring of every field of the model, inherited ones too.

    The models do not set `use_attribute_docstrings` (reading the source of every class at
    import costs kopflow's start-up ~0.2 s); the descriptions are needed here only."""
    docs: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if isinstance(base, type) and issubclass(base, Model):
            docs.update(_module_docs(base.__module__).get(base.__name__, {}))
    return {
        (info.alias or name): docs[name]
        for name, info in cls.model_fields.items()
        if name in docs and info.description is None
    }


def _describe(raw: Schema) -> None:
    """Field descriptions from attribute docstrings, into the model's JSON schema."""
    models = _models()
    for node in (raw, *raw.get("$defs", {}).values()):
        cls = models.get(node.get("title", ""))
        if cls is None or "properties" not in node:
            continue
        for alias, doc in _field_docs(cls).items():
            prop = node["properties"].get(alias)
            if prop is not None and "description" not in prop:
                node["properties"][alias] = {"description": doc, **prop}


def structural_schema(model: type[BaseModel]) -> Schema:
    """The model as a Kubernetes structural schema."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    _describe(raw)
    return _inline(raw, raw.get("$defs", {}))  # type: ignore[no-any-return]


def _add_rules(node: Schema, rules: list[dict[str, str]]) -> None:
    node.setdefault("x-kubernetes-validations", []).extend(copy.deepcopy(rules))


def _list_map(node: Schema, key: str) -> None:
    node["x-kubernetes-list-type"] = "map"
    node["x-kubernetes-list-map-keys"] = [key]


# The typed core/v1 Affinity is 12.8 KB of schema, and the task schema appears three times in
# each CRD (tasks, onFailure, taskDefaults): typed, it would be 45% of the pod template and
# make the WorkflowRun CRD's `kubectl apply` annotation approach its 256 KiB limit. In the CRD
# it is an object kept as is; the model still types it, so `kopflow validate` and the
# operator (run Invalid) name a wrong field, and the API server validates it in the Job.
_OPAQUE_POD_FIELDS = ("affinity",)


def _decorate_pod(settings: Schema) -> None:
    """List-map keys of the pod settings shared by tasks and taskDefaults; opaque subtrees."""
    props = settings["properties"]
    _list_map(props["env"], "name")
    _list_map(props["volumes"], "name")
    _list_map(props["volumeMounts"], "mountPath")
    template = props["podTemplate"]["properties"]
    for name in _OPAQUE_POD_FIELDS:
        template[name] = {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "description": template[name].get("description", ""),
        }
    _list_map(template["sidecars"], "name")


def _decorate_task(task: Schema) -> None:
    _add_rules(task, _TASK_RULES)
    _decorate_pod(task)
    task["properties"]["dependsOn"]["x-kubernetes-list-type"] = "set"


def workflow_spec_schema() -> Schema:
    """WorkflowSpec with uniqueness by list-map keys and the CEL rules."""
    spec = structural_schema(WorkflowSpec)
    props = spec["properties"]
    _list_map(props["tasks"], "name")
    _list_map(props["onFailure"], "name")
    _list_map(props["parameters"], "name")
    _add_rules(props["parameters"]["items"], _PARAMETER_RULES)
    _decorate_task(props["tasks"]["items"])
    _decorate_task(props["onFailure"]["items"])
    _decorate_pod(props["taskDefaults"])
    _add_rules(spec, _WORKFLOW_SPEC_RULES)
    return spec


def _conditions(status: Schema) -> None:
    _list_map(status["properties"]["conditions"], "type")


def _root(spec: Schema, status: Schema, description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def _crd(
    plural: str,
    kind: str,
    short: str,
    schema: Schema,
    columns: list[dict[str, Any]],
) -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "kopflow", "app.kubernetes.io/part-of": "kopflow"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "listKind": f"{kind}List",
                "shortNames": [short],
                "categories": ["kopflow"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def _age() -> dict[str, Any]:
    return {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def workflow_crd() -> Schema:
    """The Workflow CRD."""
    status = structural_schema(WorkflowStatus)
    _conditions(status)
    schema = _root(workflow_spec_schema(), status, "A reusable, optionally scheduled workflow.")
    columns = [
        {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule.cron"},
        {"name": "Suspended", "type": "boolean", "jsonPath": ".spec.schedule.suspend"},
        {"name": "Last Run", "type": "date", "jsonPath": ".status.lastScheduleTime"},
        {"name": "Next Run", "type": "date", "jsonPath": ".status.nextScheduleTime"},
        _age(),
    ]
    return _crd("workflows", "Workflow", "wf", schema, columns)


def workflow_run_crd() -> Schema:
    """The WorkflowRun CRD; its inline workflow uses the same schema as Workflow.spec."""
    spec = structural_schema(WorkflowRunSpec)
    spec["properties"]["workflow"] = {
        **workflow_spec_schema(),
        "description": spec["properties"]["workflow"]["description"],
    }
    _add_rules(spec, _RUN_SPEC_RULES)
    status = structural_schema(WorkflowRunStatus)
    _conditions(status)
    schema = _root(spec, status, "One execution of a workflow.")
    columns = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
        {"name": "Duration", "type": "string", "jsonPath": ".status.duration"},
        _age(),
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    ]
    return _crd("workflowruns", "WorkflowRun", "wfr", schema, columns)


def render() -> dict[str, str]:
    """File name -> YAML text of every CRD, read the same by YAML 1.1 (kubectl) and 1.2."""
    header = "# Generated by `kopflow crds` from operator/kopflow/api; do not edit.\n"
    out = {}
    for crd in (workflow_crd(), workflow_run_crd()):
        text = yaml.dump(
            crd, Dumper=yamlspec.Dumper, sort_keys=False, width=100, allow_unicode=True
        )
        out[f"{crd['metadata']['name']}.yaml"] = header + text
    return out


SCHEMAS_FILE = Path(__file__).with_name("schemas.json")
"""The CRDs' openAPIV3Schemas by kind, shipped with the package: `kopflow validate` reads them
(YAML 1.1 checks) instead of generating them, which would double its start-up time."""


def schemas() -> dict[str, Schema]:
    """Kind -> openAPIV3Schema of each CRD."""
    return {
        c["spec"]["names"]["kind"]: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for c in (workflow_crd(), workflow_run_crd())
    }


def write_schemas(path: Path = SCHEMAS_FILE) -> Path:
    path.write_text(json.dumps(schemas(), separators=(",", ":"), sort_keys=True) + "\n")
    return path


def write(directory: Path) -> list[Path]:
    """Write every CRD into directory; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths
