"""Attempts the cluster refuses or never starts: they end as visible failures, never wedge."""

from __future__ import annotations

from tests.unit.engine.builders import T0, at, decide, spec, task

from kopflow.api.run import WorkflowRunStatus
from kopflow.api.workflow import WorkflowSpec
from kopflow.engine import Observation
from kopflow.engine.decisions import Decision


def _next(s: WorkflowSpec, before: Decision, seen: Observation, seconds: float) -> Decision:
    status: WorkflowRunStatus = before.status
    job = (status.tasks or {})["t"].job_name or ""
    return decide(s, {job: seen}, now=at(seconds), status=status)


def test_a_pod_that_never_starts_fails_after_the_default_pod_pending_timeout() -> None:
    s = spec(task("t"))
    first = decide(s)
    job = first.launches[0].job_name
    waiting = Observation(
        "running", reason="Unschedulable", message="0/3 nodes are available", pending=True
    )
    early = _next(s, first, waiting, 599)
    assert (early.status.tasks or {})["t"].phase == "Running"
    assert early.requeue_at == at(600)  # woken when the pending time runs out
    late = _next(s, first, waiting, 600)
    t = (late.status.tasks or {})["t"]
    assert (t.phase, t.reason) == ("Failed", "Unschedulable")
    assert "podPendingTimeoutSeconds=600" in (t.message or "")
    assert "0/3 nodes are available" in (t.message or "")
    assert [(s.job_name, s.reason) for s in late.stops] == [(job, "PodPending")]
    assert late.status.phase == "Failed"


def test_pod_pending_timeout_is_set_per_task_or_in_task_defaults_and_retried() -> None:
    s = spec(
        task("t", podPendingTimeoutSeconds=5, retry={"limit": 1}),
        taskDefaults={"image": "busybox", "podPendingTimeoutSeconds": 60},
    )
    first = decide(s)
    seen = Observation(
        "running", reason="CreateContainerConfigError", message='no secret "db"', pending=True
    )
    assert (_next(s, first, seen, 4).status.tasks or {})["t"].phase == "Running"
    later = _next(s, first, seen, 5)
    t = (later.status.tasks or {})["t"]
    assert (t.phase, t.reason) == ("Retrying", "CreateContainerConfigError")
    d = spec(task("t"), taskDefaults={"image": "busybox", "podPendingTimeoutSeconds": 60})
    assert decide(d, {}, now=T0).requeue_at is not None
    assert _next(d, decide(d), seen, 59).status.tasks["t"].phase == "Running"  # type: ignore[index]
    assert _next(d, decide(d), seen, 60).status.tasks["t"].phase == "Failed"  # type: ignore[index]


def test_a_started_pod_is_not_subject_to_the_pending_timeout() -> None:
    s = spec(task("t", podPendingTimeoutSeconds=5))
    running = _next(s, decide(s), Observation("running"), 3600)
    assert (running.status.tasks or {})["t"].phase == "Running"


def test_a_refused_job_fails_the_attempt_and_a_permanent_refusal_is_not_retried() -> None:
    s = spec(task("t", retry={"limit": 3}))
    first = decide(s)
    refused = Observation(
        "failed", reason="JobRejected", message="Job.batch is invalid: cpu", permanent=True
    )
    after = _next(s, first, refused, 1)
    t = (after.status.tasks or {})["t"]
    assert (t.phase, t.reason) == ("Failed", "JobRejected")
    assert "Job.batch is invalid: cpu" in (t.message or "")
    assert [e.reason for e in after.events] == ["TaskFailed", "RunFailing", "RunFailed"]
    quota = Observation("failed", reason="JobRejected", message="exceeded quota")
    retried = (_next(s, first, quota, 1).status.tasks or {})["t"]
    assert (retried.phase, retried.reason) == ("Retrying", "JobRejected")


def test_a_retry_keeps_the_job_of_an_attempt_that_exited_for_its_logs() -> None:
    s = spec(task("t", retry={"limit": 1, "backoff": {"seconds": 1}}))
    first = decide(s)
    failed = _next(s, first, Observation("failed", reason="Error", exit_code=3), 40)
    second = decide(s, {}, now=at(41), status=failed.status)
    (launch,) = second.launches
    assert (launch.attempt, launch.replaces) == (2, None)


def test_a_retry_replaces_the_previous_attempts_job() -> None:
    s = spec(task("t", retry={"limit": 1, "backoff": {"seconds": 1}}))
    first = decide(s)
    assert first.launches[0].replaces is None
    lost = _next(s, first, Observation("lost", reason="Lost"), 40)
    second = decide(s, {}, now=at(41), status=lost.status)
    (launch,) = second.launches
    assert (launch.attempt, launch.replaces) == (2, first.launches[0].job_name)
