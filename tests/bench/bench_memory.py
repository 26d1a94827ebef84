"""Benchmark: operator memory follows active runs, not kept ones (issue 12).

Prints the operator's RSS (VmRSS now, VmHWM peak, from /proc/PID/status):
  1. with ACTIVE runs active (one task each that sleeps for an hour; target <= 200 MiB);
  2. with FINISHED finished runs kept (no TTL) besides them (target <= 250 MiB).

The operator, the API server and the node each run in their own process: the emulator with its
kubelet in a child process (`--backend emulator`, default), or the real control plane of
../shared/k8s with the simulated kubelet as its own process (`--backend real`).

The finished runs are restored, not run: with the operator stopped, each is created and its
status (a finished 10-task run as the engine writes it, outputs included) written through the
status subresource, as a restore from a backup would (running 10,000 runs takes far longer and
measures the same kept state). The operator then starts again, lists them all and resumes the
active runs. Jobs of the finished runs are not created (a restore does not bring them).

    .venv/bin/python tests/bench/bench_memory.py [--backend emulator|real] [--active 500]
        [--finished 10000] [--operator-src DIR]

`--operator-src DIR` runs the operator from another source tree (e.g. `git archive` of the
commit before the change, unpacked), for before/after numbers.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

GROUP, VERSION = "kopflow.dev", "v1alpha1"
NS = "bench"


def proc_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the emulator in its own process --------------------------------------------------------


def serve_emulator(directory: Path) -> int:
    """Child process: the emulator and its kubelet until SIGTERM; kubeconfig in directory."""
    from tests.support.apiserver import ApiServer
    from tests.support.kubelet import Kubelet

    server = ApiServer().start()
    kubelet = Kubelet(server, kill_grace=0.5, max_runtime=7200).start()
    server.kubeconfig(directory / "kubeconfig.tmp").rename(directory / "kubeconfig")
    done = False

    def stop(*_: Any) -> None:
        nonlocal done
        done = True

    signal.signal(signal.SIGTERM, stop)
    while not done:
        time.sleep(0.5)
    kubelet.stop()
    server.stop()
    return 0


class Emulator:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Path:
        log = (self.directory / "emulator.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-emulator", str(self.directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        kubeconfig = self.directory / "kubeconfig"
        deadline = time.monotonic() + 60
        while not kubeconfig.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the emulator did not start: see emulator.log")
            time.sleep(0.2)
        return kubeconfig

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(60)


class Real:
    def __init__(self, directory: Path) -> None:
        from tests.support.control_plane import ControlPlane
        from tests.support.remote_kubelet import KubeletProcess

        self.plane = ControlPlane(directory / "cp")
        self.node_cls = KubeletProcess
        self.directory = directory
        self.node: Any = None

    def start(self) -> Path:
        from tests.support import kubectl

        self.plane.start()
        assert self.plane.kubeconfig is not None
        kubectl.install_crds(self.plane.kubeconfig)
        self.node = self.node_cls(
            self.plane.kubeconfig, workdir=self.directory / "node", kill_grace=0.5
        ).start()
        return self.plane.kubeconfig

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        self.plane.stop()


# --- the operator ---------------------------------------------------------------------------


class Operator:
    def __init__(self, kubeconfig: Path, log: Path, source: Path | None) -> None:
        self.kubeconfig, self.log, self.source = kubeconfig, log, source
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        if self.source is not None:
            env["PYTHONPATH"] = str(self.source)
        cmd = [sys.executable, "-m", "kopflow", "operator", "--health-port", "0"]
        cmd += ["--metrics-port", str(self.port), "--metrics-host", "127.0.0.1", "-n", NS]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        return self

    def gauge(self, name: str) -> float | None:
        """The sum of a metric's series, or None before /metrics answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        total, seen = 0.0, False
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
                seen = True
        return total if seen else 0.0

    def mib(self) -> tuple[float, float]:
        assert self.proc is not None
        return proc_mib(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


# --- the load -------------------------------------------------------------------------------


def workflow(name: str, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"taskDefaults": {"image": "busybox"}, "tasks": tasks},
    }


ETL = [
    {
        "name": f"step-{i}",
        "command": ["python3", "-m", "etl.step"],
        "args": ["--part", str(i), "--date", "{{ params.date }}"],
        "outputs": ["rows"],
        **({"dependsOn": [f"step-{i - 1}"]} if i else {}),
    }
    for i in range(10)
]


def finished_status() -> dict[str, Any]:
    """A finished 10-task run's status as the engine writes it (each task output a number)."""
    from kopflow.api.workflow import WorkflowSpec
    from kopflow.engine.observations import Observation
    from kopflow.engine.reconcile import reconcile
    from kopflow.engine.state import RunState, jobs_to_observe

    spec = WorkflowSpec.model_validate(workflow("etl", ETL)["spec"])
    status = None
    now = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    for step in range(100):
        state = RunState("etl-restored", NS, spec, {"date": "2026-11-28"}, status)
        at = now + timedelta(seconds=step)
        obs = {
            j: Observation("succeeded", 0, "Completed", None, "rows=4096", at, at)
            for j in jobs_to_observe(status)
        }
        decision = reconcile(state, obs, {}, at)
        status = decision.status
        if decision.finished:
            break
    assert status is not None and status.phase == "Succeeded", status
    return status.dump()


def create_many(fn: Any, items: list[Any], threads: int = 8) -> None:
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(fn, items):
            pass


def wait(what: str, check: Any, timeout: float, every: float = 2.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["emulator", "real"], default="emulator")
    parser.add_argument("--active", type=int, default=500)
    parser.add_argument("--finished", type=int, default=10_000)
    parser.add_argument("--operator-src", type=Path, default=None)
    parser.add_argument("--serve-emulator", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=Path, help="keep logs in this folder")
    args = parser.parse_args()
    if args.serve_emulator:
        return serve_emulator(args.serve_emulator)
    tmp = tempfile.TemporaryDirectory(prefix="bench-memory-")
    directory = args.keep or Path(tmp.name)
    directory.mkdir(parents=True, exist_ok=True)
    cluster: Emulator | Real = (
        Emulator(directory) if args.backend == "emulator" else Real(directory)
    )
    operator: Operator | None = None
    print(f"backend {args.backend}; operator from {args.operator_src or 'this tree'}")
    try:
        kubeconfig = cluster.start()
        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        client.configuration.connection_pool_maxsize = 16
        custom = kubernetes.client.CustomObjectsApi(client)
        core = kubernetes.client.CoreV1Api(client)
        core.create_namespace({"metadata": {"name": NS}})
        for name, tasks in (
            ("idle", [{"name": "wait", "command": ["sleep", "3600"]}]),
            ("etl", ETL),
        ):
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NS, "workflows", workflow(name, tasks)
            )
        operator = Operator(kubeconfig, directory / "operator.log", args.operator_src).start()

        def create_active(i: int) -> None:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "WorkflowRun",
                "metadata": {"name": f"idle-{i}"},
                "spec": {"workflowRef": {"name": "idle"}},
            }
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, "workflowruns", body)

        started = time.monotonic()
        create_many(create_active, list(range(args.active)))

        def running() -> int:
            runs = custom.list_namespaced_custom_object(GROUP, VERSION, NS, "workflowruns")
            return sum(
                1
                for r in runs["items"]
                if ((r.get("status") or {}).get("tasks") or {}).get("wait", {}).get("phase")
                == "Running"
            )

        wait(f"{args.active} runs running", lambda: running() >= args.active, 900, 3.0)
        took = time.monotonic() - started
        time.sleep(5)  # settle: the last status writes and events
        rss, hwm = operator.mib()
        print(
            f"{args.active} active runs: RSS {rss:.0f} MiB, peak {hwm:.0f} MiB "
            f"(target <= 200 MiB); all running after {took:.0f}s"
        )

        operator.stop()
        status = finished_status()

        def restore(i: int) -> None:
            name = f"etl-{i:05d}"
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "WorkflowRun",
                "metadata": {"name": name, "labels": {"kopflow.dev/workflow": "etl"}},
                "spec": {"workflowRef": {"name": "etl"}, "parameters": {"date": "2026-11-28"}},
            }
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, "workflowruns", body)
            mine = copy.deepcopy(status)
            for task in (mine.get("tasks") or {}).values():
                if task.get("jobName"):
                    task["jobName"] = f"{name}-{task['jobName'].rsplit('-', 1)[-1]}"
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, NS, "workflowruns", name, {"status": mine}
            )

        started = time.monotonic()
        create_many(restore, list(range(args.finished)))
        print(f"restored {args.finished} finished runs in {time.monotonic() - started:.0f}s")
        operator = Operator(kubeconfig, directory / "operator.log", args.operator_src).start()
        started = time.monotonic()
        wait(
            "the operator lists every run",
            lambda: operator is not None and operator.gauge("kopflow_runs_active") == args.active,
            900,
            1.0,
        )
        listed = time.monotonic() - started
        time.sleep(15)  # settle: the active runs' workers resume
        rss, hwm = operator.mib()
        print(
            f"{args.finished} finished runs kept + {args.active} active: RSS {rss:.0f} MiB, "
            f"peak {hwm:.0f} MiB (target <= 250 MiB); listed {listed:.0f}s after start"
        )
        return 0
    finally:
        if operator is not None:
            operator.stop()
        cluster.stop()
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
