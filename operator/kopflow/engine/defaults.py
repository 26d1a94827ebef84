"""taskDefaults inheritance and the spec snapshot a run keeps.

A task inherits every pod setting it does not set itself; `env` and `volumes` are merged by
name and `volumeMounts` by mount path (the task wins), `podTemplate` field by field (see
podtemplate), everything else is replaced whole (a task's `retry` replaces the default `retry`).
"""

from __future__ import annotations

from typing import Any

from kopflow.api.workflow import EnvVar, Retry, Task, TaskDefaults, WorkflowSpec
from kopflow.engine.podtemplate import merge_by, merge_pod_template

MERGED = ("env", "volumes", "volume_mounts", "pod_template")
INHERITED = tuple(name for name in TaskDefaults.model_fields if name not in MERGED)


def merge_env(defaults: list[EnvVar] | None, own: list[EnvVar] | None) -> list[EnvVar] | None:
    """Default variables in their order, each replaced by the task's one of the same name,
    then the task's other variables in its order."""
    if not defaults:
        return own
    if not own:
        return defaults
    mine = {e.name: e for e in own}
    merged = [mine.pop(e.name, e) for e in defaults]
    return merged + [e for e in own if e.name in mine]


def merge_defaults(task: Task, defaults: TaskDefaults | None) -> Task:
    """The task as it runs: its own settings, else the workflow's taskDefaults."""
    if defaults is None:
        return task
    update: dict[str, Any] = {
        name: getattr(defaults, name)
        for name in INHERITED
        if getattr(task, name) is None and getattr(defaults, name) is not None
    }
    env = merge_env(defaults.env, task.env)
    if env is not task.env:
        update["env"] = env
    if defaults.volumes:
        update["volumes"] = merge_by(defaults.volumes, task.volumes, lambda v: v.name)
    if defaults.volume_mounts:
        update["volume_mounts"] = merge_by(
            defaults.volume_mounts, task.volume_mounts, lambda m: m.mount_path
        )
    if defaults.pod_template is not None:
        update["pod_template"] = merge_pod_template(defaults.pod_template, task.pod_template)
    return task.model_copy(update=update) if update else task


def retry_of(task: Task, defaults: TaskDefaults | None) -> Retry | None:
    """The effective retry policy, without building the merged task (hot path)."""
    return task.retry if task.retry is not None or defaults is None else defaults.retry


def timeout_of(task: Task, defaults: TaskDefaults | None) -> int | None:
    """The effective timeoutSeconds, without building the merged task (hot path)."""
    if task.timeout_seconds is not None or defaults is None:
        return task.timeout_seconds
    return defaults.timeout_seconds


POD_PENDING_TIMEOUT = 600
"""Seconds an attempt's pod may take to start when podPendingTimeoutSeconds is unset."""


def pod_pending_timeout_of(task: Task, defaults: TaskDefaults | None) -> int:
    """The effective podPendingTimeoutSeconds, without building the merged task."""
    if task.pod_pending_timeout_seconds is not None:
        return task.pod_pending_timeout_seconds
    if defaults is not None and defaults.pod_pending_timeout_seconds is not None:
        return defaults.pod_pending_timeout_seconds
    return POD_PENDING_TIMEOUT


def snapshot(spec: WorkflowSpec) -> dict[str, Any]:
    """The spec as the user wrote it (unset defaults left out), for `status.workflow`: small,
    and parsed back to the same spec."""
    return spec.model_dump(by_alias=True, exclude_none=True, exclude_unset=True, mode="json")
