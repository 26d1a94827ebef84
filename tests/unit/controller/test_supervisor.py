"""The supervisor starts no run worker before it has seen every Job and Pod once."""

from __future__ import annotations

import asyncio
from typing import Any

from kopflow.controller.supervisor import Supervisor


class Idle:
    """A Kube whose every call waits forever: the workers must not get that far here."""

    def __getattr__(self, name: str) -> Any:
        async def wait(*_: Any, **__: Any) -> None:
            await asyncio.Event().wait()

        return wait


def run(name: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name, "uid": f"u-{name}", "generation": 1},
        "spec": {"workflowRef": {"name": "wf"}},
        "status": {"phase": phase},
    }


async def test_workers_wait_for_the_first_job_and_pod_lists() -> None:
    supervisor = Supervisor(Idle(), namespaces=[""])  # type: ignore[arg-type]
    supervisor.on_run("ADDED", run("a"))
    assert supervisor.tasks == {}  # Jobs not listed yet: "no Job" would read as "Lost"
    supervisor.relist_jobs("", [])
    assert supervisor.tasks == {}
    supervisor.relist_pods("", [])
    assert set(supervisor.tasks) == {("ns", "a")}
    supervisor.on_run("ADDED", run("b"))
    assert set(supervisor.tasks) == {("ns", "a"), ("ns", "b")}
    await supervisor.stop()


async def test_a_relist_wakes_runs_whose_jobs_vanished_in_the_gap() -> None:
    supervisor = Supervisor(Idle(), namespaces=[""])  # type: ignore[arg-type]
    supervisor.relist_jobs("", [])
    supervisor.relist_pods("", [])
    supervisor.on_run("ADDED", run("a"))
    await asyncio.sleep(0)  # let the worker start its first step
    worker = supervisor.workers[("ns", "a")]
    job = {
        "metadata": {
            "namespace": "ns",
            "name": "a-t-1",
            "ownerReferences": [{"kind": "WorkflowRun", "name": "a"}],
        }
    }
    supervisor.on_job("ADDED", job)
    worker.wake.clear()
    supervisor.relist_jobs("", [])  # the Job is gone from the fresh list
    assert worker.wake.is_set()
    await supervisor.stop()
