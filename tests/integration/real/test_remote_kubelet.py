"""The simulated kubelet on the real control plane: the real scheduler binds Job pods to its
Node, it runs their commands as local processes, and the real Job controller reads the pod
status it writes (phase, container states, exit codes, termination message) to complete or fail
the Job. Deleting a Job, or its activeDeadlineSeconds, kills the process and the pod goes."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from tests.support.control_plane import ControlPlane
from tests.support.remote_kubelet import NOT_READY_TAINT, KubeletProcess, RemoteKubelet

Obj = dict[str, Any]
PY = sys.executable
ROOT = Path(__file__).resolve().parents[3]


def job_manifest(
    name: str, command: list[str], *, deadline: int | None = None, **container: Any
) -> Obj:
    """A Job like the operator builds: one container, no retries, outputs via the message."""
    spec: Obj = {
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": {"team": "data"}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "task",
                        "image": "python:3.12-slim",
                        "command": command,
                        "env": [{"name": "KOPFLOW_OUTPUTS", "value": "/dev/termination-log"}],
                        **container,
                    }
                ],
            },
        },
    }
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


class Cluster:
    """Typed clients for one test namespace, and waits on watches (bounded in time)."""

    def __init__(self, client: kubernetes.client.ApiClient, namespace: str) -> None:
        self.client, self.ns = client, namespace
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)

    def wait(
        self,
        list_fn: Callable[..., Any],
        done: Callable[[dict[str, Obj]], bool],
        timeout: float = 30,
        **selector: str,
    ) -> dict[str, Obj]:
        """List then watch the objects the selector names until `done(objects by name)`."""
        listed = list_fn(self.ns, **selector)
        seen = {
            o["metadata"]["name"]: o for o in self.client.sanitize_for_serialization(listed.items)
        }
        deadline = time.monotonic() + timeout
        rv = listed.metadata.resource_version
        while not done(seen):
            left = deadline - time.monotonic()
            assert left > 0, f"not done after {timeout} s: {json.dumps(seen)[:3000]}"
            w = kubernetes.watch.Watch()
            for event in w.stream(
                list_fn, self.ns, resource_version=rv, timeout_seconds=max(1, int(left)), **selector
            ):
                obj = event["raw_object"]
                rv = obj["metadata"]["resourceVersion"]
                if event["type"] == "DELETED":
                    seen.pop(obj["metadata"]["name"], None)
                else:
                    seen[obj["metadata"]["name"]] = obj
                if done(seen):
                    w.stop()
                    break
        return seen

    def job(self, name: str, done: Callable[[Obj], bool], timeout: float = 30) -> Obj:
        found = self.wait(
            self.batch.list_namespaced_job,
            lambda jobs: name in jobs and done(jobs[name]),
            timeout,
            field_selector=f"metadata.name={name}",
        )
        return found[name]

    def pods(
        self, job: str, done: Callable[[dict[str, Obj]], bool], timeout: float = 30
    ) -> dict[str, Obj]:
        return self.wait(
            self.core.list_namespaced_pod, done, timeout, label_selector=f"job-name={job}"
        )

    def one_pod(self, job: str, done: Callable[[Obj], bool], timeout: float = 30) -> Obj:
        pods = self.pods(job, lambda ps: len(ps) == 1 and done(next(iter(ps.values()))), timeout)
        return next(iter(pods.values()))

    def run(self, manifest: Obj, timeout: float = 30) -> Obj:
        """Create the Job; return it once Complete or Failed."""
        self.batch.create_namespaced_job(self.ns, manifest)
        return self.job(manifest["metadata"]["name"], finished, timeout)


def condition(obj: Obj, kind: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == kind and c["status"] == "True":
            return c
    return None


def finished(job: Obj) -> bool:
    return condition(job, "Complete") is not None or condition(job, "Failed") is not None


def state(pod: Obj) -> Obj:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return statuses[0].get("state") or {}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def cluster(
    remote_kubelet: RemoteKubelet, real_client: kubernetes.client.ApiClient, real_namespace: str
) -> Cluster:
    return Cluster(real_client, real_namespace)


def test_node_is_registered_ready_and_schedulable(
    remote_kubelet: RemoteKubelet, real_client: kubernetes.client.ApiClient
) -> None:
    core = kubernetes.client.CoreV1Api(real_client)
    node = real_client.sanitize_for_serialization(core.read_node(remote_kubelet.node_name))

    assert NOT_READY_TAINT not in [t["key"] for t in node["spec"].get("taints") or []]
    assert not node["spec"].get("unschedulable")
    conditions = {c["type"]: c for c in node["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["reason"] == "KubeletReady"
    assert {conditions[k]["status"] for k in ("MemoryPressure", "DiskPressure", "PIDPressure")} == {
        "False"
    }
    assert node["status"]["allocatable"]["pods"] == "1k"  # the server canonicalizes 1000
    assert node["status"]["allocatable"]["cpu"] == "64"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
    lease = kubernetes.client.CoordinationV1Api(real_client).read_namespaced_lease(
        remote_kubelet.node_name, "kube-node-lease"
    )
    assert lease.spec.holder_identity == remote_kubelet.node_name


def test_job_runs_and_completes_with_the_termination_message(
    cluster: Cluster, remote_kubelet: RemoteKubelet, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    script = (
        "import os, pathlib, time\n"
        f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.01)\n"
        "print('hello from', os.environ['HOSTNAME'])\n"
        "open(os.environ['KOPFLOW_OUTPUTS'], 'w').write('rows=42\\n')\n"
    )
    cluster.batch.create_namespaced_job(
        cluster.ns, job_manifest("extract", ["python3", "-c", script])
    )

    pod = cluster.one_pod("extract", lambda p: "running" in state(p))
    status = pod["status"]
    assert pod["spec"]["nodeName"] == remote_kubelet.node_name
    assert status["phase"] == "Running"
    assert status["podIP"] == "127.0.0.1" and status["hostIP"] == "127.0.0.1"
    assert status["startTime"]
    assert {c["type"] for c in status["conditions"] if c["status"] == "True"} >= {
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "Ready",
    }
    running = status["containerStatuses"][0]
    assert running["state"]["running"]["startedAt"]
    assert running["ready"] is True and running["started"] is True
    assert running["restartCount"] == 0
    assert running["image"] == "python:3.12-slim"
    assert running["imageID"] and running["containerID"]

    go.touch()
    job = cluster.job("extract", finished)

    assert condition(job, "Complete") is not None, job["status"]
    assert job["status"]["succeeded"] == 1
    pod = cluster.one_pod("extract", lambda p: p["status"]["phase"] == "Succeeded")
    done = state(pod)["terminated"]
    assert done["exitCode"] == 0
    assert done["reason"] == "Completed"
    assert done["message"] == "rows=42\n"
    assert done["startedAt"] <= done["finishedAt"]
    name = pod["metadata"]["name"]
    assert remote_kubelet.logs(cluster.ns, name) == f"hello from {name}\n"

    cluster.batch.delete_namespaced_job("extract", cluster.ns, propagation_policy="Background")
    cluster.pods("extract", lambda pods: not pods)  # the kubelet confirmed the GC's deletion


def test_failing_command_fails_the_job_with_its_exit_code(cluster: Cluster) -> None:
    script = "import sys; print('boom: no such table', file=sys.stderr); sys.exit(3)"
    job = cluster.run(
        job_manifest("load", [PY, "-c", script], terminationMessagePolicy="FallbackToLogsOnError")
    )

    failed = condition(job, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 1
    pod = cluster.one_pod("load", lambda p: p["status"]["phase"] == "Failed")
    done = state(pod)["terminated"]
    assert done["exitCode"] == 3
    assert done["reason"] == "Error"
    assert done["message"] == "boom: no such table\n"  # the log's tail: the file stayed empty


def test_env_from_secrets_configmaps_and_the_downward_api_reaches_the_process(
    cluster: Cluster,
) -> None:
    cluster.core.create_namespaced_secret(
        cluster.ns, {"metadata": {"name": "creds"}, "stringData": {"user": "alice", "token": "s3"}}
    )
    cluster.core.create_namespaced_config_map(
        cluster.ns, {"metadata": {"name": "settings"}, "data": {"mode": "fast"}}
    )
    names = ["DB_user", "DB_token", "TOKEN", "MODE", "POD", "NS", "UID", "TEAM", "GREETING"]
    script = (
        "import json, os\n"
        "open(os.environ['KOPFLOW_OUTPUTS'], 'w').write("
        f"json.dumps({{k: os.environ.get(k) for k in {names!r}}}))\n"
    )

    def ref(kind: str, name: str, key: str) -> Obj:
        return {"valueFrom": {kind: {"name": name, "key": key}}}

    def field(path: str) -> Obj:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    env = [
        {"name": "KOPFLOW_OUTPUTS", "value": "/dev/termination-log"},
        {"name": "TOKEN", **ref("secretKeyRef", "creds", "token")},
        {"name": "MODE", **ref("configMapKeyRef", "settings", "mode")},
        {"name": "POD", **field("metadata.name")},
        {"name": "NS", **field("metadata.namespace")},
        {"name": "UID", **field("metadata.uid")},
        {"name": "TEAM", **field("metadata.labels['team']")},
        {"name": "GREETING", "value": "hi $(DB_user), $$(TOKEN) stays"},
    ]
    manifest = job_manifest(
        "env",
        [PY, "-c", script],
        env=env,
        envFrom=[{"prefix": "DB_", "secretRef": {"name": "creds"}}],
    )
    job = cluster.run(manifest)

    assert condition(job, "Complete") is not None, job["status"]
    pod = cluster.one_pod("env", lambda p: "terminated" in state(p))
    seen = json.loads(state(pod)["terminated"]["message"])
    assert seen == {
        "DB_user": "alice",
        "DB_token": "s3",
        "TOKEN": "s3",
        "MODE": "fast",
        "POD": pod["metadata"]["name"],
        "NS": cluster.ns,
        "UID": pod["metadata"]["uid"],
        "TEAM": "data",
        "GREETING": "hi alice, $(TOKEN) stays",
    }


def test_missing_secret_holds_the_container_until_it_exists(cluster: Cluster) -> None:
    script = "import os; open(os.environ['KOPFLOW_OUTPUTS'], 'w').write(os.environ['PASSWORD'])"
    env = [
        {"name": "KOPFLOW_OUTPUTS", "value": "/dev/termination-log"},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "late", "key": "password"}}},
    ]
    cluster.batch.create_namespaced_job(
        cluster.ns, job_manifest("wait", [PY, "-c", script], env=env)
    )

    # volumes come first: the ServiceAccount's kube-api-access volume reads the namespace's
    # kube-root-ca.crt ConfigMap, and until the controller has published it the container
    # waits ContainerCreating (as on a real node); then the env's missing Secret shows
    def config_error(p: dict[str, Any]) -> bool:
        return (state(p).get("waiting") or {}).get("reason") == "CreateContainerConfigError"

    pod = cluster.one_pod("wait", config_error)
    assert pod["status"]["phase"] == "Pending"
    assert state(pod)["waiting"] == {
        "reason": "CreateContainerConfigError",
        "message": 'secret "late" not found',
    }
    ready = {c["type"]: c for c in pod["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"

    cluster.core.create_namespaced_secret(
        cluster.ns, {"metadata": {"name": "late"}, "stringData": {"password": "hunter2"}}
    )
    job = cluster.job("wait", finished)

    assert condition(job, "Complete") is not None, job["status"]
    pod = cluster.one_pod("wait", lambda p: "terminated" in state(p))
    assert state(pod)["terminated"]["message"] == "hunter2"


SLEEPER = (
    "import signal, sys\n"
    "def stop(*_):\n"
    "    print('got SIGTERM', flush=True)\n"
    "    sys.exit(143)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "print('sleeping', flush=True)\n"
    "while True: signal.pause()\n"
)


def running_pid(cluster: Cluster, kubelet: RemoteKubelet, job: str) -> tuple[str, int]:
    """The pod of the Job once its process runs (and has said so), and the process id."""
    pod = cluster.one_pod(job, lambda p: "running" in state(p))
    name = pod["metadata"]["name"]
    pid = kubelet.pid(cluster.ns, name)
    assert pid is not None and pid in kubelet.pids()
    deadline = time.monotonic() + 10
    while "sleeping" not in (kubelet.logs(cluster.ns, name) or ""):  # its SIGTERM handler is set
        assert time.monotonic() < deadline, kubelet.logs(cluster.ns, name)
        time.sleep(0.01)  # nothing to await: the process only writes its log
    assert alive(pid)
    return name, pid


def test_deleting_the_job_kills_the_process_and_the_pod_goes(
    cluster: Cluster, remote_kubelet: RemoteKubelet
) -> None:
    cluster.batch.create_namespaced_job(cluster.ns, job_manifest("forever", [PY, "-c", SLEEPER]))
    name, pid = running_pid(cluster, remote_kubelet, "forever")

    cluster.batch.delete_namespaced_job("forever", cluster.ns, propagation_policy="Background")
    cluster.pods("forever", lambda pods: not pods)

    assert not alive(pid)
    assert (cluster.ns, name) not in remote_kubelet.running()
    assert "got SIGTERM" in (remote_kubelet.logs(cluster.ns, name) or "")


def test_active_deadline_kills_a_long_sleeper(
    cluster: Cluster, remote_kubelet: RemoteKubelet
) -> None:
    manifest = job_manifest("slow", [PY, "-c", SLEEPER], deadline=3)
    cluster.batch.create_namespaced_job(cluster.ns, manifest)
    name, pid = running_pid(cluster, remote_kubelet, "slow")

    job = cluster.job("slow", finished, timeout=30)

    failed = condition(job, "Failed")
    assert failed is not None and failed["reason"] == "DeadlineExceeded", job["status"]
    cluster.pods("slow", lambda pods: all(p["status"]["phase"] == "Failed" for p in pods.values()))
    assert not alive(pid)
    assert "got SIGTERM" in (remote_kubelet.logs(cluster.ns, name) or "")


def test_runs_as_its_own_process_and_stops_on_sigterm(
    cluster: Cluster, control_plane: ControlPlane, tmp_path: Path
) -> None:
    node = KubeletProcess(
        control_plane.kubeconfig or "", workdir=tmp_path / "node", node_name="kopflow-sim-process"
    )
    try:
        node.start()
        ready = {c.type: c.status for c in cluster.core.read_node(node.node_name).status.conditions}
        assert ready["Ready"] == "True"
        manifest = job_manifest("there", [PY, "-c", "print('on the other node')"])
        manifest["spec"]["template"]["spec"]["nodeSelector"] = {
            "kubernetes.io/hostname": node.node_name
        }
        job = cluster.run(manifest)
        assert condition(job, "Complete") is not None, job["status"]
        pod = cluster.one_pod("there", lambda p: p["status"]["phase"] == "Succeeded")
        assert pod["spec"]["nodeName"] == node.node_name
        assert node.logs(cluster.ns, pod["metadata"]["name"]) == "on the other node\n"

        assert node.stop() == 0  # SIGTERM: a clean stop
    finally:
        node.stop()
        cluster.core.delete_node(node.node_name)  # no later pod may be bound to a stopped node


def test_a_process_killed_by_sigkill_it_did_not_send_is_reported_oomkilled(
    cluster: Cluster, remote_kubelet: RemoteKubelet
) -> None:
    cluster.batch.create_namespaced_job(cluster.ns, job_manifest("hog", [PY, "-c", SLEEPER]))
    _, pid = running_pid(cluster, remote_kubelet, "hog")

    os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
    job = cluster.job("hog", finished)

    assert condition(job, "Failed") is not None, job["status"]
    pod = cluster.one_pod("hog", lambda p: "terminated" in state(p))
    assert state(pod)["terminated"]["exitCode"] == 137
    assert state(pod)["terminated"]["reason"] == "OOMKilled"


def test_restart_policy_on_failure_restarts_the_process_in_place(cluster: Cluster) -> None:
    script = (
        "import os, pathlib, sys\n"
        "marker = pathlib.Path(os.environ['HOME'], 'tried')\n"
        "if not marker.exists():\n"
        "    marker.touch()\n"
        "    sys.exit(7)\n"
        "open(os.environ['KOPFLOW_OUTPUTS'], 'w').write('second time lucky')\n"
    )
    manifest = job_manifest("flaky", [PY, "-c", script])
    manifest["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    job = cluster.run(manifest)

    assert condition(job, "Complete") is not None, job["status"]
    pod = cluster.one_pod("flaky", lambda p: p["status"]["phase"] == "Succeeded")
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 7
    assert status["state"]["terminated"]["message"] == "second time lucky"


def test_status_written_by_others_survives_the_kubelets_writes(
    cluster: Cluster, remote_kubelet: RemoteKubelet, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    script = (
        f"import pathlib, time\nwhile not pathlib.Path({str(go)!r}).exists(): time.sleep(0.01)\n"
    )
    cluster.batch.create_namespaced_job(cluster.ns, job_manifest("shared", [PY, "-c", script]))
    pod = cluster.one_pod("shared", lambda p: "running" in state(p))
    name = pod["metadata"]["name"]
    mine = {"type": "example.com/Audited", "status": "True", "reason": "Checked"}
    patched = cluster.core.patch_namespaced_pod_status(
        name,
        cluster.ns,
        [{"op": "add", "path": "/status/conditions/-", "value": mine}],
    )
    uid, rv = pod["metadata"]["uid"], patched.metadata.resource_version
    deadline = time.monotonic() + 10
    while remote_kubelet.pods[uid]["metadata"]["resourceVersion"] != rv:  # its watch saw it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    remote_kubelet.pods[uid] = pod  # make it write from a stale copy: 409, re-read, retry
    conflicts = remote_kubelet.conflicts

    go.touch()
    cluster.job("shared", finished)

    pod = cluster.one_pod("shared", lambda p: p["status"]["phase"] == "Succeeded")
    kept = {c["type"]: c for c in pod["status"]["conditions"]}["example.com/Audited"]
    assert (kept["status"], kept["reason"]) == ("True", "Checked")
    assert remote_kubelet.conflicts > conflicts


def test_a_force_deleted_pod_has_its_process_killed(
    cluster: Cluster, remote_kubelet: RemoteKubelet
) -> None:
    cluster.batch.create_namespaced_job(cluster.ns, job_manifest("gone", [PY, "-c", SLEEPER]))
    name, pid = running_pid(cluster, remote_kubelet, "gone")

    cluster.core.delete_namespaced_pod(name, cluster.ns, grace_period_seconds=0)
    cluster.batch.delete_namespaced_job("gone", cluster.ns, propagation_policy="Background")
    cluster.pods("gone", lambda pods: name not in pods)

    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:  # no event tells when a process dies
        time.sleep(0.02)
    assert not alive(pid)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Poll a counter of the kubelet (nothing to watch) until `check()`, bounded."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


@pytest.mark.parametrize("too_old", [False, True], ids=["connection-cut", "gone-410"])
def test_the_pod_watch_recovers_from_a_cut_connection_and_410_gone(
    cluster: Cluster, remote_kubelet: RemoteKubelet, too_old: bool
) -> None:
    lists, watches = remote_kubelet.lists, remote_kubelet.watches

    remote_kubelet.drop_watch(gone=too_old)
    wait_until(lambda: remote_kubelet.watches > watches, "the watch was not re-opened")
    job = cluster.run(job_manifest("after", [PY, "-c", "print('still here')"]))

    assert condition(job, "Complete") is not None, job["status"]
    assert remote_kubelet.lists == lists + (1 if too_old else 0)


def test_an_evicted_pod_fails_with_reason_evicted_and_the_job_counts_a_failure(
    cluster: Cluster, remote_kubelet: RemoteKubelet
) -> None:
    cluster.batch.create_namespaced_job(cluster.ns, job_manifest("evicted", [PY, "-c", SLEEPER]))
    name, pid = running_pid(cluster, remote_kubelet, "evicted")

    remote_kubelet.evict(cluster.ns, name, "The node was low on resource: memory. ")
    job = cluster.job("evicted", finished)

    failed = condition(job, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded", job["status"]
    assert not alive(pid)
    pod = cluster.one_pod("evicted", lambda p: p["status"]["phase"] == "Failed")
    assert (pod["status"]["reason"], pod["status"]["message"]) == (
        "Evicted",
        "The node was low on resource: memory. ",
    )
    disruption = condition(pod, "DisruptionTarget")
    assert disruption is not None and disruption["reason"] == "TerminationByKubelet"
    assert state(pod)["terminated"]["exitCode"] == 137
