"""On a real cluster: the operator (run from this checkout) drives the examples to their end.

    kind create cluster --config kind-config.yaml && make test
Skipped, with the reason, when no cluster is reachable (see conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support import kubectl

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kopflow.dev", "v1alpha1"
pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """CRDs installed, a fresh namespace, and `kopflow operator` running against them."""
    from kubernetes import client, config

    config.load_kube_config()
    kubectl.install_crds(None)
    core = client.CoreV1Api()
    ns = core.create_namespace({"metadata": {"generateName": "kopflow-e2e-"}}).metadata.name
    log = (tmp_path / "operator.log").open("wb")
    op = subprocess.Popen(
        [sys.executable, "-m", "kopflow", "operator", "-n", ns, "--health-port", "0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    try:
        yield client.CustomObjectsApi(), ns
    finally:
        op.terminate()
        op.wait(30)
        core.delete_namespace(ns)


def wait_finished(custom: Any, ns: str, name: str, timeout: float = 600) -> dict[str, Any]:
    """Poll the run (a real cluster has no in-process hook to await); bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "workflowruns", name)
        if (run.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Invalid"):
            return run  # type: ignore[no-any-return]
        time.sleep(2)
    raise TimeoutError(f"run {name} did not finish in {timeout}s")


@pytest.mark.parametrize("files", [["hello.yaml"], ["etl.yaml", "etl-run.yaml"], ["flaky.yaml"]])
def test_examples_succeed_on_a_real_cluster(cluster: tuple[Any, str], files: list[str]) -> None:
    custom, ns = cluster
    run_name, workflow = None, None
    for file in files:
        for doc in yaml.safe_load_all((ROOT / "examples" / file).read_text()):
            plural = {"Workflow": "workflows", "WorkflowRun": "workflowruns"}[doc["kind"]]
            made = custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, doc)
            if doc["kind"] == "WorkflowRun":
                run_name = made["metadata"]["name"]
            else:
                workflow = made["metadata"]["name"]
    if run_name is None:  # a Workflow alone: run it by reference
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WorkflowRun",
            "metadata": {"generateName": f"{workflow}-"},
            "spec": {"workflowRef": {"name": workflow}},
        }
        run_name = custom.create_namespaced_custom_object(GROUP, VERSION, ns, "workflowruns", body)[
            "metadata"
        ]["name"]
    assert wait_finished(custom, ns, run_name)["status"]["phase"] == "Succeeded"
