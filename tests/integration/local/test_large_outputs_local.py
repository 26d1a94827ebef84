"""`kopflow run` with the outputs that overflow a run object on a cluster (issue 12): 30 tasks
of 4 KiB each, read downstream through templating. There is no etcd here, so they stay in the
status; the same engine code path must carry them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from tests.integration.local.test_kopflow_run import kopflow_run, status_of
from tests.integration.operator.test_large_outputs import PRODUCERS, workflow


def test_kopflow_run_passes_4_kib_outputs_of_30_tasks_downstream(tmp_path: Path) -> None:
    doc = workflow()
    doc["spec"]["parallelism"] = 4
    path = tmp_path / "wide.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = kopflow_run(tmp_path, str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    status = status_of(result)
    assert status["phase"] == "Succeeded"
    tasks = status["tasks"]
    assert tasks["consumer"]["phase"] == "Succeeded"  # it exits 3 unless GOT is p-07's part2
    outputs = [t["outputs"] for n, t in tasks.items() if n != "consumer"]
    assert len(outputs) == PRODUCERS
    assert all(len(json.dumps(o)) > 4000 for o in outputs)
