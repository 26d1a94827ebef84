"""`kopflow graph RUN|FILE [--format mermaid|dot|svg]`: the DAG, coloured by phase for a run."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kopflow.cliclient import CliError
from kopflow.commands.common import EXIT_INVALID, EXIT_OK


def _from_file(path: str) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """(title, workflow spec, tasks) from a Workflow or a WorkflowRun with an inline one."""
    from kopflow import manifests

    try:
        docs = manifests.load(path)
    except manifests.ManifestError as err:
        raise CliError(str(err), EXIT_INVALID) from None
    for doc in docs:
        body = doc.body if isinstance(doc.body, dict) else {}
        spec = body.get("spec") or {}
        if body.get("kind") == "Workflow":
            return (body.get("metadata") or {}).get("name") or path, spec, None
        if body.get("kind") == "WorkflowRun" and spec.get("workflow"):
            status = body.get("status") or {}
            tasks = status.get("tasks") if status else None
            return doc.label, spec["workflow"], tasks
    raise CliError(
        f"{path}: no Workflow (or WorkflowRun with an inline workflow) in it", EXIT_INVALID
    )


def render(fmt: str, title: str, workflow: dict[str, Any], tasks: dict[str, Any] | None) -> str:
    from kopflow import graphs

    nodes = graphs.nodes_of(workflow, tasks)
    try:
        if fmt == "svg":
            return graphs.svg(nodes, title)
        return graphs.RENDERERS[fmt](nodes)
    except ValueError as err:  # a cycle
        raise CliError(f"{title}: {err}", EXIT_INVALID) from None


def graph(args: argparse.Namespace) -> int:
    from kopflow.commands.common import run_command
    from kopflow.commands.submit import looks_like_file

    def show(text: str) -> int:
        if args.out:
            with open(args.out, "w", encoding="utf-8") as out:
                out.write(text)
        else:
            sys.stdout.write(text)
        return EXIT_OK

    if looks_like_file(args.source):

        async def local(_: object) -> int:
            return show(render(args.format, *_from_file(args.source)))

        return run_command(args, local, connect=False)

    async def remote(kube: Any) -> int:
        run = await kube.run(args.source)
        status = run.get("status") or {}
        workflow = status.get("workflow") or (run.get("spec") or {}).get("workflow")
        if workflow is None:
            ref = ((run.get("spec") or {}).get("workflowRef") or {}).get("name")
            if not ref:
                raise CliError(f'workflowrun "{args.source}" has no workflow')
            workflow = (await kube.get("workflows", ref)).get("spec") or {}
        return show(render(args.format, args.source, workflow, status.get("tasks") or {}))

    return run_command(args, remote)
