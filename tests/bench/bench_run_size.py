"""The size of a WorkflowRun object with 2,000 and 5,000 tasks, each writing 4 KiB of outputs.

    .venv/bin/python tests/bench/bench_run_size.py

The engine drives an ordinary DAG (20 layers, each task reading two of the layer before; one
task in ten fails once and is retried) to Succeeded. Printed per size: the status as the engine
holds it (every output inline, as before issue 12), and as the operator writes it (outputs over
the inline budget in `<run>-outputs-<n>` ConfigMaps), in bytes and bytes per task, and the
shards. The object on a real server adds its metadata and a few hundred bytes of
managedFields (status.tasks is an atomic map); tests/integration/real/test_run_size_real.py
measures that one.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from kopflow.api.run import WorkflowRef, WorkflowRun, WorkflowRunSpec, WorkflowRunStatus
from kopflow.api.workflow import ObjectMeta, WorkflowSpec
from kopflow.engine import Observation, RunState, reconcile
from kopflow.engine.spill import Budget, plan_spill, stored

SIZES = (2_000, 5_000)
LAYERS = 20
T0 = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
NAME = "daily-etl-28469100"


def outputs_text(task: str) -> str:
    """4 outputs of 1,000 bytes: the most a task may write (4 KiB)."""
    return "\n".join(f"part{k}=" + f"{task}{k}".ljust(1000, "x") for k in range(4))


def spec(n: int) -> WorkflowSpec:
    width = n // LAYERS
    tasks = []
    for layer in range(LAYERS):
        for i in range(width):
            task: dict[str, object] = {
                "name": f"l{layer:02d}-part-{i:03d}",
                "command": ["python", "-m", "etl.step"],
                "args": ["--part", str(i)],
                "outputs": [f"part{k}" for k in range(4)],
            }
            if layer:
                task["dependsOn"] = [
                    f"l{layer - 1:02d}-part-{i:03d}",
                    f"l{layer - 1:02d}-part-{(i + 1) % width:03d}",
                ]
            tasks.append(task)
    return WorkflowSpec.model_validate(
        {"taskDefaults": {"image": "python:3.12-slim", "retry": {"limit": 2}}, "tasks": tasks}
    )


def finished(n: int) -> WorkflowRunStatus:
    workflow = spec(n)
    state = RunState(NAME, "data", workflow, uid="0e7d9a52-5c1f-4b7e-9a51-3f0c2d7e8b11")
    now = T0
    for _ in range(200):
        seen = {}
        for name, task in (state.status.tasks or {}).items() if state.status else ():
            if task.phase != "Running" or not task.job_name:
                continue
            if name.endswith("0") and task.attempts == 1:  # one task in ten fails once
                seen[task.job_name] = Observation("failed", exit_code=1, reason="Error")
            else:
                text = outputs_text(name)
                seen[task.job_name] = Observation("succeeded", exit_code=0, outputs=text)
        decision = reconcile(state, seen, {}, now)
        state = RunState(NAME, "data", workflow, status=decision.status, uid=state.uid)
        if decision.finished:
            break
        now += timedelta(seconds=40)
    assert state.status is not None and state.status.phase == "Succeeded"
    return state.status


def size(status: WorkflowRunStatus) -> int:
    run = WorkflowRun(
        metadata=ObjectMeta(name=NAME, namespace="data"),
        spec=WorkflowRunSpec(workflow_ref=WorkflowRef(name="daily-etl")),
        status=status,
    )
    return len(json.dumps(run.dump(), separators=(",", ":")).encode())


def main() -> None:
    print(f"{'tasks':>6} {'all inline':>12} {'per task':>9} {'written':>9} {'per task':>9} shards")
    for n in SIZES:
        status = finished(n)
        started = time.perf_counter()
        spill = plan_spill(NAME, status, None, Budget(), n)
        ms = (time.perf_counter() - started) * 1000
        inline, written = size(status), size(stored(spill.status))
        print(
            f"{n:>6} {inline:>12,} {inline / n:>9.0f} {written:>9,} {written / n:>9.0f} "
            f"{len(spill.writes):>6} (planned in {ms:.0f} ms)"
        )


if __name__ == "__main__":
    main()
