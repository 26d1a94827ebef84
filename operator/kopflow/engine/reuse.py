"""Retries that reuse results: the tasks a run takes over from the run it retries.

`kopflow retry RUN` creates a run whose `spec.retryOf.reused` holds, for each task that
succeeded in RUN (and is not downstream of `--from`), the outputs it produced there. When the
new run starts, those tasks are Succeeded at once with `reused: true` and their outputs, so
nothing runs for them and downstream templating sees the same values as before.
"""

from __future__ import annotations

from collections.abc import Iterable

from kopflow.api.run import RetryOf, TaskStatus
from kopflow.api.workflow import Task, WorkflowSpec
from kopflow.engine.validation import Issue


def reused_tasks(
    retry_of: RetryOf | None, tasks: dict[str, Task], main: Iterable[str], stamp: str
) -> dict[str, TaskStatus]:
    """The starting status of each main task the run reuses (outputs limited to the declared
    ones), by name."""
    if retry_of is None or not retry_of.reused:
        return {}
    out = {}
    for name in main:
        if name not in retry_of.reused:
            continue
        declared = tasks[name].outputs or ()
        outputs = {k: v for k, v in retry_of.reused[name].items() if k in declared}
        out[name] = TaskStatus(
            phase="Succeeded",
            reused=True,
            reason="Reused",
            message=f"reused the result of run {retry_of.name}; nothing ran",
            outputs=outputs or None,
            started_at=stamp,
            finished_at=stamp,
        )
    return out


def reuse_issues(spec: WorkflowSpec, retry_of: RetryOf | None) -> list[Issue]:
    """A reused task must be a main task of the workflow the run executes."""
    if retry_of is None or not retry_of.reused:
        return []
    known = {t.name for t in spec.tasks}
    return [
        Issue(
            f"spec.retryOf.reused.{name}",
            f"no task {name!r} in the workflow (tasks: {', '.join(sorted(known))}); remove it",
        )
        for name in sorted(set(retry_of.reused) - known)
    ]
