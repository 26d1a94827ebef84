"""The Workflow resource: a reusable, optionally scheduled, DAG of tasks."""

# No `from __future__ import annotations` here: pydantic would evaluate every field's annotation
# from its string when the class is created, a quarter to a third of the cost of importing these
# models (`kopflow validate` imports them on every start).

from typing import Annotated, Literal

from pydantic import Field

from kopflow.api.base import DNS_LABEL, IDENTIFIER, FreeForm, Lazy, Model
from kopflow.api.pod import MAX_VOLUMES, PodTemplate, Volume, VolumeMount
from kopflow.api.pod import EnvFromSource as EnvFromSource  # re-exported: defined here before
from kopflow.api.pod import EnvVar as EnvVar
from kopflow.api.pod import KeyRef as KeyRef

GROUP = "kopflow.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

MAX_TASKS = 5000
"""A run of this many tasks, each with 4 KiB of outputs, still fits in one object (issue 12)."""
MAX_ON_FAILURE = 50
MAX_DEPENDENCIES = MAX_TASKS
"""A fan-in may wait for every other task."""

Str = Annotated[str, Field(max_length=4096)]
ShortStr = Annotated[str, Field(max_length=253)]
TaskName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
FailureKind = Literal["Failed", "Timeout", "Lost"]
ALL_FAILURE_KINDS: tuple[FailureKind, ...] = ("Failed", "Timeout", "Lost")


class Parameter(Model):
    """A named string input of a workflow, overridable per run."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=IDENTIFIER)]
    """Parameter name; tasks see it as `{{ params.<name> }}` and env `KOPFLOW_PARAM_<NAME>`."""
    default: Str | None = None
    """Value when a run does not set it; may use `{{ schedule.time }}`, `{{ schedule.date }}` and
    `{{ run.name }}`."""
    description: Str | None = None
    """What the parameter means, for people."""
    enum: Annotated[list[Str], Field(max_length=100)] | None = None
    """Allowed values; any other value makes the run Invalid."""
    required: bool = False
    """A run must set this parameter (only meaningful without a default)."""


class Schedule(Model):
    """When to create runs automatically, with CronJob-like semantics (without its surprises)."""

    cron: Annotated[str, Field(min_length=1, max_length=100)]
    """Standard 5-field cron expression (`0 3 * * *`), or @hourly, @daily, @weekly, @monthly."""
    timezone: Annotated[str, Field(max_length=64)] = "UTC"
    """IANA time zone the cron expression is read in (`Europe/Berlin`); DST is handled."""
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    """What to do when a run is due while the previous one still runs: Allow it, Forbid
    (skip this one), or Replace (cancel the running one)."""
    starting_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """A run that could not start within this many seconds of its slot is Missed, not late."""
    suspend: bool = False
    """Stop creating runs; runs already started continue."""
    catch_up: Literal["None", "Latest", "All"] = "None"
    """Which missed slots run after downtime: None (only a slot at most startingDeadlineSeconds,
    or 60 s when unset, late), Latest (the newest missed slot within startingDeadlineSeconds, if
    set), All (every missed slot within startingDeadlineSeconds, the newest maxCatchUp)."""
    max_catch_up: Annotated[int, Field(ge=1, le=1000)] = 10
    """With catchUp All: at most this many missed slots run; older ones are Missed."""


class Backoff(Model):
    """Delay before a retry: `min(seconds * factor^(n-1), maxSeconds)` before attempt n+1."""

    seconds: Annotated[float, Field(ge=0, le=86400)] = 10
    """Delay before the first retry."""
    factor: Annotated[float, Field(ge=1, le=100)] = 2
    """Multiplier applied for each further retry."""
    max_seconds: Annotated[float, Field(ge=0, le=86400)] = 300
    """Upper bound of any single delay."""


class Retry(Model):
    """How often and on which failures an attempt is retried; kopflow owns retries, not the Job."""

    limit: Annotated[int, Field(ge=0, le=100)] = 0
    """Number of retries: a task runs at most limit+1 times."""
    backoff: Backoff = Field(default_factory=Backoff)
    """Delay between attempts."""
    reasons: Annotated[list[FailureKind], Field(max_length=3)] = Field(
        default_factory=lambda: list(ALL_FAILURE_KINDS)
    )
    """Failure kinds that are retried: Failed (non-zero exit), Timeout (timeoutSeconds
    exceeded), Lost (the pod or node vanished, eviction)."""
    exit_codes: (
        Annotated[list[Annotated[int, Field(ge=0, le=255)]], Field(max_length=64)] | None
    ) = None
    """Retry a Failed attempt only for these exit codes (all non-zero codes when unset)."""


class Cache(Model):
    """Reuse a previous successful result instead of running the task again."""

    key: Str = ""
    """Extra input to the cache key (may use templates, e.g. `{{ params.date }}`); the key also
    covers the rendered image, command, args, env and script."""
    ttl_seconds: Annotated[int, Field(ge=1, le=31_536_000)] = 86400
    """How long a stored result stays valid."""


class WhenCondition(Model):
    """A condition on a rendered input; a false condition skips the task (dependents still run)."""

    input: Str
    """The value to test, usually a template such as `{{ params.mode }}`."""
    operator: Literal["in", "notin"]
    """`in`: the input must be one of values; `notin`: it must be none of them."""
    values: Annotated[list[Str], Field(min_length=1, max_length=100)]
    """Literal values compared with the rendered input."""


class Script(Model):
    """Source code handed to an interpreter on stdin; never templated (injection-safe)."""

    command: Annotated[list[Str], Field(min_length=1, max_length=32)]
    """Interpreter to run, e.g. `[python]` or `[bash]`."""
    source: Annotated[str, Field(min_length=1, max_length=65536)]
    """The script; use env vars (`KOPFLOW_PARAM_*`, declared env) for inputs."""


class PodSettings(Model):
    """Container and pod fields a task may set, and may inherit from taskDefaults."""

    image: ShortStr | None = None
    """Container image (ignored by `kopflow run` in process mode)."""
    env: Annotated[list[EnvVar], Field(max_length=256)] | None = None
    """Environment variables, merged by name with taskDefaults.env (the task wins)."""
    env_from: Annotated[list[EnvFromSource], Field(max_length=32)] | None = None
    """Secrets and ConfigMaps imported whole as environment variables."""
    resources: FreeForm | None = None
    """Kubernetes ResourceRequirements (requests, limits)."""
    volumes: Annotated[list[Volume], Field(max_length=MAX_VOLUMES)] | None = None
    """Volumes of the task pod, merged by name with taskDefaults.volumes (the task wins)."""
    volume_mounts: Annotated[list[VolumeMount], Field(max_length=MAX_VOLUMES)] | None = None
    """Mounts of the task container, merged by mountPath with taskDefaults.volumeMounts."""
    node_selector: Annotated[dict[str, ShortStr], Field(max_length=64)] | None = None
    """Kubernetes nodeSelector of the task pod."""
    tolerations: Annotated[list[FreeForm], Field(max_length=64)] | None = None
    """Kubernetes tolerations of the task pod."""
    retry: Retry | None = None
    """Retry policy (no retries when unset)."""
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    """An attempt running longer is stopped and counts as a Timeout."""
    pod_template: Annotated[PodTemplate, Lazy()] | None = None
    """Pod and Job settings (security, scheduling, sidecars...), merged over
    taskDefaults.podTemplate field by field."""
    pod_pending_timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    """An attempt whose container has not started this long after its launch (its pod was
    refused, is unschedulable, cannot pull its image or lacks a Secret) fails with the reason
    the API gave, and its Job is deleted; default 600."""


class TaskDefaults(PodSettings):
    """Settings every task inherits unless it sets them itself."""


class Task(PodSettings):
    """One step of the DAG; each attempt runs as one Kubernetes Job."""

    name: TaskName
    """Unique task name (a DNS label); part of Job names and of `{{ tasks.<name>... }}`."""
    command: Annotated[list[Str], Field(max_length=256)] | None = None
    """Executable and fixed arguments; never templated (put inputs in args or env)."""
    args: Annotated[list[Str], Field(max_length=256)] | None = None
    """Arguments; each may use templates and stays exactly one argument after rendering."""
    script: Script | None = None
    """Run source code with an interpreter instead of command."""
    depends_on: Annotated[list[TaskName], Field(max_length=MAX_DEPENDENCIES)] | None = None
    """Tasks that must have Succeeded (or been skipped by their own `when`) first."""
    cache: Cache | None = None
    """Reuse the outputs of an earlier identical successful attempt."""
    outputs: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=63, pattern=IDENTIFIER)]],
            Field(max_length=32),
        ]
        | None
    ) = None
    """Names of outputs the task writes to `$KOPFLOW_OUTPUTS` as `key=value` lines."""
    when: Annotated[list[WhenCondition], Field(max_length=16)] | None = None
    """All conditions must hold, or the task is Skipped (reason WhenFalse)."""
    allow_failure: bool = False
    """A failure of this task does not fail the run; dependents are skipped."""


class WorkflowSpec(Model):
    """A DAG of tasks, its parameters, and optionally a schedule."""

    parameters: Annotated[list[Parameter], Field(max_length=100)] | None = None
    """Inputs of the workflow."""
    schedule: Schedule | None = None
    """Create runs on a cron schedule."""
    successful_runs_history_limit: Annotated[int, Field(ge=0, le=1000)] = 5
    """Scheduled runs kept after they succeed."""
    failed_runs_history_limit: Annotated[int, Field(ge=0, le=1000)] = 5
    """Scheduled runs kept after they fail."""
    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = None
    """Delete a finished run (and its Jobs) this many seconds after it finished."""
    parallelism: Annotated[int, Field(ge=1, le=10000)] | None = None
    """Tasks of one run that may run at once (unbounded when unset)."""
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """Whole-run timeout: running tasks are stopped and the run fails (DeadlineExceeded)."""
    service_account_name: ShortStr | None = None
    """Service account of the task pods."""
    task_defaults: TaskDefaults | None = None
    """Settings inherited by every task."""
    tasks: Annotated[list[Task], Field(min_length=1, max_length=MAX_TASKS)]
    """The tasks of the DAG."""
    on_failure: Annotated[list[Task], Field(max_length=MAX_ON_FAILURE)] | None = None
    """Tasks that run only when the run fails, after its running tasks finished."""


class Condition(Model):
    """A Kubernetes-style condition."""

    type: Annotated[str, Field(max_length=316)]
    """Condition type, e.g. Succeeded or Valid."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: Annotated[str, Field(max_length=1024)] | None = None
    """CamelCase machine-readable reason."""
    message: Annotated[str, Field(max_length=32768)] | None = None
    """Human-readable details."""
    last_transition_time: str | None = None
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """metadata.generation the condition was computed from."""


class WorkflowStatus(Model):
    """What the operator observed about a Workflow and its schedule."""

    observed_generation: int | None = None
    """metadata.generation this status describes."""
    conditions: list[Condition] | None = None
    """Valid: whether the spec passed validation."""
    last_schedule_time: str | None = None
    """When the schedule last created a run."""
    next_schedule_time: str | None = None
    """When the schedule will next create a run."""
    last_run_name: ShortStr | None = None
    """Name of the most recent scheduled run."""
    active: list[ShortStr] | None = None
    """Names of unfinished scheduled runs."""
    last_successful_time: str | None = None
    """When the newest succeeded scheduled run finished."""
    last_slot_time: str | None = None
    """The newest slot the schedule decided (run, skipped or missed); it continues after it."""
    missed: int | None = None
    """Slots not run because they were later than the starting deadline or the catch-up bound."""
    skipped: int | None = None
    """Slots not run because concurrencyPolicy Forbid found a scheduled run still active."""


class ObjectMeta(Model):
    """The metadata fields kopflow reads; everything else passes through."""

    model_config = Model.model_config | {"extra": "allow"}

    name: str | None = None
    namespace: str | None = None
    generate_name: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class Workflow(Model):
    """A reusable workflow definition (kind Workflow, short name wf)."""

    api_version: Literal["kopflow.dev/v1alpha1"] = "kopflow.dev/v1alpha1"
    kind: Literal["Workflow"] = "Workflow"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: WorkflowSpec
    status: WorkflowStatus | None = None
