"""An in-memory view of kopflow's Jobs and Pods, fed by watch events.

Observing an attempt is then a dictionary lookup: no API read per reconcile, and a Job or Pod
change names the run to wake (through the Job's owner reference) only when it changes what the
run can see of the attempt: most of an attempt's dozen events (the Job's active and ready
counts, a finalizer removed, the Pod bound or Ready) change nothing the engine reads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kopflow.engine.observations import Observation
from kopflow.engine.times import parse_time
from kopflow.executors.kubernetes import JOB_NAME_LABEL, finished, observe, terminated

RunKey = tuple[str, str]
"""(namespace, run name)."""
RUN_LABEL = "kopflow.dev/run"


def _run_label(obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata", {}).get("labels") or {}).get(RUN_LABEL)


def _owner_run(job: dict[str, Any]) -> str | None:
    for ref in job.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("kind") == "WorkflowRun":
            return str(ref.get("name"))
    return None


def _newer(pod: dict[str, Any], current: dict[str, Any] | None) -> bool:
    """Whether pod supersedes the indexed one: a later version of the same Pod, or a Pod
    created later (a Job's replacement Pod). Times are compared parsed: a Pod read through
    the client has `+00:00` where the watch has `Z`."""
    if current is None:
        return True
    new, old = pod["metadata"], current["metadata"]
    if new.get("uid") == old.get("uid"):
        try:
            return int(new.get("resourceVersion", 0)) >= int(old.get("resourceVersion", 0))
        except ValueError:
            return True
    return _created(new) >= _created(old)


def _created(meta: dict[str, Any]) -> datetime:
    value = meta.get("creationTimestamp")
    return parse_time(value) if isinstance(value, str) else datetime.min.replace(tzinfo=UTC)


_META = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "ownerReferences")


def _compact_job(job: dict[str, Any]) -> dict[str, Any]:
    """Only what observe() and routing read: thousands of Jobs stay small in memory."""
    meta = job.get("metadata", {})
    return {"metadata": {k: meta[k] for k in _META if k in meta}, "status": job.get("status")}


def _compact_pod(pod: dict[str, Any]) -> dict[str, Any]:
    meta, status = pod.get("metadata", {}), pod.get("status") or {}
    containers = [
        {"name": c.get("name"), "state": c.get("state")}
        for c in status.get("containerStatuses") or ()
    ]
    keep = {k: status[k] for k in ("phase", "reason", "message") if k in status}
    scheduled = [c for c in status.get("conditions") or () if c.get("type") == "PodScheduled"]
    if scheduled:  # Unschedulable, with the scheduler's words
        keep["conditions"] = scheduled
    compact_meta = {k: meta[k] for k in _META if k in meta}
    compact_meta["labels"] = {
        k: v for k, v in (meta.get("labels") or {}).items() if k in (JOB_NAME_LABEL, "job-name")
    }
    return {"metadata": compact_meta, "status": {**keep, "containerStatuses": containers}}


def _owner_uid(job: dict[str, Any]) -> str | None:
    for ref in job.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("kind") == "WorkflowRun":
            return str(ref.get("uid"))
    return None


def _pod_behind(job: dict[str, Any], pod: dict[str, Any] | None) -> bool:
    """The Job is done but its Pod's final state has not been seen."""
    return finished(job) and terminated(pod) is None


def _synced(job: dict[str, Any]) -> bool:
    return bool((job.get("status") or {}).get("startTime"))


class AttemptIndex:
    """Latest Job and Pod body of every attempt, by (namespace, job name), of unfinished runs
    only: `skip(namespace, run label)` names the finished ones, whose attempts are not kept."""

    def __init__(self, skip: Callable[[str, str], bool] | None = None) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.by_run: dict[RunKey, set[str]] = {}
        """Job names of each run: forgetting a run costs its own attempts, not all of them."""
        self.skip = skip or (lambda _namespace, _label: False)

    def _skipped(self, namespace: str, obj: dict[str, Any]) -> bool:
        label = _run_label(obj)
        return label is not None and self.skip(namespace, label)

    def _put_job(self, key: tuple[str, str], job: dict[str, Any]) -> None:
        self.jobs[key] = _compact_job(job)
        if (run := _owner_run(job)) is not None:
            self.by_run.setdefault((key[0], run), set()).add(key[1])

    def _drop_job(self, key: tuple[str, str]) -> None:
        job = self.jobs.pop(key, None)
        self.pods.pop(key, None)
        run = _owner_run(job) if job is not None else None
        if run is not None and (names := self.by_run.get((key[0], run))) is not None:
            names.discard(key[1])
            if not names:
                del self.by_run[(key[0], run)]

    def _view(self, key: tuple[str, str]) -> tuple[Any, ...]:
        """Everything a run worker reads of one attempt (see RunWorker._observe): an event
        that leaves it unchanged needs no reconcile."""
        job = self.jobs.get(key)
        if job is None:
            return ()
        pod = self.pods.get(key)
        return observe(job, pod), _owner_uid(job), _synced(job), _pod_behind(job, pod)

    def on_job(self, event_type: str | None, job: dict[str, Any]) -> RunKey | None:
        """Record a Job event; return the run to wake (None: a finished run's, or nothing
        the run can see changed)."""
        meta = job.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        before = self._view(key)
        if event_type == "DELETED" or self._skipped(key[0], job):
            self._drop_job(key)
            if event_type != "DELETED":
                return None
        else:
            self._put_job(key, job)
        run = _owner_run(job)
        return (key[0], run) if run and self._view(key) != before else None

    def on_pod(self, event_type: str | None, pod: dict[str, Any]) -> RunKey | None:
        """Record a Pod event under its Job; return the run to wake, as on_job does."""
        meta = pod.get("metadata", {})
        job_name = (meta.get("labels") or {}).get(JOB_NAME_LABEL) or (meta.get("labels") or {}).get(
            "job-name"
        )
        if not job_name:
            return None
        key = (meta.get("namespace", ""), job_name)
        if key not in self.jobs and self._skipped(key[0], pod):
            return None
        before = self._view(key)
        if event_type == "DELETED":
            current = self.pods.get(key)
            if current is not None and current["metadata"].get("uid") == meta.get("uid"):
                self.pods.pop(key, None)
        elif _newer(pod, self.pods.get(key)):
            self.pods[key] = _compact_pod(pod)
        job = self.jobs.get(key)
        run = _owner_run(job) if job else None
        return (key[0], run) if run and self._view(key) != before else None

    def relist_jobs(self, namespace: str, jobs: list[dict[str, Any]]) -> list[RunKey]:
        """Replace the Jobs of namespace ("" = all) with a fresh list (first list, 410 Gone);
        return the runs to wake."""
        before = [j for k, j in self.jobs.items() if not namespace or k[0] == namespace]
        for key in [k for k in self.jobs if not namespace or k[0] == namespace]:
            self.jobs.pop(key)
        self.by_run = {k: v for k, v in self.by_run.items() if namespace and k[0] != namespace}
        jobs = [j for j in jobs if not self._skipped(j["metadata"]["namespace"], j)]
        for job in jobs:
            self._put_job((job["metadata"]["namespace"], job["metadata"]["name"]), job)
        # runs whose Jobs vanished during the gap must hear of it too
        return sorted({k for j in [*before, *jobs] if (k := self._run_of_job(j)) is not None})

    def relist_pods(self, namespace: str, pods: list[dict[str, Any]]) -> list[RunKey]:
        """Replace the Pods of namespace ("" = all) with a fresh list; return the runs to wake."""
        gone = [k for k in self.pods if not namespace or k[0] == namespace]
        self.pods = {k: v for k, v in self.pods.items() if namespace and k[0] != namespace}
        runs = {k for p in pods if (k := self.on_pod("ADDED", p)) is not None}
        runs |= {k for key in gone if (j := self.jobs.get(key)) and (k := self._run_of_job(j))}
        return sorted(runs)

    @staticmethod
    def _run_of_job(job: dict[str, Any]) -> RunKey | None:
        run = _owner_run(job)
        return (job["metadata"]["namespace"], run) if run else None

    def needs_pod(self, namespace: str, job_name: str) -> bool:
        """The Job finished but its Pod's final state has not been seen (the two watches race):
        outputs live in the Pod, so the caller reads it once before deciding."""
        key = (namespace, job_name)
        job = self.jobs.get(key)
        return job is not None and _pod_behind(job, self.pods.get(key))

    def synced(self, namespace: str, job_name: str) -> bool:
        """The Job controller has handled this Job once (it writes status.startTime after
        creating, or failing to create, the pod): before that no FailedCreate can exist."""
        job = self.jobs.get((namespace, job_name))
        return job is not None and _synced(job)

    def observe(
        self,
        namespace: str,
        job_name: str,
        owner_uid: str | None = None,
        refused: str | None = None,
    ) -> Observation:
        """The attempt as its Job and Pod show it. A Job of that name owned by another run
        (two runs whose `<run>-<task>` read the same) is not this attempt: it counts as
        missing, so one run never takes another's exit code or outputs."""
        key = (namespace, job_name)
        job = self.jobs.get(key)
        if job is not None and owner_uid is not None and _owner_uid(job) not in (None, owner_uid):
            job = None
        return observe(job, self.pods.get(key) if job is not None else None, refused)

    def forget_run(self, namespace: str, run: str) -> None:
        """Drop a deleted or finished run's attempts (a deleted run's Jobs go with it by owner
        reference; a finished run's are not looked at again)."""
        for name in list(self.by_run.get((namespace, run), ())):
            self._drop_job((namespace, name))
