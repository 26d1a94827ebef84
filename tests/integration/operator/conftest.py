"""The operator as users run it (`python -m kopflow operator`), against the emulator + kubelet.

def test_x(operator, kube): kube.apply(...); kube.wait_run(name, "Succeeded")
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from tests.support.apiserver import ApiServer
from tests.support.kubelet import Kubelet

ROOT = Path(__file__).resolve().parents[3]
GROUP, VERSION = "kopflow.dev", "v1alpha1"
FINISHED = ("Succeeded", "Failed", "Cancelled", "Invalid")


class Operator:
    """A `kopflow operator` subprocess that can be killed and started again."""

    def __init__(self, kubeconfig: Path, log: Path, *extra: str) -> None:
        self.kubeconfig, self.log, self.extra = kubeconfig, log, extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kopflow", "operator", "--health-port", "0", *self.extra],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class Kube:
    """Test-side client: create from YAML, wait for phases (watch-driven), list Jobs."""

    def __init__(self, server: ApiServer, client: kubernetes.client.ApiClient, ns: str) -> None:
        self.server, self.ns = server, ns
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)
        self.created_jobs: Counter[str] = Counter()
        self._watching = threading.Event()

    def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        plural = {"Workflow": "workflows", "WorkflowRun": "workflowruns"}[doc["kind"]]
        body: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, plural, doc
        )
        return body

    def run_ref(self, name: str, workflow: str, **params: str) -> dict[str, Any]:
        """Create a WorkflowRun of a Workflow by reference, with parameter values."""
        spec: dict[str, Any] = {"workflowRef": {"name": workflow}}
        if params:
            spec["parameters"] = params
        return self.create(
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkflowRun",
             "metadata": {"name": name}, "spec": spec}
        )  # fmt: skip

    def create_file(self, name: str) -> list[dict[str, Any]]:
        docs = [d for d in yaml.safe_load_all((ROOT / "examples" / name).read_text()) if d]
        return [self.create(d) for d in docs]

    def run(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "workflowruns", name
        )
        return body

    def patch_run(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, "workflowruns", name, {"spec": spec}
        )

    def wait_run(self, name: str, *phases: str, timeout: float = 60) -> dict[str, Any]:
        """The run once its phase is one of phases (default: any finished phase)."""
        wanted = phases or FINISHED
        obj = self.server.wait_for(
            "workflowruns.kopflow.dev",
            self.ns,
            name,
            lambda o: o is not None and (o.get("status") or {}).get("phase") in wanted,
            timeout=timeout,
        )
        assert obj is not None
        return obj

    def wait_task(self, name: str, task: str, phase: str, timeout: float = 60) -> dict[str, Any]:
        def ready(o: dict[str, Any] | None) -> bool:
            tasks = ((o or {}).get("status") or {}).get("tasks") or {}
            return (tasks.get(task) or {}).get("phase") == phase

        obj = self.server.wait_for("workflowruns.kopflow.dev", self.ns, name, ready, timeout)
        assert obj is not None
        return obj

    def jobs(self) -> list[dict[str, Any]]:
        return self.server.list("jobs.batch", self.ns)

    def wait_no_jobs(self, timeout: float = 15) -> None:
        """Until every Job of the namespace is gone (deleted by the operator or GC)."""
        rt = self.server.storage_type("jobs.batch")
        self.server.wait_until(lambda store: not any(store.iter_objects(rt, self.ns)), timeout)

    def wait_event(self, name: str, reason: str, timeout: float = 30) -> None:
        """Until an Event with this reason about the run exists (watch-driven)."""
        rt = self.server.storage_type("events")

        def seen(store: Any) -> bool:
            return any(
                e.get("reason") == reason and e["involvedObject"]["name"] == name
                for e in store.iter_objects(rt, self.ns)
            )

        self.server.wait_until(seen, timeout)

    def events(self, name: str) -> list[tuple[str, str, str]]:
        return [
            (e.type, e.reason, e.message)
            for e in self.core.list_namespaced_event(self.ns).items
            if e.involved_object.name == name and e.involved_object.kind == "WorkflowRun"
        ]

    def watch_job_creations(self) -> None:
        """Count ADDED events per Job name from now on (a name added twice was re-created)."""

        # One watch for the whole test, on its own thread; the emulator ends it on stop.
        def loop() -> None:
            w = kubernetes.watch.Watch()
            self._watching.set()
            for event in w.stream(self.batch.list_namespaced_job, self.ns, timeout_seconds=600):
                if event["type"] == "ADDED":
                    self.created_jobs[event["object"].metadata.name] += 1

        threading.Thread(target=loop, daemon=True).start()
        self._watching.wait(5)


@pytest.fixture
def kube(apiserver: ApiServer, api_client: kubernetes.client.ApiClient, namespace: str) -> Kube:
    return Kube(apiserver, api_client, namespace)


@pytest.fixture
def operator(kubeconfig: Path, kubelet: Kubelet, tmp_path: Path) -> Iterator[Operator]:
    """A running operator; its log is printed when the test fails."""
    op = Operator(kubeconfig, tmp_path / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()
        if op.log.exists():
            sys.stdout.write(op.log.read_text()[-20000:])
