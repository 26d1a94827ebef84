"""The run as reconcile() sees it: spec snapshot, parameters, the user's switches, status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kopflow.api.run import RetryOf, WorkflowRun, WorkflowRunStatus
from kopflow.api.workflow import WorkflowSpec


@dataclass(frozen=True)
class RunState:
    """Everything reconcile() needs to know about a run besides observations and the cache."""

    name: str
    namespace: str
    spec: WorkflowSpec
    """The workflow snapshot the run executes (taskDefaults not merged: the engine does it).
    Pass the same object on every call (its plan is remembered) and never mutate it."""
    parameters: Mapping[str, str] = field(default_factory=dict)
    """Resolved parameter values (params.resolve_parameters)."""
    status: WorkflowRunStatus | None = None
    """The persisted status; None (or one without a phase) on the first call."""
    cancel: bool = False
    """spec.cancel: stop running attempts, mark the rest Cancelled."""
    suspend: bool = False
    """spec.suspend: start nothing new until cleared."""
    use_cache: bool = True
    """spec.cache: false ignores cache hits (successes are still stored)."""
    scheduled_time: str | None = None
    """spec.scheduledTime (RFC 3339), for `{{ schedule.time }}`; else the run's start."""
    generation: int | None = None
    """metadata.generation, reported as observedGeneration."""
    uid: str = ""
    """metadata.uid (the local runner: a stable id per run); hashed into every Job name so
    that no two runs' attempts share a name."""
    retry_of: RetryOf | None = None
    """spec.retryOf: the tasks it names start Succeeded with the outputs they had (reuse)."""

    @classmethod
    def of(
        cls,
        run: WorkflowRun,
        spec: WorkflowSpec,
        parameters: Mapping[str, str],
        generation: int | None = None,
    ) -> RunState:
        """The state of a WorkflowRun resource whose spec and parameters were resolved."""
        return cls(
            name=run.metadata.name or "",
            namespace=run.metadata.namespace or "default",
            spec=spec,
            parameters=parameters,
            status=run.status,
            cancel=run.spec.cancel,
            suspend=run.spec.suspend,
            use_cache=run.spec.cache,
            scheduled_time=run.spec.scheduled_time,
            generation=generation,
            uid=str((run.metadata.model_extra or {}).get("uid") or ""),
            retry_of=run.spec.retry_of,
        )


def jobs_to_observe(status: WorkflowRunStatus | None) -> list[str]:
    """Job names of the attempts status says are running: what the executor must report."""
    if status is None or not status.tasks:
        return []
    return [t.job_name for t in status.tasks.values() if t.phase == "Running" and t.job_name]
