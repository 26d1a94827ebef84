"""Benchmark: `kopflow run` overhead against plain Python spawning the same processes.

200 trivial tasks (`true`) as a fan-out/fan-in DAG (start -> 198 parallel -> end) at
parallelism 8, run through the local runner in-process; then the same 200 processes spawned by
asyncio with a semaphore of 8, each with its output in a log file and its own environment
(the inherited one plus the four KOPFLOW_* variables), as kopflow gives every task: the ratio
is the orchestration's cost, not the price of logs and env. Prints both wall times (best of
five; the machine is shared) and the ratio (target <= 1.3).

    .venv/bin/python tests/bench/bench_local.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from kopflow.api.workflow import WorkflowSpec
from kopflow.executors.display import PlainDisplay
from kopflow.executors.local import LocalRun, RunOptions

TASKS = 200
PARALLELISM = 8


def spec() -> WorkflowSpec:
    true = shutil.which("true") or "/bin/true"
    middle = [
        {"name": f"t{i}", "command": [true], "dependsOn": ["start"]} for i in range(TASKS - 2)
    ]
    return WorkflowSpec.model_validate(
        {
            "parallelism": PARALLELISM,
            "tasks": [
                {"name": "start", "command": [true]},
                *middle,
                {"name": "end", "command": [true], "dependsOn": [m["name"] for m in middle]},
            ],
        }
    )


class Quiet(PlainDisplay):
    def __init__(self) -> None:
        super().__init__(open("/dev/null", "w"))  # noqa: SIM115 - lives as long as the run


async def kopflow_time(workdir: Path) -> float:
    options = RunOptions(cache_dir=workdir / "cache", logs_dir=workdir / "logs")
    run = LocalRun("bench", spec(), {}, options, Quiet())
    started = time.perf_counter()
    status = await run.run()
    elapsed = time.perf_counter() - started
    assert status.phase == "Succeeded", status.message
    return elapsed


async def plain_time(workdir: Path) -> float:
    true = shutil.which("true") or "/bin/true"
    gate = asyncio.Semaphore(PARALLELISM)
    workdir.mkdir(parents=True, exist_ok=True)

    async def one(i: int) -> None:
        async with gate:
            with (workdir / f"{i}.log").open("wb") as log:
                env = {
                    **os.environ,
                    "KOPFLOW_RUN": "bench",
                    "KOPFLOW_TASK": f"t{i}",
                    "KOPFLOW_ATTEMPT": "1",
                    "KOPFLOW_OUTPUTS": str(workdir / f"{i}.out"),
                }
                proc = await asyncio.create_subprocess_exec(
                    true, stdout=log, stderr=log, env=env, start_new_session=True
                )
            await proc.wait()

    started = time.perf_counter()
    await one(0)
    await asyncio.gather(*(one(i) for i in range(1, TASKS - 1)))
    await one(TASKS - 1)
    return time.perf_counter() - started


def main() -> int:
    k = p = float("inf")
    for _ in range(5):
        with tempfile.TemporaryDirectory() as tmp:
            k = min(k, asyncio.run(kopflow_time(Path(tmp))))
            p = min(p, asyncio.run(plain_time(Path(tmp) / "plain")))
    print(f"tasks={TASKS} parallelism={PARALLELISM}")
    print(f"kopflow run:  {k:.3f} s  ({k / TASKS * 1000:.2f} ms/task)")
    print(f"plain python: {p:.3f} s  ({p / TASKS * 1000:.2f} ms/task)")
    print(f"ratio:        {k / p:.2f}  (target <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
