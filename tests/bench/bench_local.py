"""Benchmark: `kopflow run` overhead against plain Python spawning the same processes.

200 trivial tasks (`true`) as a fan-out/fan-in DAG (start -> 198 parallel -> end) at
parallelism 8, run through the local runner in-process; then the same 200 processes spawned by
asyncio with a semaphore of 8. Prints both wall times and the ratio (target <= 1.3).

    .venv/bin/python tests/bench/bench_local.py
"""

from __future__ import annotations

import asyncio
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


async def plain_time() -> float:
    true = shutil.which("true") or "/bin/true"
    gate = asyncio.Semaphore(PARALLELISM)

    async def one() -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec(true, start_new_session=True)
            await proc.wait()

    started = time.perf_counter()
    await one()
    await asyncio.gather(*(one() for _ in range(TASKS - 2)))
    await one()
    return time.perf_counter() - started


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        k = asyncio.run(kopflow_time(Path(tmp)))
    p = asyncio.run(plain_time())
    print(f"tasks={TASKS} parallelism={PARALLELISM}")
    print(f"kopflow run:  {k:.3f} s  ({k / TASKS * 1000:.2f} ms/task)")
    print(f"plain python: {p:.3f} s  ({p / TASKS * 1000:.2f} ms/task)")
    print(f"ratio:        {k / p:.2f}  (target <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
