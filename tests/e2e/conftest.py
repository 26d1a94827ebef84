"""End-to-end tests need a real cluster (`kind create cluster --config kind-config.yaml`).

Every test here is skipped, with the reason, when no API server is reachable.
"""

from __future__ import annotations

import pytest


def cluster_reachable() -> bool:
    """True when the current kubeconfig reaches an API server within a few seconds."""
    try:
        from kubernetes import client, config

        config.load_kube_config()
        client.VersionApi().get_code(_request_timeout=3)
    except Exception:
        return False
    return True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if any("e2e" in str(item.path) for item in items) and not cluster_reachable():
        skip = pytest.mark.skip(reason="no Kubernetes cluster reachable from the kubeconfig")
        for item in items:
            if "e2e" in str(item.path):
                item.add_marker(skip)
