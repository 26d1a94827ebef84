"""Outputs over a run's inline budget live in ConfigMaps the run owns, templating reads them
back, and they go when the run goes (issue 12). On both backends; the operator runs with a
2 KiB inline budget (KOPFLOW_INLINE_OUTPUTS_BYTES) so that 30 tasks of 4 KiB spill."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.operator.conftest import Cluster, Kube, Operator

PRODUCERS = 30
WRITE = (
    "import os; t = os.environ['KOPFLOW_TASK']; "
    "open(os.environ['KOPFLOW_OUTPUTS'], 'w').write("
    "''.join(f'part{k}=' + (t + str(k)).ljust(1000, 'x') + '\\n' for k in range(4)))"
)
CHECK = "import os, sys; sys.exit(0 if os.environ['GOT'] == 'p-072'.ljust(1000, 'x') else 3)"


@pytest.fixture
def small_budget_operator(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Operator]:
    monkeypatch.setenv("KOPFLOW_INLINE_OUTPUTS_BYTES", "2048")
    op = Operator(cluster, tmp_path / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()
        if op.log.exists():
            print(op.log.read_text()[-20000:])


def workflow() -> dict[str, Any]:
    producers = [
        {"name": f"p-{i:02d}", "outputs": [f"part{k}" for k in range(4)],
         "command": ["python3", "-c", WRITE]}
        for i in range(PRODUCERS)
    ]  # fmt: skip
    consumer = {
        "name": "consumer",
        "dependsOn": [p["name"] for p in producers],
        "env": [{"name": "GOT", "value": "{{ tasks.p-07.outputs.part2 }}"}],
        "command": ["python3", "-c", CHECK],
    }
    return {
        "apiVersion": "kopflow.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wide"},
        "spec": {"taskDefaults": {"image": "python:3.12-slim"}, "parallelism": 10,
                 "tasks": [*producers, consumer]},
    }  # fmt: skip


def test_large_outputs_spill_to_owned_configmaps_and_resolve_downstream(
    small_budget_operator: Operator, kube: Kube
) -> None:
    configmaps = kube.cache.informer(kube.core.list_namespaced_config_map, kube.ns)
    kube.create(workflow())
    kube.run_ref("wide-1", "wide")

    def spilled_p07() -> bool:
        run = next((r for r in kube.watched_runs() if r["metadata"]["name"] == "wide-1"), {})
        return "outputsShard" in ((run.get("status") or {}).get("tasks") or {}).get("p-07", {})

    kube.wait(spilled_p07, 60, "p-07's outputs in a shard")
    # a restarted operator reads the shards back: the consumer still gets p-07's output
    small_budget_operator.kill()
    small_budget_operator.start()
    run = kube.wait_run("wide-1", timeout=120)
    status = run["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    assert "workflow" not in status  # the spec is pinned once, in the run's own ConfigMap
    tasks = status["tasks"]
    spilled = [n for n, t in tasks.items() if "outputsShard" in t]
    assert len(spilled) == PRODUCERS
    assert not any("outputs" in t for t in tasks.values())  # 4 KiB > the 2 KiB budget
    assert len(json.dumps(run).encode()) < 40 * 1024

    uid = run["metadata"]["uid"]
    cms = {
        c.metadata.name: c
        for c in kube.core.list_namespaced_config_map(
            kube.ns, label_selector="kopflow.dev/run=wide-1"
        ).items
    }
    assert set(cms) == {*status["outputShards"], status["workflowSnapshot"]["configMap"]}
    assert all(c.metadata.owner_references[0].uid == uid for c in cms.values())
    shard = cms[status["outputShards"][tasks["p-07"]["outputsShard"]]]
    assert json.loads(shard.data["p-07"])["part2"] == "p-072".ljust(1000, "x")

    kube.custom.delete_namespaced_custom_object(
        "kopflow.dev", "v1alpha1", kube.ns, "workflowruns", "wide-1"
    )

    # the real garbage collector may need 30 s to learn of a new CRD kind
    kube.wait(lambda: not set(cms) & set(configmaps.items), 60, "the run's ConfigMaps deleted")
