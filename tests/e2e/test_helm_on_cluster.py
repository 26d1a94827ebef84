"""The README's path on a real cluster: the image loaded into it, `helm install`, the examples
applied, a run watched to its end, `helm uninstall`.

    kind create cluster --config kind-config.yaml
    docker build -t kopflow:dev . && kind load docker-image kopflow:dev --name kopflow
    KOPFLOW_IMAGE=kopflow:dev make test

Skipped, with the reason, when no cluster is reachable (conftest.py) or KOPFLOW_IMAGE does not
name an image the cluster can run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from tests.e2e.test_operator_on_cluster import wait_finished
from tests.support import helm, kubectl

IMAGE = os.environ.get("KOPFLOW_IMAGE", "")
pytestmark = pytest.mark.e2e


@pytest.fixture
def release() -> Iterator[tuple[str, str]]:
    """The chart installed (and waited for) in a fresh namespace, watching only it."""
    from kubernetes import client, config

    if not IMAGE:  # checked here, so that "no cluster reachable" (conftest) is said first
        pytest.skip(
            "KOPFLOW_IMAGE is not set: build the operator image and load it into the cluster "
            "first (README: Install with Helm)"
        )

    config.load_kube_config()
    core = client.CoreV1Api()
    ns = core.create_namespace({"metadata": {"generateName": "kopflow-e2e-"}}).metadata.name
    name = f"kopflow-{uuid.uuid4().hex[:6]}"
    repository, _, tag = IMAGE.rpartition(":")
    done = helm.helm(
        "install", name, str(helm.CHART), "-n", ns, "--wait", "--timeout", "180s",
        "--set", f"image.repository={repository},image.tag={tag},image.pullPolicy=IfNotPresent",
        "--set-json", f'watchNamespaces=["{ns}"]', timeout=240,
    )  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        yield name, ns
    finally:
        helm.helm("uninstall", name, "-n", ns, timeout=120)
        core.delete_namespace(ns)


def test_helm_installed_operator_runs_the_examples(release: tuple[str, str]) -> None:
    from kubernetes import client

    _, ns = release
    hello = str(kubectl.ROOT / "examples" / "hello.yaml")
    created = kubectl.lines(None, "create", "-n", ns, "-f", hello, "-o", "name")
    name = created[0].rpartition("/")[2]
    run = wait_finished(client.CustomObjectsApi(), ns, name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
