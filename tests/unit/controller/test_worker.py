"""A run worker reads a Job from the API before it lets the engine call the attempt Lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kopflow.api.run import TaskStatus, WorkflowRunStatus
from kopflow.controller.index import AttemptIndex
from kopflow.controller.runs import RunWorker
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
