"""The simulated kubelet and Job controller: Jobs run as local processes and report back the
way a cluster reports (pod states, termination message, Job conditions and counters)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
from kubernetes.client.rest import ApiException
from tests.support.apiserver import ApiServer
from tests.support.kubelet import JOB_TRACKING, Kubelet

Obj = dict[str, Any]
PY = sys.executable


def job_manifest(
    name: str,
    command: list[str],
    *,
    deadline: int | None = None,
    backoff: int = 0,
    env: list[Obj] | None = None,
    **pod: Any,
) -> Obj:
    """A Job like the operator builds: one container, outputs via the termination message."""
    container: Obj = {
        "name": "task",
        "image": "python:3.12-slim",
        "command": command,
        "env": [{"name": "KOPFLOW_OUTPUTS", "value": "/dev/termination-log"}, *(env or [])],
    }
    spec: Obj = {
        "backoffLimit": backoff,
        "template": {
            "metadata": {"labels": {"kopflow.dev/task": name}},
            "spec": {"restartPolicy": "Never", "containers": [container], **pod},
        },
    }
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def condition(job: Obj | None, kind: str) -> Obj | None:
    for c in ((job or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == kind and c["status"] == "True":
            return c
    return None


def finished(job: Obj | None) -> bool:
    return condition(job, "Complete") is not None or condition(job, "Failed") is not None


def only_pod(apiserver: ApiServer, namespace: str, job: str) -> Obj:
    pods = [
        p
        for p in apiserver.list("pods", namespace)
        if p["metadata"]["labels"].get("job-name") == job
    ]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def terminated(pod: Obj) -> Obj:
    return pod["status"]["containerStatuses"][0]["state"]["terminated"]


@pytest.fixture
def batch(api_client: kubernetes.client.ApiClient) -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(api_client)


@pytest.fixture
def core(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client)


@pytest.fixture
def run(apiserver: ApiServer, kubelet: Kubelet, batch: Any, namespace: str) -> Callable[..., Obj]:
    """Create a Job in the test namespace and return it once Complete or Failed."""

    def run_job(manifest: Obj, timeout: float = 15) -> Obj:
        batch.create_namespaced_job(namespace, manifest)
        job = apiserver.wait_for(
            "jobs.batch", namespace, manifest["metadata"]["name"], finished, timeout
        )
        assert job is not None
        return job

    return run_job


def test_succeeding_job_reports_outputs_and_completes(
    run: Callable[..., Obj], apiserver: ApiServer, batch: Any, namespace: str
) -> None:
    script = "import os; open(os.environ['KOPFLOW_OUTPUTS'], 'w').write('rows=42\\nstatus=ok\\n')"
    job = run(job_manifest("extract", [PY, "-c", script]))

    status = job["status"]
    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert condition(job, "Complete")["reason"] == "CompletionsReached"
    assert status["succeeded"] == 1 and "failed" not in status and "active" not in status
    assert status["startTime"] <= status["completionTime"]
    pod = only_pod(apiserver, namespace, "extract")
    meta = pod["metadata"]
    assert meta["name"].startswith("extract-")
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": "extract",
            "uid": job["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    uid = job["metadata"]["uid"]
    assert {
        k: meta["labels"][k]
        for k in (
            "job-name",
            "batch.kubernetes.io/job-name",
            "controller-uid",
            "batch.kubernetes.io/controller-uid",
            "kopflow.dev/task",
        )
    } == {
        "job-name": "extract",
        "batch.kubernetes.io/job-name": "extract",
        "controller-uid": uid,
        "batch.kubernetes.io/controller-uid": uid,
        "kopflow.dev/task": "extract",
    }
    assert JOB_TRACKING not in (meta.get("finalizers") or [])  # counted, then released
    assert pod["status"]["phase"] == "Succeeded"
    state = terminated(pod)
    assert (state["exitCode"], state["reason"], state["message"]) == (
        0,
        "Completed",
        "rows=42\nstatus=ok\n",
    )
    assert state["startedAt"] <= state["finishedAt"]


def test_failing_job_exceeds_backoff_limit(
    run: Callable[..., Obj], apiserver: ApiServer, namespace: str
) -> None:
    script = (
        "import os, sys; open(os.environ['KOPFLOW_OUTPUTS'], 'w').write('why=boom'); sys.exit(3)"
    )
    job = run(job_manifest("fails", [PY, "-c", script]))

    assert [c["type"] for c in job["status"]["conditions"]] == ["FailureTarget", "Failed"]
    failed = condition(job, "Failed")
    assert (failed["reason"], failed["message"]) == (
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )
    assert job["status"]["failed"] == 1 and "completionTime" not in job["status"]
    pod = only_pod(apiserver, namespace, "fails")
    assert pod["status"]["phase"] == "Failed"
    assert (terminated(pod)["exitCode"], terminated(pod)["reason"], terminated(pod)["message"]) == (
        3,
        "Error",
        "why=boom",
    )


def test_backoff_limit_one_retries_with_a_new_pod(
    run: Callable[..., Obj], apiserver: ApiServer, namespace: str
) -> None:
    job = run(
        job_manifest("retry", [PY, "-c", "raise SystemExit(1)"], backoff=1),
    )

    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 2
    pods = apiserver.list("pods", namespace)
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)


def test_active_deadline_kills_the_process(
    run: Callable[..., Obj], apiserver: ApiServer, kubelet: Kubelet, namespace: str
) -> None:
    job = run(
        job_manifest("slow", [PY, "-c", "import time; time.sleep(60)"], deadline=1),
        timeout=10,
    )

    failed = condition(job, "Failed")
    assert (failed["reason"], failed["message"]) == (
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    )
    assert condition(job, "FailureTarget")["reason"] == "DeadlineExceeded"
    assert job["status"]["failed"] == 1
    assert kubelet.running() == []
    pods = apiserver.list("pods", namespace)
    assert pods == []  # the controller deleted the active pod, as a cluster's does


def test_sigkill_the_kubelet_did_not_send_reads_as_oom_killed(
    run: Callable[..., Obj], apiserver: ApiServer, namespace: str
) -> None:
    script = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    run(job_manifest("oom", [PY, "-c", script]))

    state = terminated(only_pod(apiserver, namespace, "oom"))
    assert (state["exitCode"], state["reason"]) == (137, "OOMKilled")


def test_env_values_references_and_expansion(
    run: Callable[..., Obj], apiserver: ApiServer, core: Any, namespace: str
) -> None:
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"level": "debug"}}
    )
    env = [
        {"name": "GREETING", "value": "hello"},
        {"name": "SENTENCE", "value": "$(GREETING) world $$(GREETING)"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
        {
            "name": "TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "missing", "key": "token", "optional": True}},
        },
    ]
    script = (
        "import os; keys = ['SENTENCE', 'POD', 'LEVEL', 'TOKEN', 'FROM_CM_level'];"
        "open(os.environ['KOPFLOW_OUTPUTS'], 'w').write(repr([os.environ.get(k) for k in keys]))"
    )
    manifest = job_manifest("env", [PY, "-c", script], env=env)
    manifest["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [
        {"configMapRef": {"name": "settings"}, "prefix": "FROM_CM_"},
        {"secretRef": {"name": "missing", "optional": True}},
    ]
    run(manifest)

    pod = only_pod(apiserver, namespace, "env")
    assert terminated(pod)["message"] == repr(
        ["hello world $(GREETING)", pod["metadata"]["name"], "debug", None, "debug"]
    )


def test_missing_secret_holds_the_container_until_it_exists(
    run: Callable[..., Obj], apiserver: ApiServer, batch: Any, core: Any, namespace: str
) -> None:
    script = "import os; open(os.environ['KOPFLOW_OUTPUTS'], 'w').write(os.environ['PASSWORD'])"
    env = [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "late", "key": "pw"}}}]
    batch.create_namespaced_job(namespace, job_manifest("wait", [PY, "-c", script], env=env))

    def waiting(pod: Obj | None) -> bool:
        statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or [{}]
        return "waiting" in (statuses[0].get("state") or {})

    apiserver.wait_for(
        "jobs.batch", namespace, "wait", lambda j: ((j or {}).get("status") or {}).get("active"), 5
    )
    name = only_pod(apiserver, namespace, "wait")["metadata"]["name"]
    pod = apiserver.wait_for("pods", namespace, name, waiting, 5)
    assert pod is not None and pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"] == {
        "reason": "CreateContainerConfigError",
        "message": 'secret "late" not found',
    }

    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "late"}, "stringData": {"pw": "hunter2"}}
    )
    job = apiserver.wait_for("jobs.batch", namespace, "wait", finished, 15)

    assert condition(job, "Complete") is not None
    assert terminated(only_pod(apiserver, namespace, "wait"))["message"] == "hunter2"


def test_termination_message_is_capped_at_4096_bytes(
    run: Callable[..., Obj], apiserver: ApiServer, namespace: str
) -> None:
    script = "import os; open(os.environ['KOPFLOW_OUTPUTS'], 'w').write('x' * 10000)"
    run(job_manifest("big", [PY, "-c", script]))

    assert terminated(only_pod(apiserver, namespace, "big"))["message"] == "x" * 4096


def test_missing_executable_is_a_start_error(
    run: Callable[..., Obj], apiserver: ApiServer, namespace: str
) -> None:
    job = run(job_manifest("nocmd", ["/nonexistent/kopflow-binary"]))

    assert condition(job, "Failed") is not None
    state = terminated(only_pod(apiserver, namespace, "nocmd"))
    assert (state["exitCode"], state["reason"]) == (128, "StartError")


def test_pod_log_is_served(
    run: Callable[..., Obj], apiserver: ApiServer, core: Any, namespace: str
) -> None:
    run(
        job_manifest("talk", [PY, "-c", "print('line one'); print('line two')"]),
    )

    name = only_pod(apiserver, namespace, "talk")["metadata"]["name"]
    assert core.read_namespaced_pod_log(name, namespace) == "line one\nline two\n"


def wait_running(apiserver: ApiServer, namespace: str, job: str) -> Obj:
    def running(j: Obj | None) -> bool:
        return bool(j) and (j.get("status") or {}).get("ready") == 1

    apiserver.wait_for("jobs.batch", namespace, job, running)
    return only_pod(apiserver, namespace, job)


def gone(obj: Obj | None) -> bool:
    return obj is None


@pytest.mark.parametrize("policy", ["Background", "Foreground"])
def test_deleting_a_job_stops_its_process(
    apiserver: ApiServer, kubelet: Kubelet, batch: Any, namespace: str, policy: str
) -> None:
    batch.create_namespaced_job(
        namespace, job_manifest("long", [PY, "-c", "import time; time.sleep(60)"])
    )
    pod = wait_running(apiserver, namespace, "long")
    assert kubelet.running() == [(namespace, pod["metadata"]["name"])]

    batch.delete_namespaced_job("long", namespace, propagation_policy=policy)

    apiserver.wait_for("pods", namespace, pod["metadata"]["name"], gone)
    apiserver.wait_for("jobs.batch", namespace, "long", gone)
    assert kubelet.running() == []


def test_default_job_deletion_orphans_the_running_pod(
    apiserver: ApiServer, kubelet: Kubelet, batch: Any, namespace: str
) -> None:
    """The API's default for Jobs is Orphan: an operator must ask for Background explicitly."""
    batch.create_namespaced_job(
        namespace, job_manifest("orphan", [PY, "-c", "import time; time.sleep(60)"])
    )
    pod = wait_running(apiserver, namespace, "orphan")

    batch.delete_namespaced_job("orphan", namespace)

    apiserver.wait_for("jobs.batch", namespace, "orphan", gone)
    name = pod["metadata"]["name"]
    left = apiserver.wait_for(
        "pods", namespace, name, lambda p: bool(p) and not p["metadata"].get("ownerReferences")
    )
    assert left is not None and left["status"]["phase"] == "Running"
    assert kubelet.running() == [(namespace, name)]


def test_start_delay_holds_pods_pending(
    apiserver: ApiServer, kubelet: Kubelet, batch: Any, namespace: str
) -> None:
    kubelet.start_delay = 0.5
    batch.create_namespaced_job(namespace, job_manifest("later", [PY, "-c", "pass"]))
    job = apiserver.wait_for(
        "jobs.batch", namespace, "later", lambda j: (j or {}).get("status", {}).get("active") == 1
    )
    assert job is not None
    pod = only_pod(apiserver, namespace, "later")
    assert pod["status"]["phase"] == "Pending" and pod["spec"]["nodeName"] == kubelet.node_name
    assert apiserver.wait_for("jobs.batch", namespace, "later", finished) is not None
    assert condition(apiserver.get("jobs.batch", namespace, "later"), "Complete")


def test_eviction_fails_the_pod_and_the_job(
    apiserver: ApiServer, kubelet: Kubelet, batch: Any, namespace: str
) -> None:
    batch.create_namespaced_job(
        namespace, job_manifest("evicted", [PY, "-c", "import time; time.sleep(60)"])
    )
    pod = wait_running(apiserver, namespace, "evicted")

    kubelet.evict(namespace, pod["metadata"]["name"])

    job = apiserver.wait_for("jobs.batch", namespace, "evicted", finished)
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    pod = only_pod(apiserver, namespace, "evicted")
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "Evicted")
    assert kubelet.running() == []


def test_lost_node_deletes_the_pod_and_fails_the_job(
    apiserver: ApiServer, kubelet: Kubelet, batch: Any, namespace: str
) -> None:
    batch.create_namespaced_job(
        namespace, job_manifest("lost", [PY, "-c", "import time; time.sleep(60)"])
    )
    pod = wait_running(apiserver, namespace, "lost")

    kubelet.lose_node_of(namespace, pod["metadata"]["name"])

    apiserver.wait_for("pods", namespace, pod["metadata"]["name"], gone)
    job = apiserver.wait_for("jobs.batch", namespace, "lost", finished)
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 1
    assert kubelet.running() == []


def test_missing_service_account_leaves_the_job_without_pods(
    apiserver: ApiServer, kubelet: Kubelet, batch: Any, core: Any, namespace: str
) -> None:
    batch.create_namespaced_job(
        namespace, job_manifest("nosa", [PY, "-c", "pass"], serviceAccountName="ghost")
    )

    def failed_create(store: Any) -> list[Obj]:
        events = store.iter_objects(store.storage[("", "events")], namespace)
        return [e for e in events if e["reason"] == "FailedCreate"]

    events = apiserver.wait_until(failed_create)
    assert 'serviceaccount "ghost" not found' in events[0]["message"]
    assert events[0]["involvedObject"]["name"] == "nosa"
    assert core.list_namespaced_pod(namespace).items == []
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": "p"},
                "spec": {
                    "serviceAccountName": "ghost",
                    "containers": [{"name": "c", "image": "busybox"}],
                },
            },
        )
    assert err.value.status == 403


def test_stop_kills_every_process(apiserver: ApiServer, batch: Any, namespace: str) -> None:
    node = Kubelet(apiserver).start()
    try:
        batch.create_namespaced_job(
            namespace, job_manifest("one", [PY, "-c", "import time; time.sleep(60)"])
        )
        wait_running(apiserver, namespace, "one")
        pids = node.pids()
        assert len(pids) == 1
    finally:
        node.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


def test_pod_active_deadline_fails_a_bare_pod(
    apiserver: ApiServer, kubelet: Kubelet, core: Any, namespace: str
) -> None:
    container = {
        "name": "c",
        "image": "python",
        "command": [PY, "-c", "import time; time.sleep(60)"],
    }
    spec = {"restartPolicy": "Never", "activeDeadlineSeconds": 1, "containers": [container]}
    core.create_namespaced_pod(namespace, {"metadata": {"name": "bare"}, "spec": spec})

    pod = apiserver.wait_for(
        "pods", namespace, "bare", lambda p: _phase_of(p) == "Failed", timeout=10
    )
    assert pod is not None and pod["status"]["reason"] == "DeadlineExceeded"
    assert terminated(pod)["exitCode"] == 137 and kubelet.running() == []


def test_on_failure_restarts_the_container_in_place(
    apiserver: ApiServer, kubelet: Kubelet, core: Any, namespace: str, tmp_path: Any
) -> None:
    marker = tmp_path / "tried"
    script = (
        f"import os, sys; p = {str(marker)!r}; first = not os.path.exists(p); "
        "open(p, 'w').close(); sys.exit(1 if first else 0)"
    )
    container = {"name": "c", "image": "python", "command": [PY, "-c", script]}
    spec = {"restartPolicy": "OnFailure", "containers": [container]}
    core.create_namespaced_pod(namespace, {"metadata": {"name": "again"}, "spec": spec})

    pod = apiserver.wait_for("pods", namespace, "again", lambda p: _phase_of(p) == "Succeeded")
    assert pod is not None
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1


def _phase_of(pod: Obj | None) -> str | None:
    return None if pod is None else (pod.get("status") or {}).get("phase")


def test_ttl_after_finished_deletes_the_job_and_its_pod(
    apiserver: ApiServer, run: Callable[..., Obj], namespace: str
) -> None:
    manifest = job_manifest("short-lived", [PY, "-c", "pass"])
    manifest["spec"]["ttlSecondsAfterFinished"] = 1
    assert condition(run(manifest), "Complete") is not None

    apiserver.wait_for("jobs.batch", namespace, "short-lived", lambda j: j is None)

    def no_pods(store: Any) -> bool:
        return not any(True for _ in store.iter_objects(store.storage[("", "pods")], namespace))

    assert apiserver.wait_until(no_pods)


def test_volumes_are_folders_and_mount_paths_reach_them(
    run: Callable[..., Obj], apiserver: ApiServer, batch: Any, core: Any, namespace: str
) -> None:
    """Secret, ConfigMap and PVC volumes as local folders; an argument or env value starting
    with a mount path is rewritten into its folder; a PVC outlives the pod; a missing Secret
    of a volume holds the container (ContainerCreating) until it exists."""
    volumes = [
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "conf", "configMap": {"name": "conf", "items": [{"key": "a", "path": "x/a"}]}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "shared"}},
    ]
    mounts = [
        {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
        {"name": "conf", "mountPath": "/etc/conf"},
        {"name": "data", "mountPath": "/data"},
    ]
    write = (
        "import os, sys; token = open(sys.argv[1]).read(); conf = open(sys.argv[2]).read(); "
        "open(os.environ['OUT'] + '/r.txt', 'w').write(token + conf)"
    )
    manifest = job_manifest(
        "write",
        [PY, "-c", write, "/etc/creds/token", "/etc/conf/x/a"],
        env=[{"name": "OUT", "value": "/data"}],
        volumes=volumes,
    )
    manifest["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = mounts
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "conf"}, "data": {"a": "!"}})
    batch.create_namespaced_job(namespace, manifest)

    def creating(pod: Obj | None) -> bool:
        statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or [{}]
        return (statuses[0].get("state") or {}).get("waiting") == {"reason": "ContainerCreating"}

    apiserver.wait_for(
        "jobs.batch", namespace, "write", lambda j: ((j or {}).get("status") or {}).get("active"), 5
    )
    name = only_pod(apiserver, namespace, "write")["metadata"]["name"]
    assert apiserver.wait_for("pods", namespace, name, creating, 5) is not None
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}}
    )
    job = apiserver.wait_for("jobs.batch", namespace, "write", finished, 15)
    assert condition(job, "Complete") is not None, terminated(
        only_pod(apiserver, namespace, "write")
    )

    read = (  # a path built in code: $KOPFLOW_MOUNTS maps it
        "import os, json; folder = json.loads(os.environ['KOPFLOW_MOUNTS'])['/data']; "
        "open(os.environ['KOPFLOW_OUTPUTS'], 'w').write(open(folder + '/r.txt').read())"
    )
    reader = job_manifest("read", [PY, "-c", read], volumes=volumes[2:])
    reader["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = mounts[2:]
    done = run(reader)
    assert condition(done, "Complete") is not None
    assert terminated(only_pod(apiserver, namespace, "read"))["message"] == "s3cret!"


def test_privileged_without_escalation_is_refused_like_the_real_server(
    batch: Any, namespace: str
) -> None:
    """The real server's rule (tests/integration/real/test_crds_real.py checks it there)."""
    manifest = job_manifest("priv", [PY, "-c", "pass"])
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"] = {"privileged": True, "allowPrivilegeEscalation": False}
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job(namespace, manifest)
    assert err.value.status == 422
    (cause,) = json.loads(err.value.body)["details"]["causes"]
    assert cause["field"] == "spec.template.spec.containers[0].securityContext"
    assert (
        "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"
        in (cause["message"])
    )
