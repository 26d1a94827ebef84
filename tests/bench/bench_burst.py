"""Benchmark (issue 12): a burst of runs created at once, on the real control plane by default.

`--runs` runs (1,000) of a 10-task DAG of `true` are created as fast as the driver can (8
threads), with the operator, the control plane, the remote kubelet (its own process) and this
driver in separate processes. It prints:
  - run-start latency: the run's create answered -> its first Job seen, p50 / p99 / max
    (goal on this 2-core machine: p99 < 5 s),
  - the time until all have finished (or, at `--timeout`, how far it got),
  - API requests per run: the operator's own client requests (its /metrics, watches not
    counted) and the server's total for the operator's resources,
  - the operator's peak client QPS: its request counter sampled every second,
  - operator CPU and RSS at the end.

    .venv/bin/python tests/bench/bench_burst.py [--runs 1000] [--backend real|emulator]
        [--timeout 900]

1,000 runs x 10 tasks is 10,000 Jobs and Pods: on 2 shared cores the control plane and the
kubelet need about as long as the operator; `--runs 200` is a few minutes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import kubernetes
from rig import (
    DAG,
    GROUP,
    VERSION,
    Observer,
    cpu_seconds,
    median,
    parse_requests,
    percentile,
    rig,
    rss_mib,
    run_body,
    workflow,
)


class QpsSampler(threading.Thread):
    """The operator's client request total (watches excluded) every second; peak per-second
    delta."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True, name="qps")
        self.port, self.stopping = port, threading.Event()
        self.samples: list[tuple[float, int]] = []
        self.throttled = 0

    def total(self) -> int:
        from rig import metrics_text

        counts = parse_requests(metrics_text(self.port))
        self.throttled = sum(n for (_, code), n in counts.items() if code == "429")
        return sum(n for (verb, _), n in counts.items() if verb != "WATCH")

    def run(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic(), self.total()))
            self.stopping.wait(1.0)

    def peak(self) -> float:
        rates = [
            (b - a) / (tb - ta)
            for (ta, a), (tb, b) in zip(self.samples, self.samples[1:], strict=False)
            if tb > ta
        ]
        return max(rates, default=0.0)


def bench(backend: str, runs: int, timeout: float, workdir: Path) -> None:
    with rig(backend, workdir) as r:
        custom = kubernetes.client.CustomObjectsApi(r.client)
        observer = Observer().start(r.client, r.ns)
        op = r.start_operator()
        custom.create_namespaced_custom_object(
            GROUP, VERSION, r.ns, "workflows", workflow("dag", ["true"], DAG)
        )
        custom.create_namespaced_custom_object(
            GROUP, VERSION, r.ns, "workflowruns", run_body("warm", "dag")
        )
        assert observer.wait_finished(["warm"], 120), "the warm-up run did not finish"
        time.sleep(1)
        server0 = r.server_counts()
        sampler = QpsSampler(op.metrics_port)
        base = sampler.total()
        sampler.start()
        cpu0, rig0 = cpu_seconds(op.pid), r.cpu()
        names = [f"b{i}" for i in range(runs)]
        created: dict[str, float] = {}

        def create(name: str) -> None:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, r.ns, "workflowruns", run_body(name, "dag")
            )
            created[name] = time.monotonic()

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(create, names))
        creating = time.monotonic() - started
        print(f"== {backend}: {runs} runs x {len(DAG)} tasks created in {creating:.1f} s",
              flush=True)  # fmt: skip
        finished = observer.wait_finished(names, timeout, progress=30)
        wall = time.monotonic() - started
        cpu = cpu_seconds(op.pid) - cpu0
        rig_cpu = {k: round(v - rig0.get(k, 0), 1) for k, v in r.cpu().items()}
        time.sleep(1)
        sampler.stopping.set()
        sampler.join(5)
        requests = sampler.total() - base
        server1 = r.server_counts()
        rss, hwm = rss_mib(op.pid)
        observer.stop()
        starts = [(observer.first_job[n] - created[n]) for n in names if n in observer.first_job]
        done = [n for n in names if n in observer.run_done]
        jobs = sum(1 for k in observer.job_seen if k[0] in created)
        ours = ("jobs", "workflowruns", "workflowruns/status", "events", "pods")
        server = {
            f"{v} {res}": n - server0.get((v, res), 0)
            for (v, res), n in sorted(server1.items())
            if res in ours and n - server0.get((v, res), 0) and v != "watch"
        }
        print(f"  runs started {len(starts)}/{runs}, finished {len(done)}/{runs} "
              f"({'all' if finished else f'stopped at --timeout {timeout:.0f} s'}), "
              f"Jobs created {jobs}/{runs * len(DAG)}")  # fmt: skip
        print(f"  run start (created -> first Job): p50 {median(starts):.2f} s, "
              f"p99 {percentile(starts, 99):.2f} s, max {max(starts, default=float('nan')):.2f} s "
              f"(goal p99 < 5 s)")  # fmt: skip
        print(f"  time until all finished: {wall:.0f} s" if finished else
              f"  after {wall:.0f} s: {len(done)} runs finished")  # fmt: skip
        print(f"  operator API requests per run: {requests / runs:.1f} ({requests}; watches "
              f"not counted); 429 answers: {sampler.throttled}")  # fmt: skip
        print(f"  server side, all clients, per run: "
              f"{ {k: round(n / runs, 1) for k, n in server.items()} }")  # fmt: skip
        print(f"  operator peak client QPS: {sampler.peak():.0f} (1 s samples)")
        print(f"  operator CPU: {cpu:.0f} s; RSS at the end {rss:.0f} MiB (peak {hwm:.0f} MiB)")
        print(f"  the rig's CPU s: {rig_cpu}; load average {os.getloadavg()[0]:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("emulator", "real"), default="real")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kopflow-burst-") as tmp:
        bench(args.backend, args.runs, args.timeout, args.workdir or Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
