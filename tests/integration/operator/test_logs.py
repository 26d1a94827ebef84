"""`kopflow logs`: what a task printed, read through pods/log with the user's own rights.

On the real backend the API server proxies pods/log to the simulated kubelet's HTTPS endpoint
(remote_kubelet), as it does to a real node; on the emulator its kubelet answers the same way.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from tests.integration.operator.conftest import ROOT, Kube, Operator

from kopflow.engine.naming import job_name

PY = "python3"


def run_doc(name: str, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "kopflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflow": {"taskDefaults": {"image": "python:3.12-slim"}, "tasks": tasks}},
    }


def printer(name: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": [PY, "-u", "-c", code], **extra}


def kopflow(
    kube: Kube, *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`kopflow ARGS -n <namespace>` as the user of `kubeconfig` (default: admin)."""
    config = kubeconfig or kube.cluster.admin_kubeconfig
    return subprocess.run(
        [sys.executable, "-m", "kopflow", *args, "-n", kube.ns, "--kubeconfig", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def user_without_pod_logs(kube: Kube, path: Path) -> Path:
    """A kubeconfig of a ServiceAccount that may read runs and pods, not pods/log."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube.cluster.client)
    rules = [
        {"apiGroups": ["kopflow.dev"], "resources": ["workflowruns"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    ]
    rbac.create_namespaced_role(kube.ns, {"metadata": {"name": "reader"}, "rules": rules})
    kube.core.create_namespaced_service_account(kube.ns, {"metadata": {"name": "reader"}})
    subject = {"kind": "ServiceAccount", "name": "reader", "namespace": kube.ns}
    role = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}
    rbac.create_namespaced_role_binding(
        kube.ns, {"metadata": {"name": "reader"}, "roleRef": role, "subjects": [subject]}
    )
    token = kube.core.create_namespaced_service_account_token(
        "reader", kube.ns, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    config = yaml.safe_load(kube.cluster.admin_kubeconfig.read_text())
    user = config["contexts"][0]["context"]["user"]
    config["users"] = [{"name": user, "user": {"token": token}}]
    path.write_text(yaml.safe_dump(config))
    return path


TASKS = [
    printer("first", "import sys; print('first says one'); print('first warns', file=sys.stderr)"),
    printer(
        "flaky",
        "import os, sys; n = os.environ['KOPFLOW_ATTEMPT']; print('flaky attempt', n); "
        "sys.exit(0 if n == '2' else 3)",
        dependsOn=["first"],
        retry={"limit": 1, "backoff": {"seconds": 0}},
    ),
    printer("last", "print('last line')", dependsOn=["flaky"]),
]


def test_logs_prints_each_attempt_and_every_task_in_order(
    operator: Operator, kube: Kube, tmp_path: Path
) -> None:
    kube.create(run_doc("printed", TASKS))
    run = kube.wait_run("printed", timeout=90)
    assert run["status"]["phase"] == "Succeeded", run["status"]

    one = kopflow(kube, "logs", "printed", "first")
    assert (one.returncode, one.stdout) == (0, "first says one\nfirst warns\n"), one.stderr
    latest = kopflow(kube, "logs", "printed", "flaky")
    assert (latest.returncode, latest.stdout) == (0, "flaky attempt 2\n"), latest.stderr
    earlier = kopflow(kube, "logs", "printed", "flaky", "--attempt", "1")
    assert (earlier.returncode, earlier.stdout) == (0, "flaky attempt 1\n"), earlier.stderr
    every = kopflow(kube, "logs", "printed")
    assert every.returncode == 0, every.stderr
    assert every.stdout.splitlines() == [
        "[first] first says one",
        "[first] first warns",
        "[flaky] flaky attempt 2",
        "[last] last line",
    ]

    none = kopflow(kube, "logs", "printed", "flaky", "--attempt", "3")
    assert none.returncode == 1
    assert "has no attempt 3: it has 2 (--attempt 1..2)" in none.stderr
    task = kopflow(kube, "logs", "printed", "nosuch")
    assert task.returncode == 1
    assert 'no task "nosuch" (its tasks: first, flaky, last)' in task.stderr
    missing = kopflow(kube, "logs", "absent")
    assert missing.returncode == 1
    assert f'workflowrun "absent" not found in namespace "{kube.ns}"' in missing.stderr

    reader = user_without_pod_logs(kube, tmp_path / "reader.kubeconfig")
    refused = kopflow(kube, "logs", "printed", "first", kubeconfig=reader)
    assert refused.returncode == 1
    assert "may not get pods/log" in refused.stderr, refused.stderr
    assert "`get` on `pods/log`" in refused.stderr

    job = job_name("printed", "first", 1, run["metadata"]["uid"])  # a finished run's summary
    # may not keep jobName
    kube.batch.delete_namespaced_job(job, kube.ns, propagation_policy="Background")
    kube.wait(
        lambda: not [p for p in kube.watched_pods() if p["metadata"]["name"].startswith(job)],
        60,
        f"the pods of Job {job} deleted",
    )
    gone = kopflow(kube, "logs", "printed", "first")
    assert gone.returncode == 1
    assert f"the pod of attempt 1 of task first (Job {job}) is gone: its Job was deleted" in (
        gone.stderr
    )


def test_logs_follow_streams_while_the_task_runs(
    operator: Operator, kube: Kube, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    code = (
        "import os, pathlib, time\n"
        "print('tick 1')\n"
        "for _ in range(200):\n"  # the second line waits until the readers had the first
        "    if pathlib.Path(os.environ['GO']).exists(): break\n"
        "    time.sleep(0.05)\n"
        "print('tick 2')\n"
    )
    ticker = printer("ticker", code, env=[{"name": "GO", "value": str(go)}])
    after = printer("after", "print('after done')", dependsOn=["ticker"])
    kube.create(run_doc("streamed", [ticker, after]))
    kube.wait_task("streamed", "ticker", "Running", timeout=60)
    config = ["-n", kube.ns, "--kubeconfig", str(kube.cluster.admin_kubeconfig)]

    def follow(*args: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "kopflow", "logs", "streamed", *args, "-f", *config]
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)

    with follow("ticker") as one, follow() as every:
        assert one.stdout is not None and every.stdout is not None
        assert one.stdout.readline() == "tick 1\n"
        assert every.stdout.readline() == "[ticker] tick 1\n"
        assert one.poll() is None and every.poll() is None  # following: the task still runs
        go.touch()
        rest = one.stdout.read()  # ends when the pod's container ends
        assert (one.wait(30), rest) == (0, "tick 2\n")
        rest = every.stdout.read()  # the next task too, until the run ends
        assert (every.wait(60), rest) == (0, "[ticker] tick 2\n[after] after done\n")
    kube.wait_run("streamed", "Succeeded")
