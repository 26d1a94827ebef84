"""Jobs from Launches and Observations from Jobs/Pods: the operator's two translations."""

from __future__ import annotations

from typing import Any

from kopflow.api.workflow import EnvVar, PodSettings, Script
from kopflow.engine.decisions import Launch
from kopflow.executors.kubernetes import SCRIPT_RUNNER, build_job, observe

RUN = {"metadata": {"name": "etl-x", "namespace": "data", "uid": "u-1"}}


def launch(**over: Any) -> Launch:
    base: dict[str, Any] = {
        "job_name": "etl-x-load-2",
        "task": "load",
        "attempt": 2,
        "image": "python:3.12-slim",
        "command": ("python3", "-m", "load"),
        "args": ("--date", "2026-01-01; rm -rf /"),
        "env": (EnvVar(name="KOPFLOW_RUN", value="etl-x"),),
        "script": None,
        "timeout_seconds": 600,
        "outputs": ("rows",),
        "labels": {
            "kopflow.dev/run": "etl-x",
            "kopflow.dev/task": "load",
            "kopflow.dev/attempt": "2",
        },
        "pod": PodSettings(node_selector={"pool": "batch"}, resources={"limits": {"cpu": "1"}}),
        "service_account_name": "etl-runner",
    }
    return Launch(**{**base, **over})


def test_job_is_owned_labelled_and_safe() -> None:
    job = build_job(launch(), RUN)
    meta, spec = job["metadata"], job["spec"]
    assert meta["name"] == "etl-x-load-2" and meta["namespace"] == "data"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "kopflow.dev/v1alpha1",
            "kind": "WorkflowRun",
            "name": "etl-x",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"]["kopflow.dev/attempt"] == "2"
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 600
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"]["kopflow.dev/task"] == "load"
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "etl-runner"
    assert "automountServiceAccountToken" not in pod
    assert pod["nodeSelector"] == {"pool": "batch"}
    (c,) = pod["containers"]
    assert c["command"] == ["python3", "-m", "load"]
    assert c["args"] == ["--date", "2026-01-01; rm -rf /"]  # one literal argument, no shell
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert {"name": "KOPFLOW_OUTPUTS", "value": "/dev/termination-log"} in c["env"]
    assert c["resources"] == {"limits": {"cpu": "1"}}


def test_no_service_account_means_no_token() -> None:
    pod = build_job(launch(service_account_name=None), RUN)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False


def test_script_source_travels_as_data_not_shell_code() -> None:
    source = "import os\nprint(os.environ['X'])  # $(reboot) `id`"
    job = build_job(
        launch(command=None, script=Script(command=["python3"], source=source), args=("a b",)),
        RUN,
    )
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["sh", "-c", SCRIPT_RUNNER, "kopflow-script", "python3", "a b"]
    assert "args" not in c
    assert {"name": "KOPFLOW_SCRIPT", "value": source} in c["env"]


def pod(state: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {"status": {"containerStatuses": [{"name": "main", "state": state}], **status}}


JOB_RUNNING = {"status": {"startTime": "2026-11-28T08:00:00Z", "active": 1}}


def job_with(cond: str, reason: str | None = None) -> dict[str, Any]:
    c = {"type": cond, "status": "True", "lastTransitionTime": "2026-11-28T08:01:00Z"}
    if reason:
        c["reason"] = reason
    return {"status": {"startTime": "2026-11-28T08:00:00Z", "conditions": [c]}}


def test_terminated_container_decides_before_the_job_condition() -> None:
    term = {
        "terminated": {
            "exitCode": 0,
            "reason": "Completed",
            "message": "rows=5\n",
            "startedAt": "2026-11-28T08:00:01Z",
            "finishedAt": "2026-11-28T08:00:09Z",
        }
    }
    seen = observe(JOB_RUNNING, pod(term))
    assert seen.state == "succeeded" and seen.outputs == "rows=5\n"
    assert seen.finished_at is not None and seen.finished_at.second == 9


def test_failures_timeouts_evictions_and_vanished_pods() -> None:
    oom = pod({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    assert (observe(JOB_RUNNING, oom).state, observe(JOB_RUNNING, oom).reason) == (
        "failed",
        "OOMKilled",
    )
    deadline = observe(job_with("Failed", "DeadlineExceeded"), None)
    assert (deadline.state, deadline.reason) == ("failed", "DeadlineExceeded")
    evicted = observe(JOB_RUNNING, pod({"running": {}}, reason="Evicted", message="disk"))
    assert evicted.state == "lost" and evicted.reason == "Evicted"
    vanished = observe(job_with("Failed", "BackoffLimitExceeded"), None)
    assert vanished.state == "lost"
    assert observe(None, None).state == "missing"
    assert observe(JOB_RUNNING, pod({"running": {}})).state == "running"
    assert observe(job_with("Complete"), None).state == "succeeded"


def test_a_container_that_cannot_start_yet_is_pending_with_the_apis_words() -> None:
    """A missing Secret may appear a second later: pending (podPendingTimeout bounds it)."""
    missing = pod(
        {
            "waiting": {
                "reason": "CreateContainerConfigError",
                "message": 'secret "warehouse" not found',
            }
        }
    )
    seen = observe(JOB_RUNNING, missing)
    assert (seen.state, seen.pending, seen.reason) == (
        "running",
        True,
        "CreateContainerConfigError",
    )
    assert seen.message == 'secret "warehouse" not found'
    pulling = observe(JOB_RUNNING, pod({"waiting": {"reason": "ImagePullBackOff"}}))
    assert (pulling.state, pulling.pending, pulling.reason) == ("running", True, "ImagePullBackOff")
    bad = observe(JOB_RUNNING, pod({"waiting": {"reason": "InvalidImageName"}}))
    assert bad.state == "failed"  # a bad image name never mends itself
    started = observe(JOB_RUNNING, pod({"running": {"startedAt": "2026-11-28T08:00:01Z"}}))
    assert (started.state, started.pending) == ("running", False)


def test_a_pod_that_is_refused_or_unschedulable_is_pending_with_the_reason() -> None:
    nopod = observe(JOB_RUNNING, None)
    assert (nopod.state, nopod.pending, nopod.reason) == ("running", True, "PodNotCreated")
    refused = observe(JOB_RUNNING, None, 'pods "x" is forbidden: violates PodSecurity')
    assert (refused.reason, refused.message) == (
        "FailedCreate",
        'pods "x" is forbidden: violates PodSecurity',
    )
    unschedulable = pod({})
    unschedulable["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available",
            }
        ],
    }
    seen = observe(JOB_RUNNING, unschedulable)
    assert (seen.pending, seen.reason, seen.message) == (
        True,
        "Unschedulable",
        "0/1 nodes are available",
    )


def test_podman_argv_keeps_values_out_of_argv_and_replaces_the_entrypoint() -> None:
    from pathlib import Path

    from kopflow.executors.local import _podman_argv

    lo = launch(env=(EnvVar(name="KOPFLOW_RUN", value="etl-x"),))
    env = {"PATH": "/bin", "KOPFLOW_RUN": "etl-x", "PASSWORD": "s3cret"}
    argv, inner = _podman_argv(
        lo, ["python3", "-m", "load", "--x"], env, {"PATH": "/bin"}, Path("/o/job"), False
    )
    assert "s3cret" not in " ".join(argv)
    assert argv[argv.index("PASSWORD") - 1 : argv.index("PASSWORD") + 1] == ["-e", "PASSWORD"]
    assert argv[argv.index("--entrypoint") + 1] == "python3"
    assert argv[-4:] == ["python:3.12-slim", "-m", "load", "--x"]
    assert inner["KOPFLOW_OUTPUTS"] == "/kopflow/outputs/job"
