"""An in-memory view of kopflow's Jobs and Pods, fed by watch events.

Observing an attempt is then a dictionary lookup: no API read per reconcile, and every Job or
Pod change names the run to wake (through the Job's owner reference).
"""

from __future__ import annotations

from typing import Any

from kopflow.engine.observations import Observation
from kopflow.executors.kubernetes import JOB_NAME_LABEL, finished, observe, terminated

RunKey = tuple[str, str]
"""(namespace, run name)."""


def _owner_run(job: dict[str, Any]) -> str | None:
    for ref in job.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("kind") == "WorkflowRun":
            return str(ref.get("name"))
    return None


class AttemptIndex:
    """Latest Job and Pod body of every attempt, by (namespace, job name)."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}

    def on_job(self, event_type: str | None, job: dict[str, Any]) -> RunKey | None:
        """Record a Job event; return the run it belongs to."""
        meta = job.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self.jobs.pop(key, None)
            self.pods.pop(key, None)
        else:
            self.jobs[key] = job
        run = _owner_run(job)
        return (key[0], run) if run else None

    def on_pod(self, event_type: str | None, pod: dict[str, Any]) -> RunKey | None:
        """Record a Pod event under its Job; return the run that Job belongs to."""
        meta = pod.get("metadata", {})
        job_name = (meta.get("labels") or {}).get(JOB_NAME_LABEL) or (meta.get("labels") or {}).get(
            "job-name"
        )
        if not job_name:
            return None
        key = (meta.get("namespace", ""), job_name)
        if event_type == "DELETED":
            current = self.pods.get(key)
            if current is not None and current["metadata"].get("uid") == meta.get("uid"):
                self.pods.pop(key, None)
        else:
            current = self.pods.get(key)
            newer = current is None or str(meta.get("creationTimestamp", "")) >= str(
                current["metadata"].get("creationTimestamp", "")
            )
            if newer:
                self.pods[key] = pod
        job = self.jobs.get(key)
        run = _owner_run(job) if job else None
        return (key[0], run) if run else None

    def needs_pod(self, namespace: str, job_name: str) -> bool:
        """The Job finished but its Pod's final state has not been seen (the two watches race):
        outputs live in the Pod, so the caller reads it once before deciding."""
        job = self.jobs.get((namespace, job_name))
        if job is None or not finished(job):
            return False
        return terminated(self.pods.get((namespace, job_name))) is None

    def observe(self, namespace: str, job_name: str) -> Observation:
        key = (namespace, job_name)
        return observe(self.jobs.get(key), self.pods.get(key))

    def forget_run(self, namespace: str, run: str) -> None:
        """Drop a deleted run's attempts (their Jobs go with it by owner reference)."""
        for key in [
            k for k, job in self.jobs.items() if k[0] == namespace and _owner_run(job) == run
        ]:
            self.jobs.pop(key, None)
            self.pods.pop(key, None)
