"""Benchmark: how fast `kopflow` starts (target: under 0.3 s wall for --help and validate).

Runs each command as a whole process RUNS times (env KOPFLOW_BENCH_RUNS, default 15) and prints
the median and best wall time and the least CPU time (user + system: what the process itself
costs, which other load on a shared machine inflates less than wall time), each against the
target, then the slowest imports of `kopflow validate` (`python -X importtime`), so a new eager
import shows up here first. The cluster commands (get, list, submit...) also import
kubernetes_asyncio: their start-up is shown for reference, as is a workflow with pod templates
(their models are built only when a document has one).

Measured as an installed kopflow runs: with its bytecode cached (pip compiles it on install).
PYTHONDONTWRITEBYTECODE is dropped for the runs and one warm-up run writes the cache (a
checkout never run without that variable compiles kopflow's sources on every run: ~0.05 s).

Wall and CPU time depend on what else the machine runs (2 cores shared by several agents). With
KOPFLOW_BENCH_VALGRIND=1 it also counts the instructions of one run of each targeted command
under valgrind (callgrind): a figure that load does not change, to compare two versions on a
busy machine (~1 minute per command).

    .venv/bin/python tests/bench/bench_cli.py
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUNS = int(os.environ.get("KOPFLOW_BENCH_RUNS", "15"))
TARGET = 0.3
KOPFLOW = str(BIN / "kopflow")
TARGETED = {
    "kopflow --help": [KOPFLOW, "--help"],
    "kopflow validate examples/etl.yaml": [KOPFLOW, "validate", "examples/etl.yaml"],
}
REFERENCE = {
    "kopflow validate examples/volumes.yaml (pod templates)": [
        KOPFLOW,
        "validate",
        "examples/volumes.yaml",
    ],
    "kopflow get --help (a cluster command)": [KOPFLOW, "get", "--help"],
    "python -c 'import kopflow.cliclient' (kubernetes_asyncio)": [
        sys.executable,
        "-c",
        "import kopflow.cliclient",
    ],
    "python -c pass (the interpreter alone)": [sys.executable, "-c", "pass"],
}


def environment() -> dict[str, str]:
    """The runs' environment: bytecode cached, as for an installed kopflow."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def measure(argv: list[str]) -> tuple[float, float, float]:
    """(median wall, best wall, least CPU) seconds over RUNS runs, after one warm-up run."""
    env = environment()
    subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, check=False, timeout=60)
    walls, cpus = [], []
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, check=False, timeout=60)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        assert done.returncode == 0, done.stderr.decode()
    return statistics.median(walls), min(walls), min(cpus)


def instructions(argv: list[str]) -> int | None:
    """Instructions one run executes (valgrind's callgrind), or None without valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    if argv[0] == KOPFLOW:  # the console script is a Python file: run it by its interpreter
        argv = [sys.executable, *argv]
    done = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        cwd=ROOT,
        env={**environment(), "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    return int(found.group(1)) if found else None


def slowest_imports(count: int = 12) -> list[tuple[int, str]]:
    """(own microseconds, module) of the slowest imports of `kopflow validate`: the module's
    own execution, without what it imports."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kopflow", "validate", "examples/etl.yaml"],
        cwd=ROOT,
        env=environment(),
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


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main() -> None:
    print(f"kopflow start-up; target: median wall < {TARGET:.3f} s; {RUNS} runs each")
    print(f"before: {load()}; kopflow's bytecode cached")
    print(f"{'command':<60} {'median':>8} {'best':>8} {'cpu':>8}  verdict")
    failed = []
    for label, argv in {**TARGETED, **REFERENCE}.items():
        median, best, cpu = measure(argv)
        if label in TARGETED:
            ok = median < TARGET
            verdict = f"{'PASS' if ok else 'FAIL'} ({median / TARGET:.0%} of {TARGET} s)"
            if not ok:
                failed.append(label)
        else:
            verdict = "(reference, no target)"
        print(f"{label:<60} {median:>7.3f}s {best:>7.3f}s {cpu:>7.3f}s  {verdict}")
    print(f"after:  {load()}")
    if os.environ.get("KOPFLOW_BENCH_VALGRIND") == "1":
        print("instructions of one run (valgrind callgrind; load does not change them):")
        for label, argv in TARGETED.items():
            count = instructions(argv)
            shown = "valgrind not found" if count is None else f"{count / 1e6:.0f} M"
            print(f"  {label:<58} {shown}")
    if failed:
        print(f"over the {TARGET} s target: {', '.join(failed)}")
        print("(a loaded machine inflates wall time: compare the cpu column, and measure again")
        print("when the load average is below 1)")
    print("slowest imports of `kopflow validate` (own time, children excluded):")
    for micros, name in slowest_imports():
        print(f"  {micros / 1e6:.3f}s  {name}")


if __name__ == "__main__":
    main()
