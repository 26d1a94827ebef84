"""A failed run reaches a person: Debian's Prometheus scrapes the operator and evaluates the
shipped rules (helm/kopflow/files/alerts.yaml), and the KopflowRunFailed alert arrives at an
Alertmanager webhook with the run's namespace and workflow."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.operator.conftest import ROOT, Kube, Operator
from tests.support import prometheus
from tests.support.prometheus import Webhook

ALERTS = ROOT / "helm" / "kopflow" / "files" / "alerts.yaml"
DELIVERY_TIMEOUT = 45.0


@pytest.fixture
def webhook(kube: Kube) -> Iterator[Webhook]:
    def failed_here(alert: dict[str, Any]) -> bool:
        labels = alert.get("labels", {})
        return labels.get("alertname") == "KopflowRunFailed" and labels.get("namespace") == kube.ns

    hook = Webhook(failed_here)
    try:
        yield hook
    finally:
        hook.stop()


def test_a_failed_run_alerts_through_alertmanager(
    operator: Operator, kube: Kube, webhook: Webhook, tmp_path: Path
) -> None:
    alertmanager = prometheus.alertmanager(tmp_path / "alertmanager", webhook.url)
    server = None
    try:
        alertmanager.wait_ready()
        server = prometheus.prometheus(
            tmp_path / "prometheus",
            ALERTS,
            [f"127.0.0.1:{operator.metrics_port}"],
            alertmanager.url,
        )
        server.wait_ready()
        kube.create(
            {
                "apiVersion": "kopflow.dev/v1alpha1",
                "kind": "Workflow",
                "metadata": {"name": "nightly"},
                "spec": {
                    "taskDefaults": {"image": "busybox"},
                    "tasks": [
                        {"name": "load", "command": ["python3", "-c", "raise SystemExit(4)"]}
                    ],
                },
            }
        )
        started = time.monotonic()
        kube.run_ref("nightly-1", "nightly")
        assert kube.wait_run("nightly-1")["status"]["phase"] == "Failed"
        assert webhook.arrived.wait(DELIVERY_TIMEOUT), (
            f"no KopflowRunFailed alert within {DELIVERY_TIMEOUT}s; got {webhook.alerts}\n"
            + server.log.read_text()[-3000:]
        )
        print(f"alert delivered {time.monotonic() - started:.1f}s after the run was created")
    finally:
        if server is not None:
            server.stop()
        alertmanager.stop()
    alert = next(a for a in webhook.alerts if a["labels"].get("alertname") == "KopflowRunFailed")
    assert alert["status"] == "firing"
    assert alert["labels"]["workflow"] == "nightly"
    assert alert["labels"]["severity"] == "warning"
    assert alert["annotations"]["summary"] == f"A run of {kube.ns}/nightly failed"
    assert alert["annotations"]["runbook_url"].endswith("docs/runbooks.md#kopflowrunfailed")
    assert "nightly-1" not in str(alert["labels"])  # never a run name
