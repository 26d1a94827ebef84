"""How long one reconcile takes after one observation changes, for 100, 1,000 and 5,000 tasks.

    .venv/bin/python tests/bench/bench_engine.py

The workflow is ten layers, each task reading two tasks of the layer before. The first layer has
succeeded, the whole second layer is running, and one of its attempts has just succeeded: the
call the operator makes on that Job event. The cost must grow linearly with the number of tasks
(a quadratic engine would take 50x50 = 2,500 times longer at 5,000 tasks than at 100).
"""

from __future__ import annotations

import math
import statistics
import time
from datetime import UTC, datetime, timedelta

from kopflow.api.workflow import Task, TaskDefaults, WorkflowSpec
from kopflow.engine import Observation, RunState, jobs_to_observe, reconcile

SIZES = (100, 1_000, 5_000)
LAYERS = 10
T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def layered_spec(n: int) -> WorkflowSpec:
    """n ordinary tasks in ten layers (built without the 2,000-task schema limit)."""
    width = n // LAYERS
    tasks = []
    for layer in range(LAYERS):
        for i in range(width):
            deps = []
            if layer:
                deps = [f"l{layer - 1}-t{i}", f"l{layer - 1}-t{(i + 1) % width}"]
            tasks.append(
                Task(
                    name=f"l{layer}-t{i}",
                    command=["python", "-m", "step"],
                    args=["--date", "{{ params.date }}", "--part", str(i)],
                    depends_on=deps or None,
                    outputs=["rows"],
                )
            )
    return WorkflowSpec.model_construct(
        tasks=tasks,
        task_defaults=TaskDefaults(image="python:3.12-slim"),
        parameters=None,
    )


def prepared(n: int) -> tuple[RunState, dict[str, Observation], datetime]:
    """The state just after one second-layer attempt succeeded."""
    spec = layered_spec(n)
    state = RunState("bench", "default", spec, {"date": "2026-11-28"})
    first = reconcile(state, {}, {}, T0)
    state = RunState("bench", "default", spec, {"date": "2026-11-28"}, status=first.status)
    done = Observation("succeeded", 0, outputs="rows=1", finished_at=T0 + timedelta(seconds=5))
    second = reconcile(state, dict.fromkeys(jobs_to_observe(state.status), done), {}, T0)
    state = RunState("bench", "default", spec, {"date": "2026-11-28"}, status=second.status)
    running = jobs_to_observe(state.status)
    observations = dict.fromkeys(running, Observation("running", started_at=T0))
    observations[running[0]] = Observation("succeeded", 0, outputs="rows=7", finished_at=T0)
    return state, observations, T0 + timedelta(seconds=20)


def time_one(n: int, repeats: int) -> float:
    """Median seconds of one reconcile over `repeats` identical calls (it is pure)."""
    state, observations, now = prepared(n)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        decision = reconcile(state, observations, {}, now)
        samples.append(time.perf_counter() - start)
    assert decision.changed and not decision.launches  # its dependents still wait
    return statistics.median(samples)


def main() -> None:
    print(f"{'tasks':>6}  {'per reconcile':>14}  {'per task':>9}")
    results = {}
    for n in SIZES:
        seconds = time_one(n, repeats=max(5, 20_000 // n))
        results[n] = seconds
        print(f"{n:>6}  {seconds * 1000:>11.2f} ms  {seconds / n * 1e6:>6.2f} us")
    small, large = SIZES[0], SIZES[-1]
    ratio = results[large] / results[small]
    exponent = math.log(ratio) / math.log(large / small)
    verdict = "linear" if exponent < 1.25 else "SUPERLINEAR"
    print(
        f"{large // small}x the tasks -> {ratio:.1f}x the time "
        f"(growth exponent {exponent:.2f}; 1 = linear, 2 = quadratic): {verdict}"
    )


if __name__ == "__main__":
    main()
