"""pods/log on both backends, read with the real kubectl: the real API server proxies it to the
simulated kubelet's HTTPS endpoint (remote_kubelet); the emulator answers it from its kubelet.
Both must give what the process printed and the real server's status codes and messages."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException
from tests.integration.operator.conftest import Kube
from tests.support import kubectl

Obj = dict[str, Any]
PY = "python3"


def pod_doc(name: str, code: str, *, restart: str = "Never", **spec: Any) -> Obj:
    container = {"name": "main", "image": "python:3.12-slim", "command": [PY, "-u", "-c", code]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": restart,
            "automountServiceAccountToken": False,
            "containers": [container, *spec.pop("more", [])],
            **spec,
        },
    }


def main_state(kube: Kube, name: str) -> Obj | None:
    """The pod as last watched, when it exists."""
    for pod in kube.watched_pods():
        if pod["metadata"]["name"] == name:
            return pod
    return None


def wait_status(kube: Kube, name: str, check: Any, what: str) -> Obj:
    def ready() -> Obj | None:
        pod = main_state(kube, name)
        statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
        return pod if statuses and check(statuses[0]) else None

    found: Obj = kube.wait(ready, 60, f"pod {name}: {what}")
    return found


def logs(kube: Kube, *args: str) -> subprocess.CompletedProcess[str]:
    return kubectl.kubectl(kube.cluster.admin_kubeconfig, "logs", "-n", kube.ns, *args)


def test_kubectl_logs_reads_each_run_and_follows(kube: Kube, tmp_path: Path) -> None:
    go = tmp_path / "go"
    code = (
        "import os, pathlib, sys, time\n"
        "mark = pathlib.Path(os.environ['MARK'])\n"
        "if not mark.exists():\n"
        "    mark.touch(); print('run 0 out'); print('run 0 err', file=sys.stderr); sys.exit(1)\n"
        "print('run 1 starts')\n"
        "for _ in range(200):\n"
        "    if pathlib.Path(os.environ['GO']).exists(): break\n"
        "    time.sleep(0.05)\n"
        "print('run 1 ends')\n"
    )
    env = [{"name": "MARK", "value": str(tmp_path / "mark")}, {"name": "GO", "value": str(go)}]
    doc = pod_doc("twice", code, restart="OnFailure")
    doc["spec"]["containers"][0]["env"] = env
    kube.core.create_namespaced_pod(kube.ns, doc)
    wait_status(
        kube, "twice", lambda s: s.get("restartCount") == 1 and "running" in s["state"], "run 1"
    )

    previous = logs(kube, "twice", "--previous")
    assert (previous.returncode, previous.stdout) == (0, "run 0 out\nrun 0 err\n"), previous
    config = ["--kubeconfig", str(kube.cluster.admin_kubeconfig)]
    with subprocess.Popen(
        [kubectl.binary(), *config, "logs", "-f", "-n", kube.ns, "twice"],
        stdout=subprocess.PIPE,
        text=True,
    ) as follower:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "run 1 starts\n"
        assert follower.poll() is None  # following while the container runs
        go.touch()
        rest = follower.stdout.read()  # ends when the container ends
        assert (follower.wait(30), rest) == (0, "run 1 ends\n")

    wait_status(kube, "twice", lambda s: "terminated" in s["state"], "finished")
    assert logs(kube, "twice").stdout == "run 1 starts\nrun 1 ends\n"
    assert logs(kube, "twice", "--tail=1").stdout == "run 1 ends\n"
    assert logs(kube, "twice", "--limit-bytes=5").stdout == "run 1"
    stamped = logs(kube, "twice", "--timestamps").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["run 1 starts", "run 1 ends"]
    stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$"
    assert all(re.match(stamp, line.split(" ", 1)[0]) for line in stamped), stamped


def refusal(kube: Kube, name: str, **query: Any) -> tuple[int, str]:
    """(status, message) of GET pods/NAME/log; (200, text) when answered."""
    try:
        text = kube.core.read_namespaced_pod_log(name, kube.ns, **query)
    except ApiException as err:
        return err.status, json.loads(err.body)["message"]
    return 200, str(text or "")


def test_pods_log_refusals_are_the_real_servers(kube: Kube) -> None:
    assert refusal(kube, "nosuch") == (404, 'pods "nosuch" not found')

    side = {"name": "side", "image": "busybox", "command": ["true"]}
    kube.core.create_namespaced_pod(kube.ns, pod_doc("two", "print('hi')", more=[side]))
    assert refusal(kube, "two") == (
        400,
        "a container name must be specified for pod two, choose one of: [main side]",
    )
    assert refusal(kube, "two", container="nope") == (
        400,
        "container nope is not valid for pod two",
    )
    assert refusal(kube, "two", tail_lines=-1) == (
        422,
        'PodLogOptions "two" is invalid: tailLines: Invalid value: -1: must be greater than or '
        "equal to 0",
    )

    kube.core.create_namespaced_pod(
        kube.ns, pod_doc("unbound", "print('never')", schedulerName="nobody")
    )
    assert refusal(kube, "unbound") == (200, "")  # 204 No Content: no node, no log yet

    secret = {"secretRef": {"name": "absent"}}
    waiting = pod_doc("waiting", "print('never')")
    waiting["spec"]["containers"][0]["envFrom"] = [secret]
    kube.core.create_namespaced_pod(kube.ns, waiting)
    wait_status(kube, "waiting", lambda s: "waiting" in s["state"], "waiting")
    assert refusal(kube, "waiting") == (
        400,
        'container "main" in pod "waiting" is waiting to start: CreateContainerConfigError',
    )
    wait_status(kube, "two", lambda s: "terminated" in s["state"], "finished")
    assert refusal(kube, "two", container="main") == (200, "hi\n")
    assert refusal(kube, "two", container="main", previous=True) == (
        400,
        'previous terminated container "main" in pod "two" not found',
    )
