"""`--watch`: the live view of a run on a cluster, the same display `kopflow run` uses."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from pydantic import ValidationError

from kopflow.api.run import TaskStatus, WorkflowRunStatus
from kopflow.cliclient import Kube
from kopflow.commands.common import exit_code, finished, now, ordered_tasks
from kopflow.executors.display import Display, LiveDisplay, PlainDisplay


def _display() -> Display:
    if sys.stdout.isatty():
        from rich.console import Console

        return LiveDisplay(Console(file=sys.stdout))
    return PlainDisplay(sys.stdout)


def status_of(run: dict[str, Any]) -> WorkflowRunStatus:
    """The run's status with its tasks in dependency order (every task, Pending ones too)."""
    raw = run.get("status") or {}
    try:
        status = WorkflowRunStatus.model_validate(raw)
    except ValidationError:
        status = WorkflowRunStatus(phase=raw.get("phase"), message=raw.get("message"))
    tasks = {}
    for name, task in ordered_tasks(run):
        try:
            tasks[name] = TaskStatus.model_validate(task)
        except ValidationError:
            tasks[name] = TaskStatus()
    return status.model_copy(update={"tasks": tasks})


async def follow(kube: Kube, name: str) -> int:
    """Show every change of the run until it finishes; its exit code (0 Succeeded, 1 Failed or
    Cancelled, 2 Invalid)."""
    display = _display()
    status = WorkflowRunStatus()
    try:
        async with contextlib.aclosing(kube.watch("workflowruns", name)) as changes:
            async for run in changes:
                status = status_of(run)
                display.update(status, now())
                if finished(run):
                    break
    finally:
        display.close()
    line = f"run {name} {status.phase} in {status.duration or '0s'} ({status.progress or '0/0'})"
    if status.message and status.phase != "Succeeded":
        line += f": {status.message}"
    print(line, flush=True)
    return exit_code(status.phase)
