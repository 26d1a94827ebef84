"""A run worker reads a Job from the API before it lets the engine call the attempt Lost, and
looks at once at a Job it adopted (no watch event may follow)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.apiserver_patch import merge_patch as apply_merge_patch

from kopflow.api.run import TaskStatus, WorkflowRunStatus
from kopflow.controller.index import AttemptIndex
from kopflow.controller.runs import RunWorker
from kopflow.engine.naming import job_name
from kopflow.engine.times import format_time


class OneJob:
    """A Kube that holds one Job the watch has not delivered (a lagging or broken watch)."""

    def __init__(self, job: dict[str, Any] | None) -> None:
        self.job, self.reads = job, 0

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.job if self.job and self.job["metadata"]["name"] == name else None

    async def job_refusal(self, namespace: str, name: str) -> str | None:
        return None


def status(launched: datetime) -> WorkflowRunStatus:
    task = TaskStatus(
        phase="Running", attempts=1, job_name="r-t-1", attempt_started_at=format_time(launched)
    )
    return WorkflowRunStatus(phase="Running", tasks={"t": task})


def job() -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": "r-t-1",
            "uid": "j1",
            "ownerReferences": [{"kind": "WorkflowRun", "name": "r", "uid": "u1"}],
        },
        "status": {"active": 1, "startTime": "2026-11-28T08:00:00Z"},
    }


def worker(kube: OneJob) -> RunWorker:
    w = RunWorker("ns", "r", kube, AttemptIndex())  # type: ignore[arg-type]
    w.body = {"metadata": {"namespace": "ns", "name": "r", "uid": "u1"}}
    return w


async def test_an_unseen_job_is_read_from_the_api_before_it_counts_as_lost() -> None:
    kube = OneJob(job())
    long_ago = datetime.now(UTC) - timedelta(seconds=60)
    seen, _ = await worker(kube)._observe(status(long_ago))
    assert seen["r-t-1"].state == "running" and kube.reads == 1


async def test_a_job_that_is_really_gone_stays_missing_and_a_young_one_is_not_read() -> None:
    gone = OneJob(None)
    long_ago = datetime.now(UTC) - timedelta(seconds=60)
    seen, _ = await worker(gone)._observe(status(long_ago))
    assert seen["r-t-1"].state == "missing" and gone.reads == 1
    young = OneJob(job())
    seen, _ = await worker(young)._observe(status(datetime.now(UTC)))
    assert seen["r-t-1"].state == "missing" and young.reads == 0  # within the grace: no read


class PodlessJob(OneJob):
    """A Job the Job controller has not made a pod for (yet); counts FailedCreate reads."""

    def __init__(self) -> None:
        super().__init__(job())
        self.refusal_reads = 0

    async def job_refusal(self, namespace: str, name: str) -> str | None:
        self.refusal_reads += 1
        return None


async def test_a_podless_job_has_its_events_read_less_and_less_often(monkeypatch: Any) -> None:
    """A busy Job controller leaves hundreds of Jobs pod-less for a while: reading each one's
    Events every 2 s was a storm of lists in a burst (bench_burst.py); the period doubles."""
    from kopflow.controller import runs

    kube = PodlessJob()
    w = worker(kube)
    w.index.on_job("ADDED", {**job(), "status": {"startTime": "2026-11-28T08:00:00Z"}})
    start = datetime.now(UTC)
    reads = []
    for second in (0, 1, 2, 5, 6, 13, 14, 29, 30, 59, 60):
        monkeypatch.setattr(runs, "_now", lambda s=second: start + timedelta(seconds=s))
        await w._observe_one("r-t-1", start - timedelta(seconds=60))
        reads.append(kube.refusal_reads)
    # read at 0, then 2 s later (2), 4 s (6), 8 s (14), 16 s (30), then every 30 s (60)
    assert reads == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6]


async def test_a_job_the_job_controller_has_not_synced_has_no_events_read(
    monkeypatch: Any,
) -> None:
    """In a burst the Job controller takes seconds to reach each new Job; until it writes the
    Job's status.startTime (after creating, or failing to create, the pod, as the real v1.36
    controller does) no FailedCreate Event can exist, so none is listed."""
    from kopflow.controller import runs

    kube = PodlessJob()
    w = worker(kube)
    w.index.on_job("ADDED", {**job(), "status": {}})
    start = datetime.now(UTC)
    for second in (0, 5, 30):
        monkeypatch.setattr(runs, "_now", lambda s=second: start + timedelta(seconds=s))
        seen = await w._observe_one("r-t-1", start - timedelta(seconds=60))
        assert seen.pending and seen.reason == "PodNotCreated"
    assert kube.refusal_reads == 0
    w.index.on_job("MODIFIED", {**job(), "status": {"startTime": "2026-11-28T08:00:00Z"}})
    await w._observe_one("r-t-1", start - timedelta(seconds=60))
    assert kube.refusal_reads == 1


class Relaunch:
    """A Kube where every Job the worker creates exists already (a relaunch after a crash, or
    a status write that conflicted after the launch): create_job answers False, as on a 409.
    Records the run's status as written."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}
        self.creates = self.writes = 0

    def fence(self) -> None:
        return None

    async def create_job(self, namespace: str, body: dict[str, Any]) -> bool:
        self.creates += 1
        return False

    async def patch_run_status(
        self, namespace: str, name: str, patch: dict[str, Any], fence: str | None
    ) -> dict[str, Any]:
        self.status = apply_merge_patch(self.status, patch)
        self.writes += 1
        return {"metadata": {"resourceVersion": str(self.writes)}}

    def post_event_later(self, *_: Any) -> None:
        return None


async def test_an_adopted_job_that_already_finished_ends_its_attempt_without_an_event() -> None:
    """The Job of a relaunched attempt may have finished, and all its watch events arrived,
    before the worker launches it (create answers 409 and the Job is adopted). No event will
    follow: the worker looks at it again at once instead of sleeping until the attempt would
    be Lost (30 s; seen as test_rbac_usage's "adopt" run finishing 28 s late)."""
    kube = Relaunch()
    w = RunWorker("ns", "r", kube, AttemptIndex())  # type: ignore[arg-type]
    w.update(
        {
            "apiVersion": "kopflow.dev/v1alpha1",
            "kind": "WorkflowRun",
            "metadata": {"namespace": "ns", "name": "r", "uid": "u1", "generation": 1},
            "spec": {"workflow": {"tasks": [{"name": "t", "image": "busybox"}]}},
        }
    )
    name = job_name("r", "t", 1, "u1")
    owner = [{"kind": "WorkflowRun", "name": "r", "uid": "u1"}]
    w.index.on_job(
        "ADDED",
        {
            "metadata": {"namespace": "ns", "name": name, "ownerReferences": owner},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]},
        },
    )
    w.index.on_pod(
        "ADDED",
        {
            "metadata": {
                "namespace": "ns",
                "name": f"{name}-x",
                "uid": "p1",
                "resourceVersion": "3",
                "labels": {"batch.kubernetes.io/job-name": name},
            },
            "status": {
                "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 0}}}]
            },
        },
    )
    # no event comes after the launch: the loop must end by itself, long before 30 s
    await asyncio.wait_for(w.loop(), 5)
    assert kube.creates == 1
    assert kube.status["phase"] == "Succeeded"
    assert kube.status["tasks"]["t"]["phase"] == "Succeeded"
