"""What reconcile() returns: the new status, the actions to carry out, and when to call again.

Actions are instructions, not requests for permission: the executor carries them out and then
persists `Decision.status`, which already records their effect (a Launch shows as a Running
task with its job name). Carrying out an action twice must be harmless: a Launch uses a
deterministic job name (409 means done), a Stop of a finished job does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from kopflow.api.run import FINISHED_RUN_PHASES, WorkflowRunStatus
from kopflow.api.workflow import EnvVar, PodSettings, Script


@dataclass(frozen=True)
class Launch:
    """Start attempt `attempt` of `task` as job `job_name`, fully rendered."""

    job_name: str
    task: str
    attempt: int
    image: str | None
    command: tuple[str, ...] | None
    """The task's command, verbatim (never templated); None for script tasks."""
    args: tuple[str, ...]
    """Rendered arguments: each stays exactly one argument."""
    env: tuple[EnvVar, ...]
    """KOPFLOW_RUN, KOPFLOW_TASK, KOPFLOW_ATTEMPT, KOPFLOW_PARAM_<NAME>, then the task's env
    (taskDefaults merged, values rendered; `valueFrom` passed through)."""
    script: Script | None
    """Interpreter and source to feed it, for script tasks."""
    timeout_seconds: int | None
    """The Job's activeDeadlineSeconds, the runner's kill timer (the engine also enforces it)."""
    outputs: tuple[str, ...]
    """Declared output names the task may write to $KOPFLOW_OUTPUTS."""
    labels: Mapping[str, str]
    """`kopflow.dev/run`, `kopflow.dev/task`, `kopflow.dev/attempt`, as valid label values."""
    pod: PodSettings
    """envFrom, resources, volumes, volumeMounts, nodeSelector, tolerations, podTemplate
    (merged with taskDefaults; podTemplate.serviceAccountName wins over service_account_name)."""
    service_account_name: str | None = None
    on_failure: bool = False
    """The task is an onFailure handler."""
    replaces: str | None = None
    """The previous attempt's job: delete it first, so no two attempts of a task ever run at
    once (a Lost attempt may still be running somewhere)."""


@dataclass(frozen=True)
class Stop:
    """Stop a running attempt (delete the Job, kill the process group); it will not be observed
    again, status already records it as finished."""

    job_name: str
    task: str
    reason: Literal["Timeout", "Cancelled", "DeadlineExceeded", "PodPending"]


@dataclass(frozen=True)
class StoreCache:
    """Store a successful result under `key` until `expires_at`."""

    key: str
    outputs: Mapping[str, str]
    expires_at: datetime
    task: str = ""
    """The task that stored it (a label on the entry, for `kopflow cache list|clear`)."""


@dataclass(frozen=True)
class LookupCache:
    """Look these keys up and pass the answers (entry or None) in the next call's `cache`."""

    keys: tuple[str, ...]


Action = Launch | Stop | StoreCache | LookupCache


@dataclass(frozen=True)
class Event:
    """Something a person may want to know: a Kubernetes Event, or a runner log line."""

    type: Literal["Normal", "Warning"]
    reason: str
    """TaskStarted, TaskSucceeded, TaskCached, TaskSkipped, TaskRetrying, TaskFailed,
    RunFailing (the first failure: nothing new starts), RunSucceeded, RunFailed, RunCancelled,
    RunInvalid."""
    message: str
    task: str | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome of one reconcile."""

    status: WorkflowRunStatus
    """The whole new status; persist it after carrying out the actions."""
    actions: tuple[Action, ...] = ()
    requeue_at: datetime | None = None
    """Call again at this time even when nothing is observed to change (a retry is due, a
    timeout or the run deadline expires); equals `now` while cache answers are awaited."""
    events: tuple[Event, ...] = ()
    changed: bool = False
    """status differs from the input status: only then does it need persisting."""

    @property
    def finished(self) -> bool:
        """The run reached a final phase; no further call will change anything."""
        return self.status.phase in FINISHED_RUN_PHASES

    @property
    def launches(self) -> list[Launch]:
        return [a for a in self.actions if isinstance(a, Launch)]

    @property
    def stops(self) -> list[Stop]:
        return [a for a in self.actions if isinstance(a, Stop)]

    @property
    def stores(self) -> list[StoreCache]:
        return [a for a in self.actions if isinstance(a, StoreCache)]

    @property
    def lookups(self) -> Sequence[str]:
        """Every cache key the engine waits for."""
        return [k for a in self.actions if isinstance(a, LookupCache) for k in a.keys]
