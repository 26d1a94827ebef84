"""The operator's in-memory Job/Pod index: routing events to runs, never keeping stale pods."""

from __future__ import annotations

from typing import Any

from kopflow.controller.index import AttemptIndex


def job(name: str, run: str, *conditions: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "ownerReferences": [{"kind": "WorkflowRun", "name": run}],
        },
        "status": {"conditions": [{"type": c, "status": "True"} for c in conditions]},
    }


def pod(
    job_name: str, rv: str, state: dict[str, Any], created: str, uid: str = "p1"
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": f"{job_name}-x",
            "uid": uid,
            "resourceVersion": rv,
            "creationTimestamp": created,
            "labels": {"batch.kubernetes.io/job-name": job_name},
        },
        "status": {"containerStatuses": [{"name": "main", "state": state}]},
    }


DONE = {"terminated": {"exitCode": 0, "message": "rows=3\n"}}


def test_events_name_the_owning_run() -> None:
    index = AttemptIndex()
    assert index.on_pod("ADDED", pod("r-a-1", "1", {"running": {}}, "2026-11-28T08:00:00Z")) is None
    assert index.on_job("ADDED", job("r-a-1", "r")) == ("ns", "r")
    assert index.on_pod("MODIFIED", pod("r-a-1", "2", DONE, "2026-11-28T08:00:00Z")) == ("ns", "r")
    assert index.observe("ns", "r-a-1").outputs == "rows=3\n"


def test_a_fetched_pod_replaces_a_stale_watch_copy_whatever_its_time_format() -> None:
    index = AttemptIndex()
    index.on_job("ADDED", job("r-a-1", "r", "Complete"))
    index.on_pod("ADDED", pod("r-a-1", "5", {"running": {}}, "2026-11-28T08:00:00Z"))
    assert index.needs_pod("ns", "r-a-1")  # the Job says done, the pod copy says running
    index.on_pod("ADDED", pod("r-a-1", "9", DONE, "2026-11-28T08:00:00+00:00"))
    assert not index.needs_pod("ns", "r-a-1")
    assert index.observe("ns", "r-a-1").outputs == "rows=3\n"
    # an older version arriving late never wins
    index.on_pod("MODIFIED", pod("r-a-1", "7", {"running": {}}, "2026-11-28T08:00:00Z"))
    assert index.observe("ns", "r-a-1").state == "succeeded"


def test_relist_replaces_only_its_namespace_and_deleted_runs_are_forgotten() -> None:
    index = AttemptIndex()
    index.on_job("ADDED", job("r-a-1", "r"))
    other = job("q-a-1", "q")
    other["metadata"]["namespace"] = "other"
    index.on_job("ADDED", other)
    assert index.relist_jobs("ns", []) == [("ns", "r")]  # its Job vanished: wake it
    assert ("other", "q-a-1") in index.jobs and ("ns", "r-a-1") not in index.jobs
    index.forget_run("other", "q")
    assert index.jobs == {}


def test_a_job_of_the_same_name_owned_by_another_run_is_not_this_attempt() -> None:
    index = AttemptIndex()
    theirs = job("a-b-c-1", "a", "Complete")
    theirs["metadata"]["ownerReferences"][0]["uid"] = "uid-of-run-a"
    index.on_job("ADDED", theirs)
    index.on_pod("ADDED", pod("a-b-c-1", "3", DONE, "2026-11-28T08:00:00Z"))
    assert index.observe("ns", "a-b-c-1", "uid-of-run-a-b").state == "missing"
    assert index.observe("ns", "a-b-c-1", "uid-of-run-a").outputs == "rows=3\n"


def test_only_events_that_change_what_the_run_sees_wake_it() -> None:
    """A Job and its Pod send a dozen events per attempt; each wake is a whole reconcile of
    the run, so the ones that change nothing the engine reads are not passed on."""
    index = AttemptIndex()
    created = "2026-11-28T08:00:00Z"
    j = job("r-a-1", "r")
    assert index.on_job("ADDED", j) == ("ns", "r")  # missing -> running
    j["status"] = {"startTime": "2026-11-28T08:00:01Z", "active": 1}
    assert index.on_job("MODIFIED", j) == ("ns", "r")  # the Job controller synced it
    j["status"] = {**j["status"], "ready": 0, "terminating": 0}
    assert index.on_job("MODIFIED", j) is None
    waiting = {"waiting": {"reason": "ContainerCreating"}}
    assert index.on_pod("ADDED", pod("r-a-1", "1", waiting, created)) == ("ns", "r")
    running = {"running": {"startedAt": "2026-11-28T08:00:02Z"}}
    assert index.on_pod("MODIFIED", pod("r-a-1", "2", running, created)) == ("ns", "r")
    assert index.on_pod("MODIFIED", pod("r-a-1", "3", running, created)) is None  # Ready
    j["status"] = {**j["status"], "ready": 1}
    assert index.on_job("MODIFIED", j) is None
    assert index.on_pod("MODIFIED", pod("r-a-1", "4", DONE, created)) == ("ns", "r")
    assert index.on_pod("MODIFIED", pod("r-a-1", "5", DONE, created)) is None  # finalizer off
    j["status"] = {**j["status"], "conditions": [{"type": "Complete", "status": "True"}]}
    assert index.on_job("MODIFIED", j) is None  # the exit code was known already
    assert index.observe("ns", "r-a-1").outputs == "rows=3\n"
    assert index.on_job("DELETED", j) == ("ns", "r")


def test_a_finished_job_whose_pod_is_behind_wakes_the_run_and_so_does_the_pod() -> None:
    index = AttemptIndex()
    created = "2026-11-28T08:00:00Z"
    index.on_job("ADDED", job("r-a-1", "r"))
    index.on_pod("ADDED", pod("r-a-1", "1", {"running": {}}, created))
    # the Job's Complete arrives before the Pod's final state: the worker must start the
    # grace period (and read the Pod after it), so this one wakes it
    assert index.on_job("MODIFIED", job("r-a-1", "r", "Complete")) == ("ns", "r")
    assert index.needs_pod("ns", "r-a-1")
    assert index.on_pod("MODIFIED", pod("r-a-1", "2", DONE, created)) == ("ns", "r")
    assert not index.needs_pod("ns", "r-a-1")
