"""A finished run costs the operator a summary: no worker, no full body, no indexed attempts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from kopflow.controller.finished import Expiry, summary, ttl_due
from kopflow.controller.supervisor import Supervisor
from kopflow.engine.times import format_time


class Idle:
    """A Kube whose every call waits forever; deletions are recorded."""

    def __init__(self) -> None:
        self.deleted: list[tuple[str, str]] = []

    def fence(self) -> None:
        return None

    async def delete_run(self, namespace: str, name: str) -> None:
        self.deleted.append((namespace, name))

    def __getattr__(self, name: str) -> Any:
        async def wait(*_: Any, **__: Any) -> None:
            await asyncio.Event().wait()

        return wait


TASKS = range(50)


def run(name: str, phase: str | None = "Running", uid: str = "", generation: int = 1) -> Any:
    status: dict[str, Any] = {}
    if phase is not None:
        status = {
            "phase": phase,
            "finishedAt": "2026-11-29T10:00:00Z",
            "workflow": {"tasks": [{"name": "t", "image": "busybox"}] * 50},
            "tasks": {f"t{i}": {"phase": "Succeeded", "outputs": {"k": "v" * 99}} for i in TASKS},
        }
    return {
        "apiVersion": "kopflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": uid or f"u-{name}",
            "generation": generation,
            "resourceVersion": "7",
            "labels": {"kopflow.dev/workflow": "wf", "team": "x"},
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"workflowRef": {"name": "wf"}, "parameters": {"p": "q" * 1000}},
        "status": status,
    }


def job(run_name: str, name: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "labels": {"kopflow.dev/run": run_name},
            "ownerReferences": [{"kind": "WorkflowRun", "name": run_name, "uid": f"u-{run_name}"}],
        },
        "status": {},
    }


def pod(run_name: str, job_name: str) -> dict[str, Any]:
    labels = {"kopflow.dev/run": run_name, "batch.kubernetes.io/job-name": job_name}
    return {"metadata": {"namespace": "ns", "name": job_name + "-x", "uid": "p", "labels": labels}}


def synced() -> Supervisor:
    supervisor = Supervisor(Idle(), namespaces=[""])  # type: ignore[arg-type]
    supervisor.relist_jobs("", [])
    supervisor.relist_pods("", [])
    return supervisor


async def test_a_finished_run_keeps_a_summary_and_no_worker_or_attempts() -> None:
    supervisor = synced()
    supervisor.on_job("ADDED", job("done", "done-t-1"))
    supervisor.on_run("ADDED", run("done", "Succeeded"))
    assert supervisor.workers == {} and supervisor.tasks == {}
    kept = supervisor.bodies[("ns", "done")]
    assert kept == summary(run("done", "Succeeded"))
    assert "workflow" not in kept["status"] and "parameters" not in kept["spec"]
    assert len(repr(kept)) < 400
    assert supervisor.index.jobs == {}  # forgotten when it was seen finished
    supervisor.on_job("MODIFIED", job("done", "done-t-1"))
    supervisor.on_pod("MODIFIED", pod("done", "done-t-1"))
    assert supervisor.index.jobs == {} and supervisor.index.pods == {}
    # a later event (the echo of a write, a label change) starts nothing
    supervisor.on_run("MODIFIED", run("done", "Succeeded"))
    supervisor.on_run("MODIFIED", run("done", "Running"))  # an older echo
    assert supervisor.workers == {} and supervisor.bodies[("ns", "done")]["status"]["phase"] == (
        "Succeeded"
    )
    await supervisor.stop()


async def test_a_worker_that_finishes_leaves_only_the_summary() -> None:
    supervisor = synced()
    supervisor.on_run("ADDED", run("a"))
    supervisor.on_job("ADDED", job("a", "a-t-1"))
    worker = supervisor.workers[("ns", "a")]
    task = supervisor.tasks[("ns", "a")]
    task.cancel()  # stands in for the Idle Kube's endless step
    worker.body = run("a", "Failed")
    await supervisor._run(("ns", "a"), worker)  # the step sees the final status: DONE
    assert supervisor.workers == {} and supervisor.tasks == {}
    assert supervisor.bodies[("ns", "a")]["status"]["phase"] == "Failed"
    assert supervisor.index.jobs == {}
    await supervisor.stop()


async def test_a_new_run_under_a_finished_runs_name_starts() -> None:
    supervisor = synced()
    supervisor.on_run("ADDED", run("a", "Succeeded"))
    supervisor.on_run("DELETED", run("a", "Succeeded"))
    assert supervisor.bodies == {}
    supervisor.on_run("ADDED", run("a", "Succeeded"))
    supervisor.on_run("ADDED", run("a", None, uid="other"))  # recreated without a DELETED seen
    assert set(supervisor.tasks) == {("ns", "a")}
    supervisor.on_job("ADDED", job("a", "a-t-1"))
    assert ("ns", "a-t-1") in supervisor.index.jobs  # its attempts are indexed again
    await supervisor.stop()


async def test_a_reopened_run_with_a_new_generation_gets_a_worker() -> None:
    supervisor = synced()
    supervisor.on_run("ADDED", run("a", "Succeeded"))
    supervisor.on_run("MODIFIED", run("a", None, generation=2))  # status cleared, spec changed
    assert set(supervisor.tasks) == {("ns", "a")}
    await supervisor.stop()


async def test_a_relist_keeps_finished_runs_as_summaries() -> None:
    supervisor = Supervisor(Idle(), namespaces=[""])  # type: ignore[arg-type]
    listed = [supervisor.shrink(run("a", "Succeeded")), supervisor.shrink(run("b"))]
    assert listed[0] == summary(run("a", "Succeeded")) and listed[1] == run("b")
    supervisor.relist_runs("", listed)
    supervisor.relist_jobs("", [job("a", "a-t-1"), job("b", "b-t-1")])
    supervisor.relist_pods("", [])
    assert set(supervisor.tasks) == {("ns", "b")}
    assert set(supervisor.index.jobs) == {("ns", "b-t-1")}
    await supervisor.stop()


def test_a_ttl_survives_the_summary() -> None:
    body = run("a", "Succeeded")
    body["status"]["workflow"]["ttlSecondsAfterFinished"] = 60
    due = datetime(2026, 11, 29, 10, 1, tzinfo=UTC)
    assert ttl_due(body["status"]) == due
    assert ttl_due(summary(summary(body))["status"]) == due
    assert ttl_due(run("a", "Succeeded")["status"]) is None


async def test_the_ttl_timer_deletes_due_runs_that_are_still_the_same_object() -> None:
    now = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    deleted: list[tuple[str, str]] = []
    current = {("ns", "a"): "u1", ("ns", "b"): "u-new", ("ns", "c"): "u3"}

    async def delete(namespace: str, name: str) -> None:
        deleted.append((namespace, name))

    expiry = Expiry(delete, current.get, lambda: now)
    expiry.add(("ns", "a"), "u1", now - timedelta(seconds=1))
    expiry.add(("ns", "b"), "u-old", now - timedelta(seconds=1))  # replaced meanwhile
    expiry.add(("ns", "c"), "u3", now + timedelta(hours=1))  # not due
    expiry.start()
    for _ in range(10):
        await asyncio.sleep(0)
    assert deleted == [("ns", "a")]
    assert [k for _, k, _ in expiry.heap] == [("ns", "c")]
    await expiry.stop()


async def test_the_supervisor_deletes_a_finished_run_once_its_ttl_is_due() -> None:
    kube = Idle()
    supervisor = Supervisor(kube, namespaces=[""])  # type: ignore[arg-type]
    body = run("a", "Succeeded")
    body["status"]["finishedAt"] = format_time(datetime.now(UTC) - timedelta(seconds=5))
    body["status"]["workflow"]["ttlSecondsAfterFinished"] = 1
    supervisor.on_run("ADDED", body)
    for _ in range(10):
        await asyncio.sleep(0)
    assert kube.deleted == [("ns", "a")]
    await supervisor.stop()
