"""`kopflow retry RUN [--from TASK] [-p name=value]`: a new run that reuses what succeeded.

The new run executes the very workflow RUN ran (its status snapshot, inlined) with RUN's
parameters (overridden by -p). Each task that succeeded in RUN, except TASK and everything
downstream of it, is reused: `spec.retryOf.reused` carries its outputs, and the operator marks
it Succeeded (`reused: true`) without running it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from kopflow.cliclient import CliError, Kube
from kopflow.commands.common import EXIT_INVALID, EXIT_OK, check_params, parse_params, workflow_of


def downstream(deps: Mapping[str, list[str]], start: str) -> set[str]:
    """start and every task that depends on it, directly or not."""
    dependents: dict[str, list[str]] = {n: [] for n in deps}
    for name, ds in deps.items():
        for d in ds:
            dependents.setdefault(d, []).append(name)
    seen, stack = set(), [start]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack += dependents.get(name, [])
    return seen


def reusable(run: Mapping[str, Any], start: str | None) -> dict[str, dict[str, str]]:
    """Task name -> outputs of every main task that succeeded in the run, minus `start` and
    its downstream tasks. CliError (exit 2) when `start` is not a task of the run."""
    status = run.get("status") or {}
    workflow = status.get("workflow") or {}
    deps = {t["name"]: list(t.get("dependsOn") or ()) for t in workflow.get("tasks") or []}
    excluded: set[str] = set()
    if start is not None:
        if start not in deps:
            raise CliError(
                f'--from {start}: no task "{start}" in run "{run["metadata"]["name"]}" (its '
                f"tasks: {', '.join(deps)})",
                EXIT_INVALID,
            )
        excluded = downstream(deps, start)
    tasks = status.get("tasks") or {}
    return {
        name: dict(tasks[name].get("outputs") or {})
        for name in deps
        if name not in excluded and (tasks.get(name) or {}).get("phase") == "Succeeded"
    }


def retry_body(
    run: Mapping[str, Any], reused: dict[str, dict[str, str]], params: dict[str, str]
) -> dict[str, Any]:
    """The new WorkflowRun: same workflow snapshot and schedule time, origin in spec.retryOf."""
    from kopflow.api.workflow import API_VERSION
    from kopflow.engine.naming import label_value
    from kopflow.engine.schedule import WORKFLOW_LABEL

    meta, spec, status = run["metadata"], run.get("spec") or {}, run.get("status") or {}
    workflow = {k: v for k, v in status["workflow"].items() if k != "schedule"}
    owner = workflow_of(run)
    base = owner or meta.get("generateName") or meta["name"]
    labels = {WORKFLOW_LABEL: label_value(owner)} if owner else {}
    new_spec: dict[str, Any] = {
        "workflow": workflow,
        "retryOf": {"name": meta["name"], "uid": meta.get("uid"), "reused": reused},
    }
    if params:
        new_spec["parameters"] = params
    for key in ("scheduledTime", "cache", "workflowWaitSeconds"):
        if key in spec:
            new_spec[key] = spec[key]
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkflowRun",
        "metadata": {"generateName": base[:52].rstrip("-.") + "-", "labels": labels},
        "spec": new_spec,
    }


async def retry(kube: Kube, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from kopflow.api.workflow import WorkflowSpec

    run = await kube.run(args.run)
    status = run.get("status") or {}
    phase = status.get("phase")
    if phase not in ("Failed", "Cancelled", "Succeeded"):
        if phase == "Invalid" or not status.get("workflow"):
            raise CliError(
                f'workflowrun "{args.run}" never started ({phase or "Pending"}: '
                f"{status.get('message') or 'no status yet'}); fix it and submit again"
            )
        raise CliError(
            f'workflowrun "{args.run}" is still {phase}; wait for it to finish, or '
            f"`kopflow cancel {args.run}` first"
        )
    try:
        spec = WorkflowSpec.model_validate(status["workflow"])
    except ValidationError as err:
        raise CliError(f'workflowrun "{args.run}": unreadable workflow snapshot: {err}') from None
    given = parse_params(args.param)
    check_params(workflow_of(run) or args.run, spec, given)
    params = {**(status.get("parameters") or {}), **given}
    reused = reusable(run, args.from_task)
    created = await kube.create("workflowruns", retry_body(run, reused, params))
    name = created["metadata"]["name"]
    what = ", ".join(reused) if reused else "nothing"
    print(f"workflowrun/{name} created (retry of {args.run}; reused: {what})", flush=True)
    if not args.watch:
        return EXIT_OK
    from kopflow.commands.watching import follow

    return await follow(kube, name)
