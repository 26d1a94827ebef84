"""The WorkflowRun resource: one execution of a workflow, and everything a person asks about it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from kopflow.api.base import FreeForm, Model
from kopflow.api.workflow import Condition, ObjectMeta, ShortStr, WorkflowSpec

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
    """Run this Workflow (its spec is snapshotted when the run starts)."""
    workflow: WorkflowSpec | None = None
    """An inline workflow spec, instead of workflowRef."""
    parameters: dict[str, Annotated[str, Field(max_length=65536)]] | None = None
    """Parameter values by name; override the workflow's defaults."""
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
    """Job of the current or last attempt."""
    exit_code: int | None = None
    """Exit code of the last attempt."""
    reason: str | None = None
    """Why the task is in its phase (Error, OOMKilled, Timeout, WhenFalse, UpstreamFailed...)."""
    message: str | None = None
    """Human-readable details of the reason."""
    outputs: dict[str, str] | None = None
    """Declared outputs of the successful attempt."""
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
    """Snapshot of the workflow spec this run executes; later edits to the Workflow do not
    change it."""
    tasks: dict[str, TaskStatus] | None = None
    """Per-task state by task name."""
    conditions: list[Condition] | None = None
    """Succeeded: Unknown while running, then True or False."""
    observed_generation: int | None = None
    """metadata.generation this status describes."""


class WorkflowRun(Model):
    """One execution of a workflow (kind WorkflowRun, short name wfr)."""

    api_version: Literal["kopflow.dev/v1alpha1"] = "kopflow.dev/v1alpha1"
    kind: Literal["WorkflowRun"] = "WorkflowRun"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: WorkflowRunSpec
    status: WorkflowRunStatus | None = None
