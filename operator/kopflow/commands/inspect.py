"""`kopflow get RUN` and `kopflow list`: what runs exist and what each task did."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from kopflow.cliclient import CliError, Kube
from kopflow.commands.common import (
    EXIT_INVALID,
    EXIT_OK,
    RUN_PHASES,
    age,
    now,
    ordered_tasks,
    span,
    table,
    workflow_of,
)


def dump(obj: Any, fmt: str) -> str:
    """An object (or a List) as -o json / -o yaml print it."""
    if fmt == "json":
        return json.dumps(obj, indent=2) + "\n"
    import yaml

    return str(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False))


def _outputs(task: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in (task.get("outputs") or {}).items())


def _cached(task: Mapping[str, Any]) -> str:
    return "reused" if task.get("reused") else "yes" if task.get("cached") else ""


def _message(task: Mapping[str, Any]) -> str:
    if task.get("reused") or task.get("cached"):
        return str(task.get("message") or "")
    if task.get("phase") == "Retrying" and task.get("nextRetryAt"):
        return f"retry at {task['nextRetryAt']}: {task.get('message') or ''}".rstrip(": ")
    reason, message = str(task.get("reason") or ""), str(task.get("message") or "")
    return message if message.startswith(reason) else f"{reason} {message}".strip()


def describe(run: Mapping[str, Any], wide: bool = False) -> str:
    """The run's summary, then its tasks in dependency order with phase, attempts, duration,
    cached, message and outputs (wide: job, exit code, start time too)."""
    meta, spec, status = run["metadata"], run.get("spec") or {}, run.get("status") or {}
    at = now()
    phase = status.get("phase") or "Pending"
    if spec.get("cancel") and phase not in ("Cancelled",):
        phase += " (cancel requested)"
    elif spec.get("suspend"):
        phase += " (suspended)"
    lines = [
        f"Name:        {meta['name']}",
        f"Namespace:   {meta.get('namespace', '')}",
        f"Workflow:    {workflow_of(run) or '(inline)'}",
        f"Phase:       {phase}",
        f"Progress:    {status.get('progress') or ''}",
        f"Duration:    {span(status.get('startedAt'), status.get('finishedAt'), at)}",
    ]
    if status.get("message"):
        lines.append(f"Message:     {status['message']}")
    params = status.get("parameters") or spec.get("parameters") or {}
    if params:
        lines.append("Parameters:  " + ", ".join(f"{k}={v}" for k, v in params.items()))
    origin = spec.get("retryOf")
    if origin:
        reused = ", ".join(sorted(origin.get("reused") or {})) or "nothing"
        lines.append(f"Retry of:    {origin.get('name')} (reused: {reused})")
    headers = ["TASK", "PHASE", "ATTEMPTS", "DURATION", "CACHED", "MESSAGE", "OUTPUTS"]
    if wide:
        headers += ["EXIT", "JOB", "STARTED"]
    rows = []
    for name, task in ordered_tasks(run):
        row = [
            name,
            str(task.get("phase") or "Pending"),
            str(task.get("attempts") or 0),
            span(task.get("startedAt"), task.get("finishedAt"), at),
            _cached(task),
            _message(task) if wide else _message(task)[:80],
            _outputs(task),
        ]
        if wide:
            exit_code = task.get("exitCode")
            row += ["" if exit_code is None else str(exit_code), task.get("jobName") or ""]
            row.append(task.get("startedAt") or "")
        rows.append(row)
    return "\n".join(lines) + "\n\n" + table(headers, rows)


async def get(kube: Kube, args: argparse.Namespace) -> int:
    if args.watch:
        from kopflow.commands.watching import follow

        return await follow(kube, args.run)
    run = await kube.run(args.run)
    if args.output in ("json", "yaml"):
        print(dump(run, args.output), end="")
    else:
        print(describe(run, wide=args.output == "wide"), end="")
    return EXIT_OK


def listing(runs: list[dict[str, Any]], all_namespaces: bool, wide: bool) -> str:
    """The runs as a table, oldest first."""
    at = now()
    headers = ["NAME", "WORKFLOW", "PHASE", "PROGRESS", "DURATION", "AGE"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    if wide:
        headers += ["STARTED", "MESSAGE"]
    rows = []
    for run in runs:
        meta, status = run["metadata"], run.get("status") or {}
        row = [
            meta["name"],
            workflow_of(run),
            status.get("phase") or "",
            status.get("progress") or "",
            span(status.get("startedAt"), status.get("finishedAt"), at),
            age(meta.get("creationTimestamp"), at),
        ]
        if all_namespaces:
            row.insert(0, meta.get("namespace") or "")
        if wide:
            row += [status.get("startedAt") or "", status.get("message") or ""]
        rows.append(row)
    if not rows:
        return ""
    return table(headers, rows)


async def list_runs(kube: Kube, args: argparse.Namespace) -> int:
    if args.phase is not None and args.phase not in RUN_PHASES:
        raise CliError(
            f"--phase {args.phase}: not a run phase; use one of: {', '.join(RUN_PHASES)}",
            EXIT_INVALID,
        )
    runs = await kube.list("workflowruns", all_namespaces=args.all_namespaces)
    if args.workflow:
        runs = [r for r in runs if workflow_of(r) == args.workflow]
    if args.phase:
        runs = [r for r in runs if (r.get("status") or {}).get("phase") == args.phase]
    runs.sort(key=lambda r: (r["metadata"].get("creationTimestamp") or "", r["metadata"]["name"]))
    if args.output in ("json", "yaml"):
        print(dump({"apiVersion": "v1", "kind": "List", "items": runs}, args.output), end="")
        return EXIT_OK
    text = listing(runs, args.all_namespaces, args.output == "wide")
    if not text:
        where = "any namespace" if args.all_namespaces else f'namespace "{kube.namespace}"'
        print(f"no workflowruns in {where}", file=sys.stderr, flush=True)
    print(text, end="")
    return EXIT_OK
