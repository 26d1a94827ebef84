"""Benchmark: how late a schedule creates each slot's run (target: within 1 s).

Against the emulator and its simulated kubelet, the operator runs with its hidden fast clock
(`--clock-rate R`: `* * * * *` fires every 60/R wall seconds) for W scheduled Workflows at once.
The lag of a slot is the wall time the emulator stored its run minus the wall time at which the
operator's clock showed the slot. Prints p50 / p99 / max over the measured slots and checks that
no slot was created twice or skipped.

    .venv/bin/python tests/bench/bench_schedule.py [--workflows 10] [--slots 30] [--rate 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import kubernetes

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.apiserver import ApiServer  # noqa: E402
from tests.support.kubelet import Kubelet  # noqa: E402

from kopflow.controller.clock import Clock  # noqa: E402
from kopflow.engine.times import parse_time  # noqa: E402

GROUP, VERSION = "kopflow.dev", "v1alpha1"
WARM_UP = 2
"""Slots per Workflow not measured: the operator starting, its first list."""


class Created:
    """Store listener: wall time each scheduled run was stored, and how often."""

    def __init__(self) -> None:
        self.at: dict[str, tuple[float, str]] = {}
        self.count: Counter[str] = Counter()
        self.changed = threading.Event()

    def __call__(self, rt: Any, kind: str, obj: dict[str, Any], old: Any) -> None:
        if rt.plural == "workflowruns" and kind == "ADDED":
            name = obj["metadata"]["name"]
            self.count[name] += 1
            when = (obj.get("spec") or {}).get("scheduledTime")
            if when:
                self.at.setdefault(name, (time.time(), when))
                self.changed.set()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workflows", type=int, default=10)
    parser.add_argument("--slots", type=int, default=30, help="measured slots per Workflow")
    parser.add_argument("--rate", type=float, default=60.0, help="clock speed-up")
    args = parser.parse_args()
    total = args.workflows * (args.slots + WARM_UP)
    with tempfile.TemporaryDirectory() as tmp:
        server = ApiServer().start()
        kubelet = Kubelet(server, kill_grace=0.5).start()
        created = Created()
        server.call(server.store.listeners.append, created)
        kubeconfig = server.kubeconfig(Path(tmp) / "kubeconfig")
        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        custom = kubernetes.client.CustomObjectsApi(client)
        kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": "bench"}})
        anchor = time.time()
        clock = Clock(anchor, args.rate)
        log = Path(tmp) / "operator.log"
        op = subprocess.Popen(
            [sys.executable, "-m", "kopflow", "operator", "--health-port", "0",
             "--clock-anchor", str(anchor), "--clock-rate", str(args.rate)],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            for i in range(args.workflows):
                custom.create_namespaced_custom_object(
                    GROUP, VERSION, "bench", "workflows",
                    {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workflow",
                     "metadata": {"name": f"tick{i:02d}"},
                     "spec": {"schedule": {"cron": "* * * * *"},
                              "successfulRunsHistoryLimit": 2,
                              "taskDefaults": {"image": "busybox"},
                              "tasks": [{"name": "a", "command": ["true"]}]}},
                )  # fmt: skip
            deadline = time.monotonic() + total * 60 / args.rate / args.workflows + 60
            while len(created.at) < total and time.monotonic() < deadline:
                created.changed.wait(1)
                created.changed.clear()
        finally:
            op.terminate()
            op.wait(30)
            kubelet.stop()
            server.stop()
    per_workflow: dict[str, list[tuple[str, float]]] = {}
    for name, (stored, when) in created.at.items():
        lag = stored - clock.to_real(parse_time(when))
        per_workflow.setdefault(name[:6], []).append((name, lag))
    lags = [lag for runs in per_workflow.values() for _, lag in sorted(runs)[WARM_UP:]]
    twice = [n for n, c in created.count.items() if c > 1]
    if not lags:
        print("no slot measured; see the operator log")
        return 1
    q = statistics.quantiles(lags, n=100) if len(lags) > 1 else [lags[0]] * 99
    print(
        f"{len(lags)} slots ({args.workflows} Workflows, `* * * * *` at {args.rate:g}x: a slot "
        f"every {60 / args.rate:.2f} s): lag p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, "
        f"max {max(lags) * 1000:.0f} ms (target: within 1 s); created twice: {len(twice)}"
    )
    return 0 if not twice and q[98] < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
