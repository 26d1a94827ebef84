"""Benchmark: Jobs of `true` on the real control plane, the simulated kubelet in its own process.

Prints, for `--jobs` Jobs run one after another: Job created -> Job Complete p50 / p90 (the real
Job controller batches pod updates for 1 s, so about 1 s is the floor), and the kubelet's share:
pod bound -> Running and bound -> exit reported (Succeeded) p50 / max, from a pod watch. Then
`--parallel` Jobs created at once: time until all are Complete.

    .venv/bin/python tests/bench/bench_remote_kubelet.py [--jobs 20] [--parallel 100]
        [--kubeconfig K]   # an already started control plane (else one is started and stopped)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration.real.conftest import wait_for_service_account  # noqa: E402
from tests.support.control_plane import ControlPlane  # noqa: E402
from tests.support.remote_kubelet import KubeletProcess  # noqa: E402


def job(name: str) -> dict[str, Any]:
    container = {"name": "task", "image": "busybox", "command": ["true"]}
    spec = {"restartPolicy": "Never", "containers": [container]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": spec}},
    }


def complete(batch: Any, namespace: str, name: str, timeout: float = 30) -> None:
    w = kubernetes.watch.Watch()
    for event in w.stream(
        batch.list_namespaced_job,
        namespace,
        field_selector=f"metadata.name={name}",
        timeout_seconds=int(timeout),
    ):
        conditions = (event["raw_object"].get("status") or {}).get("conditions") or []
        if any(c["type"] == "Complete" and c["status"] == "True" for c in conditions):
            w.stop()
            return
    raise TimeoutError(f"Job {name} not Complete after {timeout} s")


def watch_pods(core: Any, namespace: str, seen: dict[str, dict[str, float]]) -> None:
    """Record when each pod was first seen bound, Running, and Succeeded."""
    w = kubernetes.watch.Watch()
    for event in w.stream(core.list_namespaced_pod, namespace, timeout_seconds=600):
        pod = event["raw_object"]
        times = seen.setdefault(pod["metadata"]["name"], {})
        now = time.monotonic()
        if pod["spec"].get("nodeName"):
            times.setdefault("bound", now)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Running", "Succeeded"):
            times.setdefault(phase, now)


def ms(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
    p50, top = statistics.median(values), values[-1]
    return f"p50 {p50 * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, max {top * 1000:.0f} ms"


def bench(kubeconfig: Path, jobs: int, parallel: int, workdir: Path) -> None:
    node = KubeletProcess(kubeconfig, workdir=workdir / "node").start()
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    core, batch = kubernetes.client.CoreV1Api(client), kubernetes.client.BatchV1Api(client)
    try:
        namespace = core.create_namespace({"metadata": {"generateName": "bench-"}}).metadata.name
        wait_for_service_account(core, namespace)
        seen: dict[str, dict[str, float]] = {}
        threading.Thread(target=watch_pods, args=(core, namespace, seen), daemon=True).start()
        time.sleep(0.5)  # let the pod watch start before the first Job
        totals = []
        for i in range(jobs):
            started = time.monotonic()
            batch.create_namespaced_job(namespace, job(f"seq-{i}"))
            complete(batch, namespace, f"seq-{i}")
            totals.append(time.monotonic() - started)
        pods = [t for t in seen.values() if {"bound", "Running", "Succeeded"} <= t.keys()]
        print(f"{jobs} Jobs of `true`, one at a time")
        print(f"  Job created -> Complete:   {ms(totals)}")
        print(f"  pod bound -> Running:      {ms([t['Running'] - t['bound'] for t in pods])}")
        print(f"  pod bound -> Succeeded:    {ms([t['Succeeded'] - t['bound'] for t in pods])}")
        if parallel:
            started = time.monotonic()
            for i in range(parallel):
                batch.create_namespaced_job(namespace, job(f"par-{i}"))
            created = time.monotonic() - started
            for i in range(parallel):
                complete(batch, namespace, f"par-{i}", timeout=120)
            print(
                f"{parallel} Jobs at once: created in {created:.1f} s, "
                f"all Complete after {time.monotonic() - started:.1f} s"
            )
        core.delete_namespace(namespace)
    finally:
        node.stop()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=100)
    parser.add_argument("--kubeconfig", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kopflow-bench-") as tmp:
        if args.kubeconfig:
            bench(args.kubeconfig, args.jobs, args.parallel, Path(tmp))
            return
        plane = ControlPlane(Path(tmp) / "cp").start()
        try:
            assert plane.kubeconfig is not None
            bench(plane.kubeconfig, args.jobs, args.parallel, Path(tmp))
        finally:
            plane.stop()


if __name__ == "__main__":
    main()
