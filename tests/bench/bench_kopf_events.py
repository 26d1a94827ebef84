"""What kopf spends per WorkflowRun event on its diff base, by run size, with kopf's default
storage and with kopflow's (controller/kopf_tuning.py: none).

kopf builds the "essence" of every object on every event it processes (a deep copy of the whole
body, status included, before dropping the status) and reads the stored one, whether or not a
handler needs it; kopflow registers only event handlers, so none does. The runs measured are
real WorkflowRun bodies with the status the engine writes once every task has succeeded.

    python tests/bench/bench_kopf_events.py
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from kopflow.api.run import WorkflowRun
from kopflow.api.workflow import WorkflowSpec
from kopflow.controller.kopf_tuning import NoDiffBase
from kopflow.engine.observations import Observation
from kopflow.engine.reconcile import reconcile
from kopflow.engine.state import RunState, jobs_to_observe


def finished_run(tasks: int) -> dict[str, Any]:
    """A WorkflowRun body of a chain-ish DAG of `tasks` tasks, all succeeded."""
    spec = WorkflowSpec.model_validate(
        {
            "tasks": [
                {
                    "name": f"task-{i:04d}",
                    "image": "python:3.12-slim",
                    "command": ["python3", "-m", "etl.step"],
                    "args": ["--part", str(i)],
                    **({"dependsOn": [f"task-{i - 1:04d}"]} if i % 50 else {}),
                }
                for i in range(tasks)
            ]
        }
    )
    status, now = None, datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    for _ in range(200):
        state = RunState("a-run", "data", spec, {}, status)
        obs = {
            j: Observation("succeeded", 0, "Completed", None, "", now, now)
            for j in jobs_to_observe(status)
        }
        decision = reconcile(state, obs, {}, now)
        status = decision.status
        if decision.finished:
            break
    run = WorkflowRun.model_validate(
        {"metadata": {"name": "a-run", "namespace": "data", "annotations": {"a": "b"}},
         "spec": {"workflowRef": {"name": "wf"}}}
    )  # fmt: skip
    body = run.model_dump(by_alias=True, exclude_none=True, mode="json")
    body["status"] = status.dump() if status else {}
    return body


def per_event(storage: kopf.DiffBaseStorage, body: dict[str, Any], rounds: int) -> float:
    """µs of CPU for what kopf's _detect_causes does with the diff base, once."""
    wrapped = kopf.Body(body)
    started = time.process_time()
    for _ in range(rounds):
        storage.fetch(body=wrapped)
        storage.build(body=wrapped, extra_fields=set())
    return (time.process_time() - started) / rounds * 1e6


def main() -> None:
    print(f"{'run':>11} {'body KiB':>9} {'kopf default µs':>16} {'kopflow µs':>11}")
    for tasks in (10, 100, 2000):
        body = finished_run(tasks)
        size = len(str(body)) / 1024
        rounds = max(5, 20_000 // tasks)
        default = per_event(kopf.AnnotationsDiffBaseStorage(), body, rounds)
        tuned = per_event(NoDiffBase(), body, rounds)
        print(f"{tasks:5} tasks {size:9.0f} {default:16.0f} {tuned:11.1f}")


if __name__ == "__main__":
    main()
