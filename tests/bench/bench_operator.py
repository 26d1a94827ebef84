"""Benchmark: the operator under load, against the emulator and the simulated kubelet.

Prints, for 100 concurrent runs of a 10-task DAG of instant tasks (`true`):
  - API writes to Jobs and WorkflowRuns per task attempt (target <= 2.2; Events separately),
  - dependency finished -> next Job created latency p50 / p99 (targets 50 ms / 250 ms),
  - operator CPU seconds per task;
then the operator's peak RSS with 500 active runs (target <= 200 MiB), and the serialized size
of a finished 2,000-task WorkflowRun.

    .venv/bin/python tests/bench/bench_operator.py [--runs 100] [--active 500]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.apiserver import ApiServer  # noqa: E402
from tests.support.kubelet import Kubelet  # noqa: E402

GROUP, VERSION = "kopflow.dev", "v1alpha1"
DAG = [  # a 10-task DAG: a fan-out of 4, a fan-in, a chain of 3, a final pair
    ("a", []),
    ("b1", ["a"]),
    ("b2", ["a"]),
    ("b3", ["a"]),
    ("b4", ["a"]),
    ("c", ["b1", "b2", "b3", "b4"]),
    ("d", ["c"]),
    ("e", ["d"]),
    ("f1", ["e"]),
    ("f2", ["e"]),
]


def workflow(name: str, command: list[str], tasks: list[tuple[str, list[str]]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "taskDefaults": {"image": "busybox"},
            "tasks": [
                {"name": n, "command": command, **({"dependsOn": d} if d else {})} for n, d in tasks
            ],
        },
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Timing:
    """Store listener: when each Job was created and when each attempt's pod terminated."""

    def __init__(self) -> None:
        self.created: dict[tuple[str, str], float] = {}
        self.finished: dict[tuple[str, str], float] = {}

    def __call__(self, rt: Any, kind: str, obj: dict[str, Any], old: Any) -> None:
        meta = obj.get("metadata", {})
        if rt.plural == "jobs" and kind == "ADDED":
            self.created[(meta["namespace"], meta["name"])] = time.monotonic()
        elif rt.plural == "pods":
            for cs in (obj.get("status") or {}).get("containerStatuses") or ():
                if "terminated" in (cs.get("state") or {}):
                    job = (meta.get("labels") or {}).get("batch.kubernetes.io/job-name")
                    key = (meta["namespace"], job)
                    self.finished.setdefault(key, time.monotonic())


def start_operator(kubeconfig: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kopflow", "operator", "--health-port", "0"],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def create_runs(custom: Any, ns: str, ref: str, count: int, first: int = 0) -> list[str]:
    names = []
    for i in range(first, first + count):
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WorkflowRun",
            "metadata": {"name": f"{ref}-{i}"},
            "spec": {"workflowRef": {"name": ref}},
        }
        names.append(
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, "workflowruns", body)[
                "metadata"
            ]["name"]
        )
    return names


def throughput(
    server: ApiServer, custom: Any, ns: str, runs: int, op: subprocess.Popen[bytes]
) -> None:
    timing = Timing()
    server.call(server.store.listeners.append, timing)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, "workflows", workflow("dag", ["true"], DAG)
    )
    (warm,) = create_runs(custom, ns, "dag", 1)  # the operator is up and has run one DAG
    rt = server.storage_type("workflowruns.kopflow.dev")
    server.wait_until(
        lambda store: (
            ((store.find(rt, ns, warm) or {}).get("status") or {}).get("phase") == "Succeeded"
        ),
        timeout=120,
    )
    timing.created.clear()
    timing.finished.clear()
    cpu0 = cpu_seconds(op.pid)
    sim0 = cpu_seconds(os.getpid())
    server.requests.reset()
    started = time.monotonic()
    names = create_runs(custom, ns, "dag", runs, first=1)

    def all_done(store: Any) -> bool:
        return all(
            ((store.find(rt, ns, n) or {}).get("status") or {}).get("phase")
            in ("Succeeded", "Failed")
            for n in names
        )

    server.wait_until(all_done, timeout=600)
    wall = time.monotonic() - started
    cpu = cpu_seconds(op.pid) - cpu0
    sim = cpu_seconds(os.getpid()) - sim0
    counts = server.requests.counts
    attempts = runs * len(DAG)
    job_writes = sum(
        n
        for (verb, res), n in counts.items()
        if res == "jobs.batch" and verb in ("create", "delete", "patch", "update")
    )
    run_writes = sum(
        n
        for (verb, res), n in counts.items()
        if res.startswith("workflowruns") and verb in ("patch", "update")
    )
    events = sum(
        n for (verb, res), n in counts.items() if res.startswith("events") and verb == "create"
    )
    failed = [
        n
        for n in names
        if (server.get("workflowruns.kopflow.dev", ns, n) or {})["status"]["phase"] != "Succeeded"
    ]
    deps = dict(DAG)
    latencies = []
    for name in names:
        for task, parents in deps.items():
            if not parents:
                continue
            job = (ns, f"{name}-{task}-1")
            ready = max(timing.finished[(ns, f"{name}-{p}-1")] for p in parents)
            latencies.append((timing.created[job] - ready) * 1000)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"runs={runs} tasks/run={len(DAG)} attempts={attempts} failed runs={len(failed)} "
        f"wall={wall:.1f}s"
    )
    print(
        f"writes per task attempt: {(job_writes + run_writes) / attempts:.2f}  "
        f"(jobs {job_writes}, workflowrun status {run_writes}; target <= 2.2)"
    )
    print(f"events per task attempt: {events / attempts:.2f}")
    print(
        f"dependency finished -> next Job created: p50 {p50:.0f} ms, p99 {p99:.0f} ms  "
        f"(targets 50 / 250 ms)"
    )
    print(f"operator CPU: {cpu:.1f} s, {cpu / attempts * 1000:.1f} ms per task")
    print(f"emulator + kubelet CPU (this process): {sim:.1f} s of {wall:.1f} s wall")


def memory(
    server: ApiServer, custom: Any, ns: str, active: int, op: subprocess.Popen[bytes]
) -> None:
    custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, "workflows", workflow("idle", ["sleep", "600"], [("wait", [])])
    )
    names = create_runs(custom, ns, "idle", active)
    rt = server.storage_type("workflowruns.kopflow.dev")

    def all_running(store: Any) -> bool:
        return all(
            (((store.find(rt, ns, n) or {}).get("status") or {}).get("tasks") or {})
            .get("wait", {})
            .get("phase")
            == "Running"
            for n in names
        )

    server.wait_until(all_running, timeout=600)
    print(f"peak RSS with {active} active runs: {peak_rss_mib(op.pid):.0f} MiB (target <= 200 MiB)")


def status_size() -> None:
    from kopflow.api.run import WorkflowRun
    from kopflow.api.workflow import WorkflowSpec
    from kopflow.engine.observations import Observation
    from kopflow.engine.reconcile import reconcile
    from kopflow.engine.state import RunState, jobs_to_observe

    tasks = [
        {
            "name": f"task-{i:04d}",
            "image": "python:3.12-slim",
            "command": ["python3", "-m", "etl.step"],
            "args": ["--part", str(i)],
            **({"dependsOn": [f"task-{i - 1:04d}"]} if i % 50 else {}),
        }
        for i in range(2000)
    ]
    spec = WorkflowSpec.model_validate({"tasks": tasks})
    status = None
    now = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    for _ in range(200):
        state = RunState("a-long-run-name-abcde", "data", spec, {}, status)
        obs = {
            j: Observation("succeeded", 0, "Completed", None, "", now, now)
            for j in jobs_to_observe(status)
        }
        decision = reconcile(state, obs, {}, now)
        status = decision.status
        if decision.finished:
            break
    run = WorkflowRun.model_validate(
        {
            "metadata": {"name": "a-long-run-name-abcde"},
            "spec": {"workflow": spec.model_dump(by_alias=True, exclude_none=True)},
        }
    )
    body = run.model_dump(by_alias=True, exclude_none=True, mode="json")
    body["status"] = status.dump() if status else {}
    size = len(json.dumps(body, separators=(",", ":")))
    print(
        f"finished 2,000-task WorkflowRun: {size / 1024:.0f} KiB serialized "
        f"(target < 1 MiB; etcd refuses 1.5 MiB), phase {status.phase if status else None}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--active", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ApiServer().start()
        kubelet = Kubelet(server, kill_grace=0.5, max_runtime=900).start()
        kubeconfig = server.kubeconfig(Path(tmp) / "kubeconfig")
        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        custom = kubernetes.client.CustomObjectsApi(client)
        kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": "bench"}})
        op = start_operator(kubeconfig, Path(tmp) / "operator.log")
        try:
            throughput(server, custom, "bench", args.runs, op)
            memory(server, custom, "bench", args.active, op)
        finally:
            op.terminate()
            op.wait(30)
            kubelet.stop()
            server.stop()
    status_size()
    return 0


if __name__ == "__main__":
    sys.exit(main())
