"""Fixtures that put an emulated Kubernetes API (and optionally a simulated node) under a test.

    def test_x(apiserver, kubeconfig, api_client, kubelet, namespace): ...

`apiserver` serves the repository's crds/*.yaml plus the small `widgets.test.kopflow.dev` CRD
below over HTTPS on 127.0.0.1 (random port); `kubeconfig` writes a kubeconfig for it (its CA
and the admin's bearer token: without credentials a request is anonymous, as on a real server)
and points KUBECONFIG at it (so kopf's login finds it); `api_client` is an official-client
ApiClient built from that file; `kubelet` runs Jobs' commands as local processes; `namespace` is
a fresh one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from tests.support.apiserver import ApiServer
from tests.support.apiserver_fixtures import WIDGET_CRD, Raw
from tests.support.kubelet import Kubelet


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    """A running emulator serving crds/*.yaml and the test Widget CRD; stopped afterwards."""
    server = ApiServer(crds=[WIDGET_CRD]).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kubeconfig(apiserver: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig file for the emulator, also exported as KUBECONFIG for kopf."""
    path = apiserver.kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
def api_client(kubeconfig: Path) -> Iterator[kubernetes.client.ApiClient]:
    """The official client configured from the kubeconfig file (no global configuration)."""
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def kubelet(apiserver: ApiServer) -> Iterator[Kubelet]:
    """The simulated node + Job controller; every process it started is killed afterwards."""
    node = Kubelet(apiserver, kill_grace=1.0).start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def namespace(api_client: kubernetes.client.ApiClient) -> str:
    """A fresh namespace (with its `default` ServiceAccount, as the controllers create it)."""
    core = kubernetes.client.CoreV1Api(api_client)
    ns = core.create_namespace({"metadata": {"generateName": "test-"}})
    return str(ns.metadata.name)


@pytest.fixture
def raw(apiserver: ApiServer) -> Raw:
    """Plain HTTP requests to the emulator as its admin (status, body, headers)."""
    return Raw(apiserver.url)
