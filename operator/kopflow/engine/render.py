"""Rendering a task for one attempt: templates in args, env values, cache key and `when`.

Substitution is literal (see templating): a rendered argument is exactly one argument, and
`command` and `script` are never touched.
"""

from __future__ import annotations

from collections.abc import Mapping

from kopflow.api.workflow import Cache, EnvVar, Task
from kopflow.engine import templating

RESERVED_ENV = ("KOPFLOW_RUN", "KOPFLOW_TASK", "KOPFLOW_ATTEMPT", "KOPFLOW_OUTPUTS")
PARAM_ENV_PREFIX = "KOPFLOW_PARAM_"


def run_values(
    name: str, namespace: str, scheduled_time: str | None, started_at: str | None
) -> dict[str, str]:
    """`run.*` and `schedule.*` references; a run without a schedule uses its start time."""
    time = scheduled_time or started_at or ""
    return {
        "run.name": name,
        "run.namespace": namespace,
        "schedule.time": time,
        "schedule.date": time[:10],
    }


def unmet_condition(task: Task, values: Mapping[str, str]) -> str | None:
    """Why the task's `when` is false, or None when every condition holds."""
    for cond in task.when or ():
        value = templating.render(cond.input, values)
        if (value in cond.values) != (cond.operator == "in"):
            choices = ", ".join(cond.values)
            return f'when: "{value}" {cond.operator} [{choices}] is false'
    return None


def render_task(task: Task, values: Mapping[str, str]) -> Task:
    """The task with its args, env values and cache key rendered."""
    update: dict[str, object] = {}
    if task.args:
        update["args"] = [templating.render(a, values) for a in task.args]
    if task.env:
        update["env"] = [
            e
            if e.value is None or "{{" not in e.value
            else e.model_copy(update={"value": templating.render(e.value, values)})
            for e in task.env
        ]
    if task.cache is not None:
        update["cache"] = Cache(
            key=templating.render(task.cache.key, values), ttl_seconds=task.cache.ttl_seconds
        )
    return task.model_copy(update=update) if update else task


def param_env(params: Mapping[str, str]) -> list[EnvVar]:
    """`KOPFLOW_PARAM_<NAME>` for every parameter (name upper-cased)."""
    return [EnvVar(name=PARAM_ENV_PREFIX + k.upper(), value=v) for k, v in params.items()]


def attempt_env(
    run: str, task: Task, attempt: int, params: Mapping[str, str]
) -> tuple[EnvVar, ...]:
    """Everything the attempt's process sees: kopflow's variables first, then the task's own.

    A task variable named like one of kopflow's is dropped: the run, task and attempt a
    process reports must be the real ones.
    """
    system = [
        EnvVar(name="KOPFLOW_RUN", value=run),
        EnvVar(name="KOPFLOW_TASK", value=task.name),
        EnvVar(name="KOPFLOW_ATTEMPT", value=str(attempt)),
        *param_env(params),
    ]
    taken = {e.name for e in system} | set(RESERVED_ENV)
    return (*system, *(e for e in task.env or () if e.name not in taken))
