"""Benchmark: how fast `kopflow` starts (target: under 0.3 s for --help and validate).

Runs each command as a whole process RUNS times and prints the median and best wall time and
the least CPU time (user + system: what the process itself costs, which other load on a shared
machine inflates less than wall time), then the slowest imports of `kopflow validate`
(`python -X importtime`), so a new eager import shows up here first. The cluster commands
(get, list, submit...) also import kubernetes_asyncio: their start-up is shown for reference.

    .venv/bin/python tests/bench/bench_cli.py
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUNS = 9
TARGET = 0.3
COMMANDS = {
    "kopflow --help": [str(BIN / "kopflow"), "--help"],
    "kopflow validate examples/etl.yaml": [str(BIN / "kopflow"), "validate", "examples/etl.yaml"],
    "kopflow get --help (cluster command)": [str(BIN / "kopflow"), "get", "--help"],
    "import kopflow.cliclient (kubernetes_asyncio)": [
        sys.executable,
        "-c",
        "import kopflow.cliclient",
    ],
}


def measure(argv: list[str]) -> tuple[float, float, float]:
    """(median wall, best wall, least CPU) seconds over RUNS runs."""
    walls, cpus = [], []
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, check=False, timeout=60)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        assert done.returncode == 0, done.stderr.decode()
    return statistics.median(walls), min(walls), min(cpus)


def slowest_imports(count: int = 12) -> list[tuple[int, str]]:
    """(own microseconds, module) of the slowest imports of `kopflow validate`: the module's
    own execution, without what it imports."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kopflow", "validate", "examples/etl.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, _, name = line[len("import time:") :].split("|")
        rows.append((int(own), name.strip()))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {RUNS} runs each")
    for label, argv in COMMANDS.items():
        median, best, cpu = measure(argv)
        verdict = "ok" if median < TARGET else f"over {TARGET}s"
        if "cluster" in label or "import" in label:
            verdict = "(no target)"
        print(f"{label:<48} median {median:.3f}s  best {best:.3f}s  cpu {cpu:.3f}s  {verdict}")
    print("slowest imports of `kopflow validate` (own time, children excluded):")
    for micros, name in slowest_imports():
        print(f"  {micros / 1e6:.3f}s  {name}")


if __name__ == "__main__":
    main()
