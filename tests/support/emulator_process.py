"""The emulator and its simulated node (kubelet, scheduler, Job controller) as their own process.

A benchmark that hosts the emulator in its own process lends the emulator's CPU to whatever it
measures on the same interpreter; as a separate process the driver, the operator and the
cluster each have their own. The kubelet stays beside the emulator: it talks to the store
directly, as in the tests.

    python -m tests.support.emulator_process --workdir DIR

prints the admin kubeconfig's path once serving, then answers commands read from stdin, one
JSON line each on stdout:
    counts   -> [[user, verb, resource, n], ...]  requests RBAC let through, since the start
    timings  -> {"job": [[run, task, attempt, t], ...], "pod": [...]}: when the store took
                each kopflow Job's creation and each kopflow Pod's first terminated state
                (time.time()), so a benchmark's latencies do not include watch delivery
EOF or SIGTERM stops it (its pod processes are killed). `EmulatorProcess` drives it.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class Timings:
    """Store listener: when each kopflow Job was created and each Pod first terminated."""

    def __init__(self) -> None:
        self.job: dict[tuple[str, str, str], float] = {}
        self.pod: dict[tuple[str, str, str], float] = {}

    def __call__(self, rt: Any, kind: str, obj: dict[str, Any], old: Any) -> None:
        labels = obj.get("metadata", {}).get("labels") or {}
        if "kopflow.dev/run" not in labels:
            return
        key = (labels["kopflow.dev/run"], labels.get("kopflow.dev/task", ""),
               labels.get("kopflow.dev/attempt", ""))  # fmt: skip
        if rt.plural == "jobs" and kind == "ADDED":
            self.job.setdefault(key, time.time())
        elif rt.plural == "pods" and key not in self.pod:
            status = obj.get("status") or {}
            states = [c.get("state") or {} for c in status.get("containerStatuses") or ()]
            if status.get("phase") in ("Succeeded", "Failed") or any(
                "terminated" in s for s in states
            ):
                self.pod[key] = time.time()

    def dump(self) -> dict[str, list[list[Any]]]:
        return {
            "job": [[*k, t] for k, t in self.job.items()],
            "pod": [[*k, t] for k, t in self.pod.items()],
        }


def main(argv: list[str] | None = None) -> int:
    from .apiserver import ApiServer
    from .kubelet import Kubelet

    parser = argparse.ArgumentParser(prog="python -m tests.support.emulator_process")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--kill-grace", type=float, default=0.5)
    parser.add_argument("--max-runtime", type=float, default=900.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.stdin.close())
    args.workdir.mkdir(parents=True, exist_ok=True)
    server = ApiServer(window=20_000).start()
    node = Kubelet(server, kill_grace=args.kill_grace, max_runtime=args.max_runtime).start()
    timings = Timings()
    server.call(server.store.listeners.append, timings)
    try:
        print(server.kubeconfig(args.workdir / "admin.kubeconfig"), flush=True)
        for line in sys.stdin:
            if line.strip() == "counts":
                counts = server.call(lambda: list(server.requests.by_user.items()))
                print(json.dumps([[*key, n] for key, n in counts]), flush=True)
            elif line.strip() == "timings":
                print(json.dumps(server.call(timings.dump)), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {line.strip()!r}"}), flush=True)
    except (ValueError, OSError):  # stdin closed by SIGTERM
        pass
    finally:
        node.stop()
        server.stop()
    return 0


class EmulatorProcess:
    """Starts `python -m tests.support.emulator_process`; `counts()` reads its request log."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[str] | None = None
        self.kubeconfig: Path | None = None

    def start(self, timeout: float = 30.0) -> EmulatorProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "emulator.log").open("a") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.support.emulator_process",
                    "--workdir",
                    str(self.workdir),
                ],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.kubeconfig = Path(self._line(timeout))
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line:
            log = (self.workdir / "emulator.log").read_text()[-3000:]
            raise RuntimeError(f"the emulator process did not answer\n{log}")
        return line

    def counts(self) -> list[tuple[str, str, str, int]]:
        """(user, verb, resource, n) of every allowed request since the start."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write("counts\n")
        self.proc.stdin.flush()
        rows: list[Any] = json.loads(self._line(60))
        return [(u, v, r, int(n)) for u, v, r, n in rows]

    def timings(self) -> dict[str, dict[tuple[str, str, str], float]]:
        """ "job"/"pod" -> (run, task, attempt) -> when (time.time()), as the store saw it."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write("timings\n")
        self.proc.stdin.flush()
        answer: dict[str, list[Any]] = json.loads(self._line(60))
        return {k: {(r, t, a): float(w) for r, t, a, w in rows} for k, rows in answer.items()}

    def stop(self, timeout: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
