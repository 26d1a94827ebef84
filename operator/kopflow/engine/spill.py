"""Task outputs over a run's inline budget: which go to ConfigMaps the run owns, in which shard.

A run's object must stay under 1 MiB (etcd refuses a write of ~1.5 MiB, and every later status
write of that run with it), whatever it holds: 5,000 tasks writing 4 KiB of outputs each are
20 MiB. The status keeps outputs inline up to a budget per run; the others are written, as JSON
under the task's name, into ConfigMaps `<run>-outputs-<n>` owned by the run (deleted with it),
each under `Budget.shard` bytes, before the status that points to them (`outputsShard: n`).

A task's outputs are written once (it succeeds once), so placement is stable: outputs inline in
the status last written stay there, a shard only grows, and the same status plans the same
shards again (a write interrupted by a crash is redone identically). Pure: the executor writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from kopflow.api.run import TaskStatus, WorkflowRunStatus

INLINE_BUDGET = 128 * 1024
"""Bytes of outputs (JSON, with task names) a run keeps in its status, all tasks together."""
TASK_INLINE_LIMIT = 1024
"""A task whose outputs take more goes to a shard, whatever is left of the budget."""
SHARD_LIMIT = 900 * 1024
"""Bytes of data per shard ConfigMap: the API refuses a ConfigMap over 1 MiB."""
STATUS_TARGET = 768 * 1024
"""What a run's status should stay under; the inline budget shrinks to keep it there."""
TASK_RESERVE = 160
"""Bytes the status of one finished task takes besides its outputs (measured: ~140 with a
15-character name and no retries), reserved out of STATUS_TARGET."""


@dataclass(frozen=True)
class Budget:
    """How much of a run's outputs stays inline (the operator's --inline-outputs-bytes)."""

    inline: int = INLINE_BUDGET
    per_task: int = TASK_INLINE_LIMIT
    shard: int = SHARD_LIMIT

    def for_tasks(self, count: int) -> int:
        """The inline budget of a run of `count` tasks: less room for outputs in a run whose
        task statuses alone take much of STATUS_TARGET (none at 5,000 tasks)."""
        return max(0, min(self.inline, STATUS_TARGET - TASK_RESERVE * count))


@dataclass(frozen=True)
class Spill:
    """A status with its outputs placed, and the shard entries to write before it."""

    status: WorkflowRunStatus
    """In memory: every task keeps its outputs; spilled ones also have outputsShard."""
    writes: dict[int, dict[str, str]] = field(default_factory=dict)
    """Shard number -> {task name: outputs as JSON} to add to that ConfigMap."""


def shard_name(run: str, n: int) -> str:
    """ConfigMap `<run>-outputs-<n>`, the run's name cut so that it stays a valid name."""
    suffix = f"-outputs-{n}"
    return run[: 253 - len(suffix)] + suffix


def encode(outputs: Mapping[str, str]) -> str:
    return json.dumps(dict(outputs), separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def entry_size(task: str, outputs: Mapping[str, str]) -> int:
    """Bytes the outputs take in the status or in a shard (key and JSON value)."""
    return len(task.encode()) + len(encode(outputs).encode())


def _inline(task: TaskStatus | None) -> bool:
    return task is not None and bool(task.outputs) and task.outputs_shard is None


def plan_spill(
    run: str,
    status: WorkflowRunStatus,
    previous: WorkflowRunStatus | None,
    budget: Budget,
    task_count: int,
) -> Spill:
    """Place the outputs of tasks that got them since `previous` (the status last written):
    inline while the run's budget lasts and the task's outputs are small, else into the last
    shard, or a new one when they would not fit."""
    tasks = status.tasks or {}
    before = previous.tasks or {} if previous is not None else {}
    kept = {n for n, t in before.items() if _inline(t)}
    used = sum(entry_size(n, t.outputs or {}) for n, t in tasks.items() if n in kept)
    fill: dict[int, int] = {}
    for name, task in tasks.items():
        if task.outputs and task.outputs_shard is not None:
            fill[task.outputs_shard] = fill.get(task.outputs_shard, 0) + entry_size(
                name, task.outputs
            )
    last = max(fill, default=-1)
    limit = budget.for_tasks(task_count)
    writes: dict[int, dict[str, str]] = {}
    placed: dict[str, TaskStatus] = {}
    for name, task in tasks.items():
        if not _inline(task) or name in kept:
            continue
        size = entry_size(name, task.outputs or {})
        if size <= budget.per_task and used + size <= limit:
            used += size
            continue
        if last < 0 or fill[last] + size > budget.shard:
            last += 1
            fill[last] = 0
        fill[last] += size
        writes.setdefault(last, {})[name] = encode(task.outputs or {})
        placed[name] = task.model_copy(update={"outputs_shard": last})
    if not placed:
        return Spill(status)
    shards = [shard_name(run, n) for n in range(last + 1)]
    update = {"tasks": {**tasks, **placed}, "output_shards": shards}
    return Spill(status.model_copy(update=update), writes)


def _slim(task: TaskStatus) -> TaskStatus:
    update: dict[str, object] = {}
    if task.outputs_shard is not None and task.outputs:
        update["outputs"] = None  # the shard holds them
    if task.phase == "Succeeded":
        # the Jobs carry run/task/attempt labels, and Succeeded says exit code 0: neither is
        # repeated in each of up to 5,000 task statuses (the engine never reads them again)
        if task.job_name is not None:
            update["job_name"] = None
        if task.exit_code == 0:
            update["exit_code"] = None
    return task.model_copy(update=update) if update else task


def stored(status: WorkflowRunStatus) -> WorkflowRunStatus:
    """The status as the operator writes it: spilled outputs, and the job name and exit code
    of Succeeded tasks, left out."""
    tasks = status.tasks or {}
    slim = {n: _slim(t) for n, t in tasks.items()}
    if all(slim[n] is t for n, t in tasks.items()):
        return status
    return status.model_copy(update={"tasks": slim})


class MissingOutputs(LookupError):
    """A shard the status points to lacks a task's outputs (deleted by hand?)."""


def hydrate(
    run: str, status: WorkflowRunStatus, shards: Mapping[str, Mapping[str, str]]
) -> WorkflowRunStatus:
    """The status read from the API with each spilled task's outputs read back from its shard
    (`shards`: ConfigMap name -> data), so templating sees every output."""
    tasks = status.tasks or {}
    filled: dict[str, TaskStatus] = {}
    for name, task in tasks.items():
        if task.outputs_shard is None or task.outputs:
            continue
        cm = shard_name(run, task.outputs_shard)
        raw = (shards.get(cm) or {}).get(name)
        if raw is None:
            raise MissingOutputs(f'outputs of task "{name}" are missing from ConfigMap {cm}')
        try:
            outputs = json.loads(raw)
        except ValueError as err:
            raise MissingOutputs(f'outputs of task "{name}" in ConfigMap {cm}: {err}') from err
        filled[name] = task.model_copy(
            update={"outputs": {str(k): str(v) for k, v in outputs.items()}}
        )
    if not filled:
        return status
    return status.model_copy(update={"tasks": {**tasks, **filled}})


def needed_shards(run: str, status: WorkflowRunStatus | None) -> list[str]:
    """Shards whose data hydrate() needs: those of spilled tasks without their outputs."""
    if status is None:
        return []
    wanted = {
        t.outputs_shard
        for t in (status.tasks or {}).values()
        if t.outputs_shard is not None and not t.outputs
    }
    return [shard_name(run, n) for n in sorted(wanted)]
