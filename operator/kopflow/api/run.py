"""The WorkflowRun resource: one execution of a workflow, and everything a person asks about it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from kopflow.api.base import FreeForm, Model
from kopflow.api.workflow import API_VERSION, Condition, ObjectMeta, ShortStr, WorkflowSpec

RunPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled", "Invalid"]
TaskPhase = Literal["Pending", "Running", "Retrying", "Succeeded", "Failed", "Skipped", "Cancelled"]
FINISHED_RUN_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "Cancelled", "Invalid"})
FINISHED_TASK_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "Skipped", "Cancelled"})
HISTORY_LIMIT = 10


class WorkflowRef(Model):
    """A Workflow in the run's namespace."""

    name: ShortStr
    """Name of the Workflow to run."""


class RetryOf(Model):
    """The run a retry repeats (`kopflow retry`), and the results it takes over from it."""

    name: ShortStr
    """Name of the earlier run."""
    uid: str | None = None
    """Its metadata.uid: the very run, even if one of the same name exists now."""
    reused: dict[str, dict[str, Annotated[str, Field(max_length=65536)]]] | None = None
    """Task name -> the outputs it produced there: these tasks are Succeeded from the start
    (reused: true), nothing runs for them, and their outputs feed templating as usual."""


class WorkflowRunSpec(Model):
    """What to run: a Workflow by reference or inline, with parameter values."""

    workflow_ref: WorkflowRef | None = None
    """Run this Workflow (its spec as the run starts is kept in a ConfigMap the run owns,
    status.workflowSnapshot). Immutable."""
    workflow: WorkflowSpec | None = None
    """An inline workflow spec, instead of workflowRef. Immutable, so it is the run's only copy
    of its spec."""
    parameters: dict[str, Annotated[str, Field(max_length=65536)]] | None = None
    """Parameter values by name; override the workflow's defaults. Immutable."""
    cancel: bool = False
    """Set to true to cancel: running tasks are stopped, the rest are Cancelled."""
    suspend: bool = False
    """While true no new task starts; running tasks continue."""
    cache: bool = True
    """Set to false to ignore cached results (results are still stored)."""
    scheduled_time: str | None = None
    """Set by the schedule: the time this run was due (`{{ schedule.time }}`)."""
    workflow_wait_seconds: Annotated[int, Field(ge=0)] = 300
    """How long a run waits (Pending, WorkflowNotFound) for its workflowRef to appear before
    it is Invalid: `kubectl apply -f dir/` may create runs before their Workflow."""
    retry_of: RetryOf | None = None
    """Set by `kopflow retry`: the run this one retries and the task results it reuses."""


class ConfigMapKeyRef(Model):
    """One key of a ConfigMap the run owns (deleted with the run)."""

    config_map: ShortStr
    """Name of the ConfigMap, in the run's namespace."""
    key: ShortStr
    """Key of its data."""


class Attempt(Model):
    """One finished attempt of a task, kept compactly (the last 10)."""

    attempt: int
    """Attempt number, from 1."""
    exit_code: int | None = None
    """Container exit code, when it exited."""
    reason: str | None = None
    """Completed, Error, OOMKilled, Timeout, Lost, Cancelled..."""
    started_at: str | None = None
    """When the attempt started (RFC 3339)."""
    finished_at: str | None = None
    """When the attempt finished (RFC 3339)."""


class TaskStatus(Model):
    """The state of one task of a run."""

    phase: TaskPhase = "Pending"
    """Pending, Running, Retrying (waiting for backoff), Succeeded, Failed, Skipped, Cancelled."""
    attempts: int = 0
    """Attempts started so far."""
    job_name: ShortStr | None = None
    """Job of the current or last attempt. A cluster's run leaves it out once the task
    Succeeded (its Jobs carry the labels kopflow.dev/run, kopflow.dev/task and
    kopflow.dev/attempt)."""
    exit_code: int | None = None
    """Exit code of the last attempt (a cluster's run leaves out the 0 of a Succeeded task)."""
    reason: str | None = None
    """Why the task is in its phase (Error, OOMKilled, Timeout, WhenFalse, UpstreamFailed...)."""
    message: str | None = None
    """Human-readable details of the reason."""
    outputs: dict[str, str] | None = None
    """Declared outputs of the successful attempt, when they fit the run's inline budget."""
    outputs_shard: Annotated[int, Field(ge=0)] | None = None
    """Set when the outputs did not fit the run's inline budget: they are under the key named
    like the task, as JSON, in ConfigMap `<run>-outputs-<outputsShard>` (status.outputShards)."""
    cached: bool | None = None
    """The result came from the cache; no attempt ran."""
    reused: bool | None = None
    """The result was taken over from the run this one retries (spec.retryOf); nothing ran."""
    next_retry_at: str | None = None
    """When the next attempt starts (phase Retrying)."""
    started_at: str | None = None
    """When the first attempt started."""
    attempt_started_at: str | None = None
    """When the running attempt was launched (its timeout counts from here); unset otherwise."""
    finished_at: str | None = None
    """When the task reached a final phase."""
    history: list[Attempt] | None = None
    """Finished attempts, oldest first, the last 10."""


class WorkflowRunStatus(Model):
    """Everything the operator knows about a run; the only place its state lives."""

    phase: RunPhase | None = None
    """Pending, Running, Succeeded, Failed, Cancelled or Invalid."""
    reason: str | None = None
    """Why the run is in its phase (TaskFailed, DeadlineExceeded, Cancelled, Invalid...)."""
    message: str | None = None
    """Human-readable details, e.g. which task failed or which field is invalid."""
    started_at: str | None = None
    """When the run started (RFC 3339)."""
    finished_at: str | None = None
    """When the run finished (RFC 3339)."""
    progress: str | None = None
    """Finished tasks over all tasks, e.g. `3/5`."""
    duration: str | None = None
    """Wall time from start to finish (or to the last update while running), e.g. `1m23s`."""
    parameters: dict[str, str] | None = None
    """Resolved parameter values."""
    workflow: FreeForm | None = None
    """Snapshot of the workflow spec written by earlier kopflow versions (read to continue
    their runs, never written now): see workflowSnapshot."""
    workflow_snapshot: ConfigMapKeyRef | None = None
    """With spec.workflowRef: the Workflow's spec as the run started, in a ConfigMap the run
    owns; later edits to the Workflow do not change the run. Unset with an inline
    spec.workflow, which is immutable."""
    output_shards: list[ShortStr] | None = None
    """ConfigMaps the run owns (`<run>-outputs-<n>`, n from 0) holding the task outputs over
    the inline budget; a task's outputsShard is the n of its one."""
    tasks: dict[str, TaskStatus] | None = None
    """Per-task state by task name."""
    conditions: list[Condition] | None = None
    """Succeeded: Unknown while running, then True or False."""
    delete_at: str | None = None
    """When the operator deletes this finished run (the workflow's ttlSecondsAfterFinished)."""
    observed_generation: int | None = None
    """metadata.generation this status describes."""


class WorkflowRun(Model):
    """One execution of a workflow (kind WorkflowRun, short name wfr)."""

    api_version: Literal["kopflow.dev/v1alpha1"] = "kopflow.dev/v1alpha1"
    kind: Literal["WorkflowRun"] = "WorkflowRun"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: WorkflowRunSpec
    status: WorkflowRunStatus | None = None


def owner_reference(meta: dict[str, Any]) -> dict[str, Any]:
    """The ownerReference that makes an object the run's (its Jobs, its ConfigMaps): the
    garbage collector deletes it with the run."""
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkflowRun",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
