"""Fixtures of the real-API tier: the simulated node, an admin client, a fresh namespace.

    def test_x(control_plane, remote_kubelet, real_client, real_namespace): ...

`remote_kubelet` (tests/conftest.py) is one RemoteKubelet for the whole session (the Node
`kopflow-sim` stays registered; tests isolate by namespace). `real_namespace` is a fresh
namespace whose `default` ServiceAccount exists already (the Job controller cannot create pods
before the ServiceAccount controller made it); it is deleted after the test without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import kubernetes
import pytest
from kubernetes.client.rest import ApiException
from tests.support.control_plane import ControlPlane


@pytest.fixture(scope="session")
def real_client(control_plane: ControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    """An official-client ApiClient for the control plane, as cluster admin."""
    client = kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield client
    finally:
        client.close()


def wait_for_service_account(core: kubernetes.client.CoreV1Api, namespace: str) -> None:
    """Until the ServiceAccount controller has made the namespace's `default` account."""
    w = kubernetes.watch.Watch()
    try:
        core.read_namespaced_service_account("default", namespace)
        return
    except ApiException as exc:
        if exc.status != 404:
            raise
    for event in w.stream(
        core.list_namespaced_service_account,
        namespace,
        field_selector="metadata.name=default",
        timeout_seconds=30,
    ):
        if event["type"] in ("ADDED", "MODIFIED"):
            w.stop()
            return
    raise AssertionError(f"no default ServiceAccount in {namespace} after 30 s")


@pytest.fixture
def real_namespace(real_client: kubernetes.client.ApiClient) -> Iterator[str]:
    """A fresh namespace with its default ServiceAccount; deleted (not awaited) afterwards."""
    core = kubernetes.client.CoreV1Api(real_client)
    name = str(core.create_namespace({"metadata": {"generateName": "t-"}}).metadata.name)
    started = time.monotonic()
    wait_for_service_account(core, name)
    assert time.monotonic() - started < 30
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
