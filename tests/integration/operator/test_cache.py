"""The task cache on a cluster: expired entries are deleted by the operator (a bounded number
a minute), and users see and clear entries with `kopflow cache list|clear`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException
from tests.integration.operator.conftest import Cluster, Kube, Operator

from kopflow.controller.kube import CACHE_LABEL, CACHE_PREFIX
from kopflow.engine.times import format_time


def cache_entry(kube: Kube, key: str, expires: datetime, workflow: str = "", task: str = "") -> str:
    """A cache ConfigMap as the operator writes it; its name."""
    labels = {CACHE_LABEL: "true", "app.kubernetes.io/managed-by": "kopflow"}
    if workflow:
        labels |= {"kopflow.dev/workflow": workflow, "kopflow.dev/task": task}
    name = CACHE_PREFIX + key
    data = {"outputs": json.dumps({"rows": "3"}), "expiresAt": format_time(expires)}
    kube.core.create_namespaced_config_map(
        kube.ns, {"metadata": {"name": name, "labels": labels}, "data": data}
    )
    return name


def expired_entry(kube: Kube, key: str) -> str:
    return cache_entry(kube, key, datetime.now(UTC) - timedelta(hours=1))


def entry_exists(kube: Kube, name: str) -> bool:
    try:
        kube.core.read_namespaced_config_map(name, kube.ns)
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def test_the_operator_deletes_expired_cache_entries_and_keeps_fresh_ones(
    cluster: Cluster, kube: Kube, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    stale = [cache_entry(kube, f"{i:064x}", now - timedelta(minutes=i + 1)) for i in range(3)]
    fresh = cache_entry(kube, "f" * 64, now + timedelta(hours=1))
    configmaps = kube.cache.informer(kube.core.list_namespaced_config_map, kube.ns)
    # at most 2 a minute: two of the three go in the first pass, the longest expired first
    op = Operator(
        cluster, tmp_path / "operator.log", "--cache-gc-interval", "1", "--cache-gc-per-minute", "2"
    )
    op.start()
    try:
        kube.wait(
            lambda: stale[2] not in configmaps.items and stale[1] not in configmaps.items,
            30,
            "the two longest expired entries deleted",
        )
        assert stale[0] in configmaps.items and fresh in configmaps.items  # the budget; fresh
        assert "kopflow_cache_entries_expired_deleted_total 2.0" in op.metrics()
    finally:
        op.stop()
    assert entry_exists(kube, fresh)


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`kopflow cache ...` as a user runs it, with the admin kubeconfig."""
    return subprocess.run(
        [sys.executable, "-m", "kopflow", "cache", *args],
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cache_list_shows_entries_and_clear_deletes_one_workflows_only(
    operator: Operator, kube: Kube
) -> None:
    kube.create_file("etl.yaml")
    first = kube.run_ref("first", "etl", date="2026-03-01")
    assert kube.wait_run(first["metadata"]["name"])["status"]["phase"] == "Succeeded"
    other = cache_entry(kube, "e" * 64, datetime.now(UTC) + timedelta(hours=1), "other", "t")
    config = ["--kubeconfig", str(kube.cluster.admin_kubeconfig), "-n", kube.ns]

    listed = cli(kube.cluster, "list", *config, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    entries: list[dict[str, Any]] = json.loads(listed.stdout)
    mine = [e for e in entries if e["workflow"] == "etl"]
    assert {e["task"] for e in mine} >= {"extract"}  # stored by the operator, labelled
    assert all(not e["expired"] and e["outputs"] for e in mine)
    assert any(e["name"] == other and e["workflow"] == "other" for e in entries)
    table = cli(kube.cluster, "list", *config, "--workflow", "etl")
    assert table.stdout.splitlines()[0].split() == ["WORKFLOW", "TASK", "EXPIRES", "OUTPUTS"]
    assert {line.split()[0] for line in table.stdout.splitlines()[1:]} == {"etl"}

    refused = cli(kube.cluster, "clear", *config, "--workflow", "etl")  # no terminal, no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr
    cleared = cli(kube.cluster, "clear", *config, "--workflow", "etl", "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert f"deleted {len(mine)} cache entr" in cleared.stdout
    left = json.loads(cli(kube.cluster, "list", *config, "-o", "json").stdout)
    assert [e["name"] for e in left] == [other]
