"""The benchmark rig: a cluster (the emulator or the real control plane), the operator as users
run it, and a driver that only creates runs and watches.

Every part is its own process, so the figures are the operator's and not the rig's:
  - the emulator with its simulated node (`tests.support.emulator_process`), or the real
    control plane of ../shared/k8s with the remote kubelet (`tests.support.remote_kubelet`);
  - the operator (`python -m kopflow operator -n NS`), as ServiceAccount `kopflow-operator`
    under the chart's RBAC, exactly as tests/integration/operator/conftest.py starts it;
  - this process: creates runs with the admin client and timestamps what its watches deliver.

What a figure is made of:
  - writes: server side. Emulator: its request log, counted for the operator's user.
    Real: `apiserver_request_total` from the API server's /metrics (admin), for the verbs and
    resources only the operator writes (Jobs create/delete, WorkflowRun patches). Events are
    counted apart (on the real server: the operator's POSTs from its own client metrics minus
    its Job creates, since the Job controller posts Events too).
  - latency: receive times of the driver's Pod and Job watches (one process, one clock): a
    parent's Pod first reported terminated -> the child's Job first seen.
  - CPU: utime + stime of the operator process (/proc/PID/stat); RSS: VmRSS and VmHWM.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes.watch.watch import iter_resp_lines

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration.operator.conftest import (  # noqa: E402
    Cluster,
    Operator,
    grant_operator,
    new_namespace,
)
from tests.support import kubectl  # noqa: E402
from tests.support.control_plane import ControlPlane  # noqa: E402
from tests.support.emulator_process import EmulatorProcess  # noqa: E402
from tests.support.remote_kubelet import KubeletProcess  # noqa: E402

GROUP, VERSION = "kopflow.dev", "v1alpha1"
FINISHED = ("Succeeded", "Failed", "Cancelled", "Invalid")
DAG = [  # 10 tasks: a fan-out of 4, a fan-in, a chain of 3, a final pair
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
WRITE_VERBS = ("create", "update", "patch", "delete")


# --- processes ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB: resident now, and the peak."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def token_kubeconfig(admin: Path, token: str, path: Path) -> Path:
    """The admin kubeconfig's cluster with a bearer token as the user."""
    config = yaml.safe_load(admin.read_text())
    ctx = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c for c in config["clusters"] if c["name"] == ctx["context"]["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster["cluster"]}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


@dataclass
class Rig:
    """One backend with a namespace, the operator's identity, and what counts its writes."""

    backend: str
    cluster: Cluster
    workdir: Path
    emulator: EmulatorProcess | None = None
    plane: ControlPlane | None = None
    node: KubeletProcess | None = None
    operator: Operator | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def ns(self) -> str:
        return self.cluster.namespace

    @property
    def client(self) -> kubernetes.client.ApiClient:
        return self.cluster.client

    def start_operator(self, *extra: str) -> Operator:
        self.operator = Operator(self.cluster, self.workdir / "operator.log", *extra)
        self.operator.start()
        return self.operator

    def pids(self) -> dict[str, int]:
        """The rig's own processes (not the operator's), by name: where else the CPU goes."""
        out = {"driver": os.getpid()}
        if self.emulator is not None:
            out["emulator+node"] = self.emulator.pid
        if self.plane is not None:
            for line in (self.plane.workdir / "pids").read_text().splitlines():
                name, pid = line.split()
                out[name] = int(pid)
        if self.node is not None and self.node.proc is not None:
            out["kubelet"] = self.node.proc.pid
        return out

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the rig's processes."""
        out = {}
        for name, pid in self.pids().items():
            with suppress(OSError):
                out[name] = cpu_seconds(pid)
        return out

    def server_timings(self, observer: Observer) -> str:
        """On the emulator, replace the driver's watch times of Jobs created and Pods
        terminated by the store's own (no watch delivery in the figure); says which."""
        if self.emulator is None:
            return "the driver's watches"
        offset = time.time() - time.monotonic()
        found = self.emulator.timings()
        observer.job_seen = {k: t - offset for k, t in found["job"].items()}
        observer.pod_done = {k: t - offset for k, t in found["pod"].items()}
        return "the emulator's store"

    def server_counts(self) -> Counter[tuple[str, str]]:
        """(verb, resource) -> requests so far, server side, for what the operator writes.
        Verbs are lower case (create, update, patch, delete, get, list, watch); resources as
        `jobs`, `workflowruns/status`, `events`..."""
        out: Counter[tuple[str, str]] = Counter()
        if self.emulator is not None:
            account = f"system:serviceaccount:{self.ns}:kopflow-operator"
            for user, verb, resource, n in self.emulator.counts():
                if user == account:
                    out[(verb, _short(resource))] += n
            return out
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        verbs |= {"GET": "get", "LIST": "list", "WATCH": "watch", "APPLY": "patch"}
        for labels, value in self.server_samples("apiserver_request_total"):
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            out[(verbs.get(labels.get("verb", ""), labels.get("verb", "").lower()), resource)] += (
                int(value)
            )
        return out

    def server_latency(self, verb: str, resource: str) -> Counter[float]:
        """Cumulative buckets (le -> count) of the real API server's own time for `verb`
        (POST, PATCH...) on `resource`: what the server took, whoever waited for it."""
        out: Counter[float] = Counter()
        if self.emulator is not None:
            return out
        for labels, value in self.server_samples("apiserver_request_duration_seconds_bucket"):
            if labels.get("verb") != verb or labels.get("resource") != resource:
                continue
            if labels.get("subresource"):
                continue
            out[float(labels["le"])] += int(value)
        return out

    def server_samples(self, metric: str) -> Iterator[tuple[dict[str, str], float]]:
        """(labels, value) of each sample of `metric` on the real API server's /metrics."""
        for line in raw_get(self.client, "/metrics").splitlines():
            if line.startswith(metric + "{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
                yield labels, float(line.rsplit(" ", 1)[1])

    def operator_requests(self) -> Counter[tuple[str, str]]:
        """(VERB, code) -> the operator's own client requests so far (its /metrics)."""
        assert self.operator is not None
        return parse_requests(self.operator.metrics())


def _short(resource: str) -> str:
    """`jobs.batch` -> `jobs`, `workflowruns.kopflow.dev/status` -> `workflowruns/status`."""
    name, _, sub = resource.partition("/")
    return name.split(".", 1)[0] + (f"/{sub}" if sub else "")


REQUEST_LINE = re.compile(r"^kopflow_api_requests_total\{([^}]*)\} ([0-9.e+]+)$", re.M)


def parse_requests(text: str) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for labels, value in REQUEST_LINE.findall(text):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        out[(found.get("verb", ""), found.get("code", ""))] += int(float(value))
    return out


def raw_open(
    client: kubernetes.client.ApiClient,
    path: str,
    query: list[tuple[str, str]] | None = None,
    timeout: Any = 60,
) -> Any:
    """GET path with the client's credentials; the urllib3 response, not read yet."""
    method, url, headers, _, _ = client.param_serialize(
        "GET", path, query_params=query or [], auth_settings=["BearerToken"]
    )
    resp = client.call_api(method, url, header_params=headers, _request_timeout=timeout)
    if resp.status >= 400:
        raise kubernetes.client.ApiException(status=resp.status, reason=resp.reason)
    return resp.response


def raw_get(client: kubernetes.client.ApiClient, path: str) -> str:
    return str(raw_open(client, path).data.decode())


@contextmanager
def rig(backend: str, workdir: Path, kill_grace: float = 0.5) -> Iterator[Rig]:
    """A started backend with a fresh namespace and the operator's kubeconfig; stopped after."""
    workdir.mkdir(parents=True, exist_ok=True)
    emulator = plane = node = None
    client = None
    try:
        if backend == "emulator":
            emulator = EmulatorProcess(workdir / "emulator").start()
            admin = emulator.kubeconfig
        else:
            plane = ControlPlane(workdir / "cp").start()
            admin = plane.kubeconfig
            assert admin is not None
            kubectl.install_crds(admin)
            node = KubeletProcess(admin, workdir=workdir / "node", kill_grace=kill_grace).start()
        assert admin is not None
        client = kubernetes.config.new_client_from_config(config_file=str(admin))
        ns = new_namespace(client)
        token = grant_operator(client, ns)
        cluster = Cluster(
            backend=backend,
            admin_kubeconfig=admin,
            client=client,
            namespace=ns,
            operator_kubeconfig=token_kubeconfig(admin, token, workdir / "operator.kubeconfig"),
            operator_args=("-n", ns),
        )
        r = Rig(backend, cluster, workdir, emulator=emulator, plane=plane, node=node)
        try:
            yield r
        finally:
            if r.operator is not None:
                r.operator.stop()
    finally:
        if client is not None:
            client.close()
        if node is not None:
            node.stop()
        if emulator is not None:
            emulator.stop()
        if plane is not None:
            plane.stop()


# --- the driver's view ------------------------------------------------------------------------


class Stream(threading.Thread):
    """List, then watch one resource of one namespace; `handle(type, obj, received)` gets every
    event with the monotonic time its line arrived (before it is parsed)."""

    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        path: str,
        handle: Callable[[str, dict[str, Any], float], None],
    ) -> None:
        super().__init__(daemon=True, name=f"watch {path}")
        self.client, self.path, self.handle = client, path, handle
        self.stopping = threading.Event()
        self.synced = threading.Event()

    def run(self) -> None:
        version = None
        while not self.stopping.is_set():
            try:
                if version is None:
                    listing = json.loads(raw_get(self.client, self.path))
                    now = time.monotonic()
                    for item in listing.get("items") or ():
                        self.handle("ADDED", item, now)
                    version = listing["metadata"]["resourceVersion"]
                    self.synced.set()
                query = [
                    ("watch", "true"),
                    ("resourceVersion", version),
                    ("allowWatchBookmarks", "true"),
                    ("timeoutSeconds", "120"),
                ]
                resp = raw_open(self.client, self.path, query, (10, 200))
                for line in iter_resp_lines(resp):
                    received = time.monotonic()
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        version = None if obj.get("code") == 410 else version
                        break
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                    if event.get("type") != "BOOKMARK":
                        self.handle(event["type"], obj, received)
            except Exception as err:  # a dropped stream: resume (or relist on 410)
                if getattr(err, "status", None) == 410:
                    version = None
                self.stopping.wait(0.2)


def _attempt(obj: dict[str, Any]) -> tuple[str, str, str] | None:
    labels = obj.get("metadata", {}).get("labels") or {}
    run = labels.get("kopflow.dev/run")
    if not run:
        return None
    return run, labels.get("kopflow.dev/task", ""), labels.get("kopflow.dev/attempt", "")


@dataclass
class Observer:
    """What the driver saw, when: Jobs created, Pods terminated, runs finished."""

    job_seen: dict[tuple[str, str, str], float] = field(default_factory=dict)
    pod_done: dict[tuple[str, str, str], float] = field(default_factory=dict)
    run_phase: dict[str, str] = field(default_factory=dict)
    run_version: dict[str, int] = field(default_factory=dict)
    run_done: dict[str, float] = field(default_factory=dict)
    first_job: dict[str, float] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)
    streams: list[Stream] = field(default_factory=list)

    def on_job(self, kind: str, obj: dict[str, Any], at: float) -> None:
        key = _attempt(obj)
        if key is not None and key not in self.job_seen:
            self.job_seen[key] = at
            self.first_job.setdefault(key[0], at)

    def on_pod(self, kind: str, obj: dict[str, Any], at: float) -> None:
        key = _attempt(obj)
        if key is None or key in self.pod_done:
            return
        status = obj.get("status") or {}
        states = [c.get("state") or {} for c in status.get("containerStatuses") or ()]
        if status.get("phase") in ("Succeeded", "Failed") or any("terminated" in s for s in states):
            self.pod_done[key] = at

    def on_run(self, kind: str, obj: dict[str, Any], at: float) -> None:
        name = obj["metadata"]["name"]
        phase = (obj.get("status") or {}).get("phase") or ""
        version = int(obj["metadata"].get("resourceVersion") or 0)
        with self.changed:
            if version < self.run_version.get(name, 0):
                return  # a relist's copy, older than what the watch delivered meanwhile
            self.run_version[name] = version
            self.run_phase[name] = phase
            if phase in FINISHED:
                self.run_done.setdefault(name, at)
            self.changed.notify_all()

    def start(self, client: kubernetes.client.ApiClient, ns: str) -> Observer:
        self.streams = [
            Stream(client, f"/apis/batch/v1/namespaces/{ns}/jobs", self.on_job),
            Stream(client, f"/api/v1/namespaces/{ns}/pods", self.on_pod),
            Stream(client, f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/workflowruns", self.on_run),
        ]
        for s in self.streams:
            s.start()
        for s in self.streams:
            s.synced.wait(30)
        return self

    def stop(self) -> None:
        for s in self.streams:
            s.stopping.set()

    def relist_runs(self) -> None:
        """Read every run once more (a watch that fell behind must not stall the wait; a run
        found finished this way counts as finished now)."""
        if len(self.streams) < 3:
            return
        runs = self.streams[2]
        try:
            items = json.loads(raw_get(runs.client, runs.path)).get("items") or ()
        except Exception:  # the next tick tries again
            return
        now = time.monotonic()
        for item in items:
            self.on_run("MODIFIED", item, now)

    def wait_finished(self, names: list[str], timeout: float, progress: float = 0) -> bool:
        """Until every named run finished (True) or timeout (False); prints progress lines
        every `progress` seconds when > 0."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        with self.changed:
            while True:
                done = sum(1 for n in names if n in self.run_done)
                if done == len(names):
                    return True
                now = time.monotonic()
                if now >= deadline:
                    return False
                if progress and now - last >= progress:
                    last = now
                    print(f"  ... {done}/{len(names)} runs finished", flush=True)
                    self.changed.release()
                    try:
                        self.relist_runs()
                    finally:
                        self.changed.acquire()
                    continue
                self.changed.wait(min(deadline - now, 1.0))


# --- runs -------------------------------------------------------------------------------------


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


def run_body(name: str, ref: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": ref}},
    }


def bucket_quantile(before: Counter[float], after: Counter[float], q: float) -> float:
    """The q-quantile (0..1) of what was observed between two cumulative bucket snapshots,
    interpolated within its bucket as Prometheus' histogram_quantile does."""
    counts = sorted((le, after[le] - before.get(le, 0)) for le in after)
    if not counts or counts[-1][1] <= 0:
        return float("nan")
    rank, low, below = q * counts[-1][1], 0.0, 0
    for le, n in counts:
        if n >= rank:
            if le == float("inf"):
                return low
            return low + (le - low) * (rank - below) / max(n - below, 1)
        low, below = le, n
    return low


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered), math.ceil(q / 100 * len(ordered))) - 1)]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def dependency_latencies(
    observer: Observer, runs: list[str], tasks: list[tuple[str, list[str]]]
) -> tuple[list[float], int]:
    """ms from the last parent's Pod terminated to the child's Job, over every first attempt
    that has both; and how many such edges were missing."""
    out, missing = [], 0
    for run in runs:
        for task, parents in tasks:
            if not parents:
                continue
            job = observer.job_seen.get((run, task, "1"))
            ends = [observer.pod_done.get((run, p, "1")) for p in parents]
            if job is None or any(e is None for e in ends):
                missing += 1
                continue
            out.append((job - max(e for e in ends if e is not None)) * 1000)
    return out, missing


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())
