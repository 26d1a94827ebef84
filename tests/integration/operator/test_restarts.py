"""Kill the operator at many points of many runs (on the emulator also with 10 % of its API
requests failing and some Jobs refused): every run still ends in its expected phase, no Job
is created twice, no attempt is lost, and no task ever runs twice at once."""

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


BAD_TOLERATION = [{"key": "a", "operator": "Sometimes", "effect": "NoSchedule"}]
"""Invalid: the real server refuses the Job (422)."""


def doomed() -> dict[str, Any]:
    """A workflow whose only task's Jobs are refused: by the real server (invalid), by the
    emulator (a webhook-style denial of Jobs that mention `doomed`)."""
    return {
        "apiVersion": "kopflow.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "doomed"},
        "spec": {
            "taskDefaults": {"image": "python:3.12-slim"},
            "tasks": [
                {
                    "name": "doomed",
                    "retry": {"limit": 1, "backoff": {"seconds": 1}},
                    "tolerations": BAD_TOLERATION,
                    "command": [PY, "-c", "pass"],
                }
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
    kube.create(doomed())
    emulated = kube.cluster.emulator is not None
    if emulated:
        kube.server.faults.configure(
            seed=11,
            conflict=0.025,
            error=0.025,
            throttle=0.025,
            slow=0.025,
            delay=0.3,
            deny=1.0,
            deny_match='"kopflow.dev/task":"doomed"',
            user_agent="kopf",  # the operator's requests; not the test's
        )
    refused = [kube.run_ref(f"doomed-{i}", "doomed")["metadata"]["name"] for i in range(3)]
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
    # a refused Job is never stored: one that was would run, and its task succeed
    assert [n for n in kube.created_jobs if n.startswith("doomed-")] == []
    for name in refused:
        status = kube.wait_run(name, timeout=60)["status"]
        doomed_task = status["tasks"]["doomed"]
        assert (status["phase"], doomed_task.get("reason")) == ("Failed", "JobRejected"), status
        # a webhook's 403 is retried, an invalid Job (422) is not
        assert status["tasks"]["doomed"]["attempts"] == (2 if emulated else 1)
    if emulated:
        assert kube.server.faults.injected["deny"] >= 6, kube.server.faults.injected
        assert sum(kube.server.faults.injected.values()) >= 20, kube.server.faults.injected
    spans = kube.attempt_spans()
    assert sum(len(s) for s in spans.values()) >= 6 * len(names)  # the record is complete
    assert kube.overlapping_attempts() == []
    assert operator.starts == kills + 1
