"""Kill the operator at many points of many runs: every run still finishes correctly, no Job
is created twice, and no attempt is lost."""

from __future__ import annotations

import random
from typing import Any

from tests.integration.operator.conftest import Kube, Operator

PY = "python3"
RUNS_PER_WAVE = 3
WAVES = 6
KILLS = 20


def workflow() -> dict[str, Any]:
    write = "import os; open(os.environ['KOPFLOW_OUTPUTS'], 'w').write('x=' + os.environ['V'])"
    return {
        "apiVersion": "kopflow.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "sturdy"},
        "spec": {
            "taskDefaults": {"image": "python:3.12-slim"},
            "parameters": [{"name": "v"}],
            "tasks": [
                {
                    "name": "a",
                    "outputs": ["x"],
                    "env": [{"name": "V", "value": "{{ params.v }}"}],
                    "command": [PY, "-c", "import time; time.sleep(1.0); " + write],
                },
                {
                    "name": "b",
                    "dependsOn": ["a"],
                    "outputs": ["x"],
                    "env": [{"name": "V", "value": "{{ tasks.a.outputs.x }}b"}],
                    "command": [PY, "-c", write],
                },
                {
                    "name": "c",
                    "dependsOn": ["a"],
                    "command": [PY, "-c", "import time; time.sleep(1.5)"],
                },
                {
                    "name": "flaky",
                    "dependsOn": ["a"],
                    "retry": {"limit": 2, "backoff": {"seconds": 2}},
                    "command": [
                        PY,
                        "-c",
                        "import os, sys; sys.exit(int(os.environ['KOPFLOW_ATTEMPT']) < 2)",
                    ],
                },
                {
                    "name": "d",
                    "dependsOn": ["b", "c", "flaky"],
                    "outputs": ["x"],
                    "env": [{"name": "V", "value": "{{ tasks.b.outputs.x }}d"}],
                    "command": [PY, "-c", write],
                },
            ],
        },
    }


def progress(kube: Kube) -> int:
    """A number that grows with every step of every run: Jobs created plus tasks finished."""
    done = 0
    for run in kube.watched_runs():
        for task in ((run.get("status") or {}).get("tasks") or {}).values():
            done += task.get("phase") in ("Succeeded", "Failed", "Retrying")
    return sum(kube.created_jobs.values()) + done


def test_operator_killed_twenty_times_loses_nothing(operator: Operator, kube: Kube) -> None:
    rng = random.Random(20261128)
    kube.create(workflow())
    names: list[str] = []
    kills = 0
    for wave in range(WAVES):
        for i in range(RUNS_PER_WAVE):
            name = f"sturdy-{wave}-{i}"
            names.append(name)
            kube.run_ref(name, "sturdy", v=name)
        last = progress(kube)
        while kills < KILLS:
            target = last + rng.randint(1, 2)
            try:
                kube.wait(lambda goal=target: progress(kube) >= goal, 8, "progress")
            except TimeoutError:
                break  # this wave has finished: start the next one
            operator.kill()
            kills += 1
            operator.start()
            last = progress(kube)
        if kills >= KILLS:
            break
    assert kills == KILLS
    for name in names:
        run = kube.wait_run(name, timeout=90)
        status = run["status"]
        assert status["phase"] == "Succeeded", status.get("message")
        tasks = status["tasks"]
        assert tasks["d"]["outputs"] == {"x": f"{name}bd"}
        assert tasks["flaky"]["attempts"] == 2
        for task, t in tasks.items():
            jobs = [n for n in kube.created_jobs if n.startswith(f"{name}-{task}-")]
            assert len(jobs) == t["attempts"], (task, jobs, t)
    twice = {n: c for n, c in kube.created_jobs.items() if c > 1}
    assert twice == {}
    assert operator.starts == kills + 1
