"""The cluster commands of `kopflow` as a user runs them (a subprocess with a kubeconfig),
against the running operator, on both backends.

The user here is the cluster admin (allowed to create runs); a second user who may only read
shows the 403 message.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from tests.integration.operator.conftest import ROOT, Cluster, Kube, Operator

from kopflow.cli import main
from kopflow.engine.naming import job_name

WRITE = "import os, sys; print({}, file=open(os.environ['KOPFLOW_OUTPUTS'], 'w'))"
PIPE = {
    "apiVersion": "kopflow.dev/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": "pipe"},
    "spec": {
        "parameters": [
            {"name": "fail", "default": "0", "enum": ["0", "1"]},
            {"name": "size", "default": "42"},
        ],
        "taskDefaults": {"image": "python:3.12-slim"},
        "tasks": [
            {
                "name": "make",
                "command": ["python3", "-c", WRITE.format("'count=' + sys.argv[1]")],
                "args": ["{{ params.size }}"],
                "outputs": ["count"],
            },
            {
                "name": "use",
                "dependsOn": ["make"],
                "command": [
                    "python3",
                    "-c",
                    WRITE.format("'seen=' + sys.argv[1]") + "; sys.exit(int(sys.argv[2]))",
                ],
                "args": ["{{ tasks.make.outputs.count }}", "{{ params.fail }}"],
                "outputs": ["seen"],
            },
            {"name": "last", "dependsOn": ["use"], "command": ["python3", "-c", "print('ok')"]},
        ],
    },
}
GATE = """import os, time
for _ in range(1200):  # until the test opens the gate (a file), at most 60 s
    if os.path.exists(os.environ["KOPFLOW_PARAM_GATE"]):
        break
    time.sleep(0.05)
"""
GATED = {
    "apiVersion": "kopflow.dev/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": "gated"},
    "spec": {
        "parameters": [{"name": "gate"}],
        "taskDefaults": {"image": "python:3.12-slim"},
        "tasks": [
            {"name": "first", "script": {"command": ["python3"], "source": GATE}},
            {"name": "second", "dependsOn": ["first"], "command": ["python3", "-c", "pass"]},
        ],
    },
}


def kopflow(
    cluster: Cluster, *args: str, kubeconfig: Path | None = None, process: bool = False
) -> subprocess.CompletedProcess[str]:
    """`kopflow --kubeconfig ... -n <ns> ARGS` as a user types it, stdout not a terminal: in
    this process through main() (fast), or as a real process (`process=True`)."""
    config = kubeconfig or cluster.admin_kubeconfig
    argv = ["--kubeconfig", str(config), "-n", cluster.namespace, *args]
    if process:
        return subprocess.run(
            [sys.executable, "-m", "kopflow", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return subprocess.CompletedProcess(["kopflow", *argv], code, out.getvalue(), err.getvalue())


def created(result: subprocess.CompletedProcess[str]) -> str:
    """The run name from `workflowrun/NAME created`."""
    first = result.stdout.splitlines()[0]
    assert first.startswith("workflowrun/") and " created" in first, result.stdout + result.stderr
    return first.split("/", 1)[1].split()[0]


def task_rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("TASK"))
    return [line.split() for line in lines[start + 1 :] if line.strip()]


def test_submit_watch_succeeds_then_get_list_and_graph_show_it(
    operator: Operator, cluster: Cluster, kube: Kube
) -> None:
    kube.create(PIPE)
    result = kopflow(cluster, "submit", "pipe", "-p", "size=7", "--watch", process=True)
    assert result.returncode == 0, result.stdout + result.stderr
    name = created(result)
    assert name.startswith("pipe-")
    assert f"run {name} Succeeded" in result.stdout
    for task in ("make", "use", "last"):
        assert any(task in line and "Succeeded" in line for line in result.stdout.splitlines())

    shown = kopflow(cluster, "get", name)
    assert shown.returncode == 0, shown.stderr
    rows = task_rows(shown.stdout)
    assert [r[0] for r in rows] == ["make", "use", "last"]  # dependency order
    assert all(r[1] == "Succeeded" and r[2] == "1" for r in rows)
    assert "count=7" in rows[0] and "seen=7" in rows[1]
    assert "Parameters:  fail=0, size=7" in shown.stdout

    as_json = json.loads(kopflow(cluster, "get", name, "-o", "json").stdout)
    assert as_json["status"]["tasks"]["use"]["outputs"] == {"seen": "7"}
    as_yaml = yaml.safe_load(kopflow(cluster, "get", name, "-o", "yaml").stdout)
    assert as_yaml["metadata"]["name"] == name

    listed = kopflow(cluster, "list", "--workflow", "pipe")
    assert listed.returncode == 0 and name in listed.stdout and "Succeeded" in listed.stdout
    failed_only = kopflow(cluster, "list", "--phase", "Failed")
    assert failed_only.returncode == 0 and name not in failed_only.stdout
    assert "no workflowruns" in failed_only.stderr

    svg = kopflow(cluster, "graph", name, "--format", "svg")
    assert svg.returncode == 0, svg.stderr
    root = ET.fromstring(svg.stdout.split("?>", 1)[1])
    tasks = root.findall("{http://www.w3.org/2000/svg}g[@class='task']")
    assert sorted(g.get("data-task") or "" for g in tasks) == ["last", "make", "use"]
    assert {g.get("data-phase") for g in tasks} == {"Succeeded"}


def test_a_failed_run_exits_1_and_retry_reuses_what_succeeded(
    operator: Operator, cluster: Cluster, kube: Kube
) -> None:
    kube.create(PIPE)
    failed = kopflow(cluster, "submit", "pipe", "-p", "fail=1", "--watch", process=True)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    first = created(failed)
    assert f"run {first} Failed" in failed.stdout and 'task "use" failed' in failed.stdout

    retried = kopflow(cluster, "retry", first, "-p", "fail=0", "--watch")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    second = created(retried)
    assert f"(retry of {first}; reused: make)" in retried.stdout
    run = kube.run(second)
    origin = run["spec"]["retryOf"]
    assert origin["name"] == first and origin["uid"] == kube.run(first)["metadata"]["uid"]
    assert origin["reused"] == {"make": {"count": "42"}}
    tasks = run["status"]["tasks"]
    assert tasks["make"]["phase"] == "Succeeded" and tasks["make"]["reused"] is True
    assert tasks["make"].get("attempts", 0) == 0
    assert tasks["use"]["outputs"] == {"seen": "42"}  # the reused output fed templating
    uid = run["metadata"]["uid"]
    assert job_name(second, "make", 1, uid) not in kube.created_jobs  # nothing ran for it
    assert job_name(second, "use", 1, uid) in kube.created_jobs
    rows = {r[0]: r for r in task_rows(kopflow(cluster, "get", second).stdout)}
    assert rows["make"][1:3] == ["Succeeded", "0"] and "reused" in rows["make"]

    again = kopflow(cluster, "retry", second, "--from", "make")
    third = created(again)
    assert "reused: nothing" in again.stdout
    assert kube.wait_run(third, "Succeeded")["status"]["tasks"]["make"].get("reused") is None


def test_suspend_holds_new_tasks_resume_continues_cancel_stops(
    operator: Operator, cluster: Cluster, kube: Kube, tmp_path: Path
) -> None:
    kube.create(GATED)
    gate = tmp_path / "gate"
    name = created(kopflow(cluster, "submit", "gated", "-p", f"gate={gate}"))
    kube.wait_task(name, "first", "Running")
    suspended = kopflow(cluster, "suspend", name)
    assert suspended.returncode == 0 and "suspended" in suspended.stdout, suspended.stderr
    generation = kube.run(name)["metadata"]["generation"]
    kube.wait(
        lambda: any(
            r["metadata"]["name"] == name
            and (r.get("status") or {}).get("observedGeneration") == generation
            for r in kube.watched_runs()
        ),
        30,
        "the operator saw the suspension",
    )
    gate.touch()
    run = kube.wait_task(name, "first", "Succeeded")
    assert run["status"]["tasks"]["second"]["phase"] == "Pending"
    assert "(suspended)" in kopflow(cluster, "get", name).stdout
    assert job_name(name, "second", 1, run["metadata"]["uid"]) not in kube.created_jobs
    resumed = kopflow(cluster, "resume", name)
    assert resumed.returncode == 0 and "resumed" in resumed.stdout, resumed.stderr
    watched = kopflow(cluster, "get", name, "--watch")
    assert watched.returncode == 0 and f"run {name} Succeeded" in watched.stdout

    other = created(kopflow(cluster, "submit", "gated", "-p", f"gate={tmp_path / 'never'}"))
    kube.wait_task(other, "first", "Running")
    cancelled = kopflow(cluster, "cancel", other)
    assert cancelled.returncode == 0, cancelled.stderr
    kube.wait_run(other, "Cancelled")
    watched = kopflow(cluster, "get", other, "--watch")
    assert watched.returncode == 1 and f"run {other} Cancelled" in watched.stdout
    twice = kopflow(cluster, "cancel", other)
    assert twice.returncode == 1
    assert f'workflowrun "{other}" already finished (Cancelled); nothing to cancel' in twice.stderr


def reader_kubeconfig(cluster: Cluster, path: Path) -> Path:
    """A kubeconfig for a ServiceAccount that may only read workflows and runs."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(cluster.client)
    core = kubernetes.client.CoreV1Api(cluster.client)
    ns = cluster.namespace
    rules = [
        {
            "apiGroups": ["kopflow.dev"],
            "resources": ["workflows", "workflowruns"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    rbac.create_namespaced_role(ns, {"metadata": {"name": "reader"}, "rules": rules})
    core.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "reader", ns, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    config: dict[str, Any] = yaml.safe_load(cluster.operator_kubeconfig.read_text())
    config["users"][0]["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def test_errors_name_the_run_the_workflow_the_parameter_and_the_refused_verb(
    cluster: Cluster, kube: Kube, tmp_path: Path
) -> None:
    ns = cluster.namespace
    kube.create(PIPE)
    missing = kopflow(cluster, "get", "nope")
    assert missing.returncode == 1
    assert missing.stderr == f'error: workflowrun "nope" not found in namespace "{ns}"\n'
    for command in ("cancel", "suspend", "resume", "retry", "graph"):
        result = kopflow(cluster, command, "nope")
        assert result.returncode == 1, command
        assert f'workflowrun "nope" not found in namespace "{ns}"' in result.stderr, command

    no_workflow = kopflow(cluster, "submit", "nosuch")
    assert no_workflow.returncode == 1
    assert f'workflow "nosuch" not found in namespace "{ns}" (workflows here: pipe' in (
        no_workflow.stderr
    )
    unknown = kopflow(cluster, "submit", "pipe", "-p", "colour=red")
    assert unknown.returncode == 2
    assert 'workflow "pipe" has no parameter "colour" (its parameters: fail, size)' in (
        unknown.stderr
    )
    outside = kopflow(cluster, "submit", "pipe", "-p", "fail=2")
    assert outside.returncode == 2
    assert '-p fail: "2" is not an allowed value of "fail"; use one of: 0, 1' in outside.stderr
    listing = kube.custom.list_namespaced_custom_object(
        "kopflow.dev", "v1alpha1", ns, "workflowruns"
    )
    assert listing["items"] == []  # nothing was created

    reader = reader_kubeconfig(cluster, tmp_path / "reader.kubeconfig")
    refused = kopflow(cluster, "submit", "pipe", kubeconfig=reader)
    assert refused.returncode == 1
    assert (
        f'forbidden: you may not "create" workflowruns.kopflow.dev in namespace "{ns}"'
        in refused.stderr
    )
    assert "system:serviceaccount" in refused.stderr  # the server's words name the user
    assert kopflow(cluster, "list", kubeconfig=reader).returncode == 0
