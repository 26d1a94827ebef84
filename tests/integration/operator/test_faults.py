"""With 10% of the operator's requests failing (409, 500, 429, slow, dropped watches), runs
still finish correctly."""

from __future__ import annotations

import pytest
from tests.integration.operator.conftest import Kube, Operator


@pytest.mark.emulator_only("fault injection lives in the emulator")
def test_runs_finish_correctly_under_injected_faults(operator: Operator, kube: Kube) -> None:
    kube.server.faults.configure(
        seed=7,
        conflict=0.025,
        error=0.025,
        throttle=0.025,
        slow=0.025,
        drop_watch=0.10,
        delay=0.3,
        drop_after=1.0,
        user_agent="kopf",  # kopf's watches and kopflow's own client; not the test's
    )
    kube.create_file("etl.yaml")
    kube.create_file("flaky.yaml")
    runs = []
    for i in range(3):
        (etl,) = kube.create_file("etl-run.yaml")
        runs.append(etl["metadata"]["name"])
        flaky = kube.run_ref(f"flaky-{i}", "flaky")
        runs.append(flaky["metadata"]["name"])
    for name in runs:
        status = kube.wait_run(name, timeout=120)["status"]
        assert status["phase"] == "Succeeded", (name, status.get("message"))
        if name.startswith("flaky"):
            assert status["tasks"]["unreliable"]["attempts"] == 3
        else:
            tasks = status["tasks"]
            assert "outputs" in tasks["extract"], (name, tasks)
            assert tasks["clean"]["outputs"]["rows"] == str(
                int(tasks["extract"]["outputs"]["rows"]) * 9 // 10
            )
    injected = kube.server.faults.injected
    assert sum(injected.values()) >= 10, injected
    assert {n: c for n, c in kube.created_jobs.items() if c > 1} == {}
    assert kube.overlapping_attempts() == []
