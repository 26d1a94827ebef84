"""Benchmark (issue 10): the operator under load, on the emulator and on the real control plane.

Two loads of a 10-task DAG, with the operator, the cluster (+ simulated kubelet) and this
driver in separate processes (see rig.py for how each figure is measured):
  - steady (the issue's "100 runs active"): `--active` runs (100) at all times, a new one as
    each finishes, until `--runs` (2 x active) were created; each run's tasks sleep about
    `--task-seconds` (10 s, x0.5-1.5 per run). Latency is taken over the runs created once
    `--active` were running. This is a fixed offered load, as latency targets are (Kubernetes'
    own API and pod-startup SLOs hold at a stated throughput): it says what a user with 100
    runs in flight sees.
  - burst: `--runs` (100) runs of `true` tasks, all created at once: every part of the rig at
    its limit (the machine ~97% busy). Latency then measures the queue for the machine's two
    cores, mostly the API server's; throughput and CPU per attempt are its figures.
For each it prints, per backend:
  - API writes per task attempt, server side (target <= 2.2; Events counted apart),
  - dependency finished (Pod terminated) -> next Job created, p50 / p99 (targets 50 / 250 ms),
    and on the real server its own time per Job create,
  - attempts per second, how busy the machine was, reconcile steps per attempt,
  - operator CPU per task attempt, and its RSS (now / peak) at the end
    (RSS with 500 active runs is bench_memory.py's),
then the serialized size of a finished 2,000-task WorkflowRun.

    .venv/bin/python tests/bench/bench_operator.py [--backend emulator|real|both]
        [--load steady|burst|both] [--active 100] [--task-seconds 10] [--runs N]

About 3 minutes per backend for the steady load, 1 for the burst, on 2 cores.
KOPFLOW_PROFILE=FILE makes the operator write a cProfile of itself to FILE when it stops
(see kopflow.__main__).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rig import (
    DAG,
    GROUP,
    VERSION,
    WRITE_VERBS,
    Observer,
    bucket_quantile,
    cpu_seconds,
    dependency_latencies,
    median,
    percentile,
    rig,
    rss_mib,
    run_body,
    workflow,
)


def writes(before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]) -> dict[str, int]:
    """resource -> write requests between two server counts."""
    out: dict[str, int] = {}
    for (verb, resource), n in after.items():
        delta = n - before.get((verb, resource), 0)
        if verb in WRITE_VERBS and delta:
            out[f"{verb} {resource}"] = out.get(f"{verb} {resource}", 0) + delta
    return out


def steady_workflow() -> dict[str, Any]:
    """The DAG with tasks that sleep `{{ params.seconds }}` (each run draws its own)."""
    body = workflow("dag", ["sleep"], DAG)
    body["spec"]["parameters"] = [{"name": "seconds", "default": "0"}]
    for task in body["spec"]["tasks"]:
        task["args"] = ["{{ params.seconds }}"]
    return body


def drive_burst(custom: Any, ns: str, observer: Observer, runs: int) -> tuple[list[str], bool]:
    """All runs created at once by 8 threads: the rig's throughput, every part saturated."""
    names = [f"r{i}" for i in range(runs)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, "workflowruns", run_body(name, "dag")), names))  # fmt: skip
    return names, observer.wait_finished(names, 600, progress=30)


def drive_steady(
    custom: Any, ns: str, observer: Observer, runs: int, active: int, seconds: float
) -> tuple[list[str], bool]:
    """`active` runs at all times, until `runs` were created: the first `active` spread over
    one task duration, then a new one as each finishes. Each run's tasks sleep a duration
    drawn from [0.5, 1.5] x `seconds`, so the runs do not move in lockstep."""
    rng = random.Random(10)
    names: list[str] = []
    deadline = time.monotonic() + 900 + 15 * seconds * runs / active
    while len(names) < runs and time.monotonic() < deadline:
        with observer.changed:
            running = sum(1 for n in names if n not in observer.run_done)
            if running >= active:
                observer.changed.wait(1.0)
                continue
        name = f"r{len(names)}"
        body = run_body(name, "dag")
        body["spec"]["parameters"] = {"seconds": f"{rng.uniform(0.5, 1.5) * seconds:.2f}"}
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "workflowruns", body)
        names.append(name)
        if len(names) < active:
            time.sleep(seconds / active)
    left = max(deadline - time.monotonic(), 60)
    return names, len(names) == runs and observer.wait_finished(names, left, progress=30)


def reconciles(metrics_text: str) -> float:
    """The operator's reconcile steps so far (kopflow_reconcile_duration_seconds_count)."""
    found = re.search(r"^kopflow_reconcile_duration_seconds_count ([0-9.e+]+)$", metrics_text, re.M)
    return float(found.group(1)) if found else float("nan")


def gc_pauses(metrics_text: str) -> tuple[float, float, dict[float, float]]:
    """The operator's full collections so far: count, seconds, cumulative buckets (le -> n)."""
    count = seconds = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "kopflow_gc_pause_seconds":
            continue
        for sample in (s for s in family.samples if s.labels.get("generation") == "2"):
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                seconds = sample.value
            elif sample.name.endswith("_bucket"):
                buckets[float(sample.labels["le"])] = sample.value
    return count, seconds, buckets


def longest(before: dict[float, float], after: dict[float, float]) -> float:
    """The bucket bound of the longest pause between two samples of the buckets."""
    total = after.get(float("inf"), 0) - before.get(float("inf"), 0)
    return min((le for le, n in after.items() if n - before.get(le, 0) >= total), default=0.0)


def bench(
    backend: str, runs: int, workdir: Path, active: int = 0, seconds: float = 0
) -> dict[str, float]:
    """One backend: a burst (`seconds` 0) or a steady load of `active` runs (see main)."""
    with rig(backend, workdir) as r:
        custom = __import__("kubernetes").client.CustomObjectsApi(r.client)
        observer = Observer().start(r.client, r.ns)
        op = r.start_operator()
        custom.create_namespaced_custom_object(
            GROUP, VERSION, r.ns, "workflows",
            steady_workflow() if seconds else workflow("dag", ["true"], DAG),
        )  # fmt: skip
        custom.create_namespaced_custom_object(
            GROUP, VERSION, r.ns, "workflowruns", run_body("warm", "dag")
        )
        assert observer.wait_finished(["warm"], 120), "the warm-up run did not finish"
        time.sleep(1)  # let the warm-up's last writes land before counting
        server0, client0 = r.server_counts(), r.operator_requests()
        text = op.metrics()
        steps0, gc0 = reconciles(text), gc_pauses(text)
        creates0 = r.server_latency("POST", "jobs")
        cpu0, rig0 = cpu_seconds(op.pid), r.cpu()
        started = time.monotonic()
        if seconds:
            names, finished = drive_steady(custom, r.ns, observer, runs, active, seconds)
            measured = names[active:]  # created once `active` runs were running
            load = f"{active} runs active, tasks of {seconds:g} s (x0.5-1.5), {len(names)} runs"
        else:
            names, finished = drive_burst(custom, r.ns, observer, runs)
            measured = names
            load = f"{runs} runs x {len(DAG)} tasks (`true`), all created at once"
        wall = time.monotonic() - started
        cpu = cpu_seconds(op.pid) - cpu0
        rig_cpu = {k: round(v - rig0.get(k, 0), 1) for k, v in r.cpu().items()}
        time.sleep(1)  # the last status writes reach the counters
        server1, client1 = r.server_counts(), r.operator_requests()
        text = op.metrics()
        steps, gc1 = reconciles(text) - steps0, gc_pauses(text)
        creates1 = r.server_latency("POST", "jobs")
        rss, hwm = rss_mib(op.pid)
        observer.stop()
        failed = [n for n in names if observer.run_phase.get(n) != "Succeeded"]
        for name in failed[:5]:  # say why: a benchmark that loses runs measures nothing
            run = custom.get_namespaced_custom_object(GROUP, VERSION, r.ns, "workflowruns", name)
            status = run.get("status") or {}
            tasks = {t: (s.get("phase"), s.get("reason"), s.get("message"))
                     for t, s in (status.get("tasks") or {}).items()
                     if s.get("phase") != "Succeeded"}  # fmt: skip
            print(f"  not Succeeded: {name} {status.get('phase')}: {status.get('message')} {tasks}")
        attempts = sum(1 for k in observer.job_seen if k[0] in set(names))
        w = writes(server0, server1)
        events = w.pop("create events", 0)
        if backend == "real":  # other clients write too: only what the operator alone does
            # (ConfigMaps: the runs' pinned specs and outputs; the namespace's kube-root-ca.crt
            # was written before the count began)
            operator_only = ("create jobs", "delete jobs", "patch jobs", "patch workflowruns",
                             "patch workflowruns/status", "update workflowruns/status")  # fmt: skip
            w = {k: n for k, n in w.items() if k in operator_only or k.endswith(" configmaps")}
            posts = client1.get(("POST", "201"), 0) - client0.get(("POST", "201"), 0)
            events = posts - w.get("create jobs", 0) - w.get("create configmaps", 0)
        job_writes = sum(n for k, n in w.items() if k.split()[1] == "jobs")
        run_writes = sum(n for k, n in w.items() if k.split()[1].startswith("workflowruns"))
        map_writes = sum(n for k, n in w.items() if k.split()[1] == "configmaps")
        client = {
            f"{verb} {code}": client1[(verb, code)] - client0.get((verb, code), 0)
            for verb, code in sorted(client1)
            if client1[(verb, code)] - client0.get((verb, code), 0)
        }
        source = r.server_timings(observer)
        lat, missing = dependency_latencies(observer, measured, DAG)
        busy = (sum(rig_cpu.values()) + cpu) / wall / (os.cpu_count() or 1) * 100
        out = {
            "writes": sum(w.values()) / max(attempts, 1),
            "p50": median(lat),
            "p99": percentile(lat, 99),
            "cpu_ms": cpu / max(attempts, 1) * 1000,
            "rss": rss,
            "rate": attempts / wall,
            "busy": busy,
        }
        print(f"== {backend}: {load}")
        print(f"  attempts {attempts} ({out['rate']:.1f}/s), runs not Succeeded {len(failed)}, "
              f"all finished: {finished}, wall {wall:.1f} s; the machine {busy:.0f}% busy "
              f"(CPU of operator and rig / wall / cores)")  # fmt: skip
        print(f"  API writes per task attempt: {out['writes']:.2f} (target <= 2.2): "
              f"Jobs {job_writes}, WorkflowRuns {run_writes}, ConfigMaps {map_writes}; "
              f"server side {w}")  # fmt: skip
        print(f"  Events per task attempt: {events / max(attempts, 1):.2f} ({events})")
        print(f"  operator client requests: {client}; "
              f"reconcile steps per task attempt: {steps / max(attempts, 1):.2f}")  # fmt: skip
        print(f"  dependency finished -> next Job created: p50 {out['p50']:.0f} ms, "
              f"p90 {percentile(lat, 90):.0f} ms, p99 {out['p99']:.0f} ms, "
              f"max {max(lat, default=float('nan')):.0f} ms over {len(lat)} edges of "
              f"{len(measured)} runs ({missing} unseen), times from {source} "
              f"(targets 50 / 250 ms)")  # fmt: skip
        if creates1:  # the real server's own time per Job create: the part no client saves
            p50, p99 = (bucket_quantile(creates0, creates1, q) * 1000 for q in (0.5, 0.99))
            print(f"  of which the API server's own time to create a Job: p50 {p50:.0f} ms, "
                  f"p99 {p99:.0f} ms (apiserver_request_duration_seconds)")  # fmt: skip
        print(f"  operator CPU: {cpu:.1f} s, {out['cpu_ms']:.1f} ms per task attempt; "
              f"the rig's CPU s: {rig_cpu}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        print(f"  operator RSS at the end: {rss:.0f} MiB (peak {hwm:.0f} MiB)")
        print(f"  operator full collections: {gc1[0] - gc0[0]:.0f}, "
              f"{(gc1[1] - gc0[1]) * 1000:.0f} ms in all, the longest <= "
              f"{longest(gc0[2], gc1[2]) * 1000:g} ms (kopflow_gc_pause_seconds)")  # fmt: skip
        return out


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
    parser.add_argument("--backend", choices=("emulator", "real", "both"), default="both")
    parser.add_argument("--load", choices=("steady", "burst", "both"), default="both")
    parser.add_argument("--active", type=int, default=100, help="runs kept active (steady)")
    parser.add_argument("--task-seconds", type=float, default=10.0, help="task length (steady)")
    parser.add_argument("--runs", type=int, help="runs in all (steady: 2 x active; burst: 100)")
    parser.add_argument("--no-size", action="store_true", help="skip the 2,000-task run size")
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: a temp dir)")
    args = parser.parse_args()
    backends = ("emulator", "real") if args.backend == "both" else (args.backend,)
    with tempfile.TemporaryDirectory(prefix="kopflow-bench-") as tmp:
        for backend in backends:
            for load in ("steady", "burst") if args.load == "both" else (args.load,):
                workdir = (args.workdir or Path(tmp)) / f"{backend}-{load}"
                if load == "steady":
                    runs = args.runs or 2 * args.active
                    bench(backend, runs, workdir, args.active, args.task_seconds)
                else:
                    bench(backend, args.runs or 100, workdir)
    if not args.no_size:
        status_size()
    return 0


if __name__ == "__main__":
    sys.exit(main())
