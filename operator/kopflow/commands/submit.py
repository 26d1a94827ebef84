"""`kopflow submit WORKFLOW [-p name=value] [--watch]`: create a WorkflowRun on the cluster.

WORKFLOW is a Workflow of the namespace (the run references it) or a file holding one (its
spec is inlined in the run). Parameters are checked against the workflow before anything is
created.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from kopflow.api.workflow import API_VERSION, WorkflowSpec
from kopflow.cliclient import CliError, Kube
from kopflow.commands.common import EXIT_INVALID, EXIT_OK, check_params, parse_params


def looks_like_file(arg: str) -> bool:
    """A path (`-`, `x.yaml`, `dir/x`) rather than a Workflow name (names have no `/` or `.y`)."""
    return arg == "-" or os.path.exists(arg) or arg.endswith((".yaml", ".yml", ".json"))


def workflow_from_file(path: str) -> tuple[str, WorkflowSpec, dict[str, Any]]:
    """(name, spec, spec as written) of the single Workflow in a file, validated like
    `kopflow validate`; CliError (exit 2) naming the problem."""
    from kopflow import manifests
    from kopflow.engine.validation import parse_workflow, validate_spec

    try:
        docs = manifests.load(path)
    except manifests.ManifestError as err:
        raise CliError(str(err), EXIT_INVALID) from None
    found = [d for d in docs if isinstance(d.body, dict) and d.body.get("kind") == "Workflow"]
    if len(found) != 1:
        raise CliError(
            f"{path}: expected one Workflow, found {len(found)}; submit a Workflow by file or "
            "by name",
            EXIT_INVALID,
        )
    doc = found[0]
    workflow, issues = parse_workflow(doc.body)
    if workflow is not None:
        issues += validate_spec(workflow.spec)
    issues = manifests.with_yaml_issues(doc, issues)
    if issues or workflow is None:
        lines = "\n  ".join(str(i) for i in issues)
        raise CliError(f"{doc.label}: invalid\n  {lines}", EXIT_INVALID)
    return workflow.metadata.name or "run", workflow.spec, dict(doc.body.get("spec") or {})


async def workflow_from_cluster(kube: Kube, name: str) -> WorkflowSpec:
    """The spec of Workflow `name` in the namespace; a clear error when it does not exist."""
    from pydantic import ValidationError

    from kopflow.engine.validation import pydantic_issues

    try:
        body = await kube.get("workflows", name)
    except CliError as err:
        if "not found in namespace" in err.message:
            known = sorted(w["metadata"]["name"] for w in await kube.list("workflows"))
            hint = f"workflows here: {', '.join(known)}" if known else "there is none"
            err.message += f" ({hint}; or pass a file)"
        raise
    try:
        return WorkflowSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        issue = pydantic_issues(err, "spec")[0]
        raise CliError(f'workflow "{name}" is invalid: {issue}', EXIT_INVALID) from None


def run_body(
    base: str,
    workflow: str,
    params: dict[str, str],
    *,
    ref: bool,
    spec: dict[str, Any] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """A WorkflowRun named `base-xxxxx` by the server (or `name`), labelled with its Workflow."""
    from kopflow.engine.naming import label_value
    from kopflow.engine.schedule import WORKFLOW_LABEL

    meta: dict[str, Any] = {"labels": {WORKFLOW_LABEL: label_value(workflow)}}
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = base[:52].rstrip("-.") + "-"
    run_spec: dict[str, Any] = {"workflowRef": {"name": workflow}} if ref else {"workflow": spec}
    if params:
        run_spec["parameters"] = params
    return {"apiVersion": API_VERSION, "kind": "WorkflowRun", "metadata": meta, "spec": run_spec}


async def submit(kube: Kube, args: argparse.Namespace) -> int:
    given = parse_params(args.param)
    if looks_like_file(args.workflow):
        name, spec, written = workflow_from_file(args.workflow)
        check_params(name, spec, given)
        body = run_body(name, name, given, ref=False, spec=written, name=args.name)
    else:
        spec = await workflow_from_cluster(kube, args.workflow)
        check_params(args.workflow, spec, given)
        body = run_body(args.workflow, args.workflow, given, ref=True, name=args.name)
    created = await kube.create("workflowruns", body)
    run = created["metadata"]["name"]
    print(f"workflowrun/{run} created", flush=True)
    if not args.watch:
        return EXIT_OK
    from kopflow.commands.watching import follow

    return await follow(kube, run)
