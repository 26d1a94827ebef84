"""`kopflow backfill` with the user's (admin) kubeconfig: the runs of past slots, once."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from tests.integration.operator.conftest import ROOT, Cluster, Kube


def backfill(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kopflow", "backfill", "-n", cluster.namespace, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**os.environ, "KUBECONFIG": str(cluster.admin_kubeconfig)},
    )


def test_backfill_creates_each_past_slot_once_with_the_schedule_names(
    cluster: Cluster, kube: Kube
) -> None:
    kube.create(
        {
            "apiVersion": "kopflow.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "daily"},
            "spec": {
                "schedule": {"cron": "0 3 * * *", "timezone": "Europe/Berlin", "suspend": True},
                "tasks": [{"name": "a", "image": "busybox", "command": ["true"]}],
            },
        }
    )
    end = datetime.now(UTC) - timedelta(days=1)
    start = (end - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    to = end.strftime("%Y-%m-%dT%H:%M:%SZ")
    first = backfill(cluster, "daily", "--from", start, "--to", to)
    assert first.returncode == 0, first.stderr
    assert "3 run(s) created, 3 slot(s)" in first.stdout
    second = backfill(cluster, "daily", "--from", start, "--to", to)
    assert second.returncode == 0 and "0 run(s) created, 3 slot(s)" in second.stdout
    assert second.stdout.count("slot already taken") == 3
    runs = kube.custom.list_namespaced_custom_object(
        "kopflow.dev", "v1alpha1", kube.ns, "workflowruns"
    )["items"]
    assert len(runs) == 3
    for run in runs:
        name, spec = run["metadata"]["name"], run["spec"]
        assert name.startswith("daily-") and name.endswith("-0300"), name
        assert spec["scheduledTime"][11:19] == "03:00:00" and spec["workflowRef"]["name"] == "daily"
        assert run["metadata"]["labels"]["kopflow.dev/slot"] == name[len("daily-") :]
        assert run["metadata"]["ownerReferences"][0]["kind"] == "Workflow"
    too_many = backfill(cluster, "daily", "--from", start, "--to", to, "--max", "2")
    assert too_many.returncode == 2 and "--max" in too_many.stderr
    future = backfill(cluster, "daily", "--from", start, "--to", "2999-01-01T00:00:00Z")
    assert future.returncode == 2 and "--to" in future.stderr
