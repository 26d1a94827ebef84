"""A 2,000-task WorkflowRun must stay well under etcd's object limit (1.5 MiB).

Argo and Tekton runs of that size get stuck because their status outgrows one object; this
drives a realistic run to the end through the engine (some tasks retried, every task with an
output) and measures the whole serialized resource.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from kopflow.api.run import WorkflowRef, WorkflowRun, WorkflowRunSpec
from kopflow.api.workflow import ObjectMeta, WorkflowSpec
from kopflow.engine import Observation, RunState, reconcile

LIMIT = 1024 * 1024
T0 = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def ordinary_spec(layers: int = 20, width: int = 100) -> WorkflowSpec:
    """An ETL-like DAG: each task reads two tasks of the previous layer."""
    tasks = []
    for layer in range(layers):
        for i in range(width):
            task: dict[str, object] = {
                "name": f"l{layer:02d}-part-{i:03d}",
                "command": ["python", "-m", "etl.step"],
                "args": ["--date", "{{ params.date }}", "--part", str(i)],
                "outputs": ["rows"],
            }
            if layer:
                task["dependsOn"] = [
                    f"l{layer - 1:02d}-part-{i:03d}",
                    f"l{layer - 1:02d}-part-{(i + 1) % width:03d}",
                ]
            tasks.append(task)
    return WorkflowSpec.model_validate(
        {
            "parameters": [{"name": "date", "default": "{{ schedule.date }}"}],
            "taskDefaults": {"image": "python:3.12-slim", "retry": {"limit": 2}},
            "tasks": tasks,
        }
    )


def finished_run() -> WorkflowRun:
    spec = ordinary_spec()
    run = WorkflowRun(
        metadata=ObjectMeta(name="daily-etl-28469100", namespace="data"),
        spec=WorkflowRunSpec(workflow_ref=WorkflowRef(name="daily-etl")),
    )
    state = RunState("daily-etl-28469100", "data", spec, {"date": "2026-11-28"})
    now = T0
    for _ in range(200):
        observations = {}
        running = state.status.tasks or {} if state.status else {}
        for name, task in running.items():
            if task.phase != "Running" or not task.job_name:
                continue
            job = task.job_name
            flaky = name.endswith("0") and task.attempts == 1  # one task in ten fails once
            observations[job] = (
                Observation("failed", exit_code=1, reason="Error", finished_at=now)
                if flaky
                else Observation("succeeded", exit_code=0, outputs="rows=123456", finished_at=now)
            )
        decision = reconcile(state, observations, {}, now)
        state = RunState(state.name, state.namespace, spec, state.parameters, decision.status)
        if decision.finished:
            break
        now += timedelta(seconds=40)
    run.status = state.status
    return run


def test_a_2000_task_run_serializes_under_1_mib() -> None:
    run = finished_run()
    assert run.status is not None and run.status.phase == "Succeeded"
    assert run.status.progress == "2000/2000"
    retried = [t for t in (run.status.tasks or {}).values() if t.attempts == 2]
    assert len(retried) == 200
    size = len(json.dumps(run.dump(), separators=(",", ":")).encode())
    print(f"2,000-task WorkflowRun: {size} bytes")
    # 831 KB when the status also held a snapshot of the spec and every task its job name and
    # exit code; a 5,000-task run must fit too (tests/integration/real/test_run_size_real.py)
    assert "workflow" not in run.dump()["status"]
    assert size < LIMIT // 2, f"{size} bytes"
