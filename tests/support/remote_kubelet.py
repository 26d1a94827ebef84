"""A simulated kubelet for a real control plane: one Node whose pods run as local processes.

On the real server the Job controller, scheduler and garbage collector are real; this plays only
the kubelet, and only through the API, as the node (it impersonates `system:node:<name>`, so the
Node authorizer lets it do what a kubelet may and no more):

- registers a Node (generous capacity, Ready, 127.0.0.1) and removes the
  `node.kubernetes.io/not-ready:NoSchedule` taint the API server puts on every new Node (no
  node-lifecycle controller runs to do it); renews a Lease in kube-node-lease (nothing in this
  controller set reads it or the Ready heartbeat: without the node-lifecycle controller a Node
  stays Ready until someone says otherwise);
- watches the pods the scheduler binds to it (fieldSelector spec.nodeName, all namespaces;
  re-lists on 410 Gone and reconnects on any error) and runs each pod's first container as a
  local process (see pod_process), its stdout+stderr kept in a log file (`logs()`);
- a referenced Secret or ConfigMap that does not exist yet keeps the container waiting with
  reason CreateContainerConfigError and the real kubelet's message, retried until it exists;
- volumes as local folders (pod_process.mount_volumes, shared with the emulator's kubelet and
  the same simulation as `kopflow run`, see kopflow.executors.mounts): Secret and ConfigMap
  keys written as files, emptyDir a fresh folder, a PVC the path of the hostPath/local
  PersistentVolume it is bound to (else a folder per claim under the workdir); an argument, env
  value or workingDir that starts with a volumeMount's mountPath is rewritten into the folder,
  and `$KOPFLOW_MOUNTS` holds the map as JSON. A missing Secret or ConfigMap keeps the
  container waiting with reason ContainerCreating, as the real kubelet does;
- writes pod status through `pods/status` (PUT with the resourceVersion; on 409 it re-reads and
  retries): Pending -> Running -> terminated, phase Succeeded/Failed for restartPolicy Never;
  OnFailure/Always restart in place up to `max_restarts` times;
- a pod deleted gracefully (deletionTimestamp set: Job deletion and garbage collection, the Job
  controller's activeDeadlineSeconds) gets SIGTERM, SIGKILL after min(grace, `kill_grace`), a
  terminal status, then the kubelet's confirming delete (grace 0, uid precondition).

- serves the kubelet's log endpoint on HTTPS 127.0.0.1:<free port> (the Node's
  daemonEndpoints.kubeletEndpoint.Port; its only address is InternalIP 127.0.0.1), so
  `kubectl logs` works through the API server's pods/log proxy: `GET /containerLogs/{namespace}/
  {pod}/{container}` with follow, tailLines, timestamps, previous, limitBytes, sinceSeconds,
  sinceTime, each run of the container kept apart (see container_logs). Any client is accepted
  (the control plane's API server presents no kubelet client certificate).

Only the first container runs (the others are reported waiting, then unknown). Tests may also
read `logs(namespace, pod)`. Not done: exec/attach/port-forward, init containers (native
sidecars included: the task runs without them), probes, Events, read-only mounts.

    kubelet = RemoteKubelet(kubeconfig).start()   # returns once the Node is Ready and untainted
    ...
    kubelet.stop()                                # kills every process it started

or as its own process (SIGTERM stops it): `python -m tests.support.remote_kubelet --kubeconfig K`,
which `KubeletProcess` starts and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime
import json
import logging
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import kubernetes
from aiohttp import web
from tests.support.rawhttp import ApiError, Http, auth_headers, ssl_context

from kopflow.executors.mounts import VolumeError

from . import apiserver_tls, container_logs, pod_process
from .pod_process import HOST_IP, ConfigError

Obj = dict[str, Any]
Key = tuple[str, str]
log = logging.getLogger("kopflow.sim.kubelet")

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
CAPACITY = {"cpu": "64", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "1Ti"}
KUBELET_VERSION = "v1.36.2"
LEASE_SECONDS = 40
WATCH_SECONDS = 240
"""Server-side timeout of one pod watch; the kubelet then resumes from its last resourceVersion."""


def now_ts() -> str:
    """RFC 3339, second precision (metav1.Time)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def micro_ts() -> str:
    """RFC 3339 with microseconds (metav1.MicroTime, used by Leases)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _terminating(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _finished(pod: Obj) -> bool:
    return _phase(pod) in ("Succeeded", "Failed")


def _pod_path(pod: Obj, sub: str = "") -> str:
    m = pod["metadata"]
    return f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}{sub}"


def _conditions(status: Obj, values: dict[str, tuple[str, str | None]], when: str) -> None:
    """Set pod conditions {type: (status, reason)}, keeping others (PodScheduled, DisruptionTarget)
    and each one's transition time while its status does not change."""
    old = {c.get("type"): c for c in status.get("conditions") or []}
    out = [c for c in status.get("conditions") or [] if c.get("type") not in values]
    for kind, (value, reason) in values.items():
        prev = old.get(kind)
        cond: Obj = {"type": kind, "status": value, "lastProbeTime": None}
        cond["lastTransitionTime"] = (
            prev["lastTransitionTime"]
            if prev and prev.get("status") == value and prev.get("lastTransitionTime")
            else when
        )
        if reason:
            cond["reason"] = reason
        out.append(cond)
    status["conditions"] = out


class _Run:
    """One pod on this node: its process and what the kubelet knows of it."""

    def __init__(self, pod: Obj) -> None:
        m = pod["metadata"]
        self.uid: str = m["uid"]
        self.key: Key = (m["namespace"], m["name"])
        self.pod = pod
        self.proc: asyncio.subprocess.Process | None = None
        self.killed_by: str | None = None  # "delete", "gone", "deadline", "timeout", "stop"
        self.wake = asyncio.Event()
        self.terminating = False
        self.evicted: str | None = None  # the eviction message
        self.mounts: dict[str, str] = {}  # mount path -> local folder
        self.task: asyncio.Task[None] | None = None


class _Http(Http):
    """Http with extra headers on every request (impersonation)."""

    extra: dict[str, str] = {}

    def headers(self) -> dict[str, str]:
        return {**super().headers(), **self.extra}


class RemoteKubelet:
    """The node of a real control plane, on its own event loop in a thread.

    Args:
        kubeconfig: a kubeconfig with rights over nodes, leases, pods, pods/status, secrets and
            configmaps (the control plane's admin kubeconfig).
        node_name: the Node to register (re-used when it exists).
        kill_grace: longest wait between SIGTERM and SIGKILL when a pod is deleted.
        max_restarts: in-place restarts for restartPolicy OnFailure/Always before the pod ends
            with its last exit (a real kubelet backs off forever).
        max_runtime: a process still running after this long is killed (so no test hangs).
        workdir: where pod homes and logs go (default: a temp dir removed by `stop()`).
    """

    def __init__(
        self,
        kubeconfig: str | Path,
        *,
        node_name: str = "kopflow-sim",
        kill_grace: float = 2.0,
        max_restarts: int = 2,
        max_runtime: float = 600.0,
        workdir: Path | None = None,
        as_node: bool = True,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.node_name = node_name
        self.kill_grace = kill_grace
        self.max_restarts = max_restarts
        self.max_runtime = max_runtime
        self.as_node = as_node
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kopflow-remote-kubelet-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), client_configuration=self.config
        )
        self.runs: dict[str, _Run] = {}  # by pod uid
        self.pods: dict[str, Obj] = {}  # last seen pod of this node, by uid
        self._logs: dict[Key, Path] = {}
        self.container_logs: dict[Key, tuple[str, list[container_logs.ContainerLog]]] = {}
        """(namespace, pod) -> (pod uid, one log per run of its first container)."""
        self.port = 0
        """The kubelet's HTTPS port (daemonEndpoints.kubeletEndpoint.Port of its Node)."""
        self.log_requests: list[str] = []
        """Paths (with query) of the containerLogs requests it served (the API server's)."""
        self._runner: web.AppRunner | None = None
        self._confirming: set[str] = set()
        self.conflicts = 0
        """Status writes answered 409 (then re-read and retried)."""
        self.lists = self.watches = 0
        """Pod lists (the first, and one after each 410 Gone) and watch requests made."""
        self.watch_seconds = WATCH_SECONDS
        self._response: aiohttp.ClientResponse | None = None
        self._gone = False
        self._done: set[str] = set()  # uids of pods whose container ended: never run again
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._http: _Http | None = None
        self._watch_session: aiohttp.ClientSession | None = None
        self._stopping = False
        self._listed = asyncio.Event()
        self.node_uid = ""

    # -- lifecycle (called from the test thread) ---------------------------------------------

    def start(self, timeout: float = 30.0) -> RemoteKubelet:
        """Register the Node and start watching; returns once the Node is Ready, untainted and
        the first pod list is in."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"kubelet-{self.node_name}", daemon=True
        )
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Kill every process it started and stop its threads (idempotent, bounded). The Node
        stays registered (as a stopped kubelet's does)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        if not loop.is_closed():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RemoteKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, fn: Callable[[], Any]) -> Any:
        loop = self._loop
        assert loop is not None, "the kubelet is not started"

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(10)

    # -- what tests read ----------------------------------------------------------------------

    def logs(self, namespace: str, pod: str) -> str | None:
        """The pod's stdout+stderr so far (its last run under this name), or None."""
        path = self._logs.get((namespace, pod))
        if path is None or not path.exists():
            return None
        return path.read_bytes().decode("utf-8", "replace")

    def running(self) -> list[Key]:
        """(namespace, name) of pods whose process is alive right now."""
        return sorted(
            self._call(
                lambda: [
                    r.key
                    for r in self.runs.values()
                    if r.proc is not None and r.proc.returncode is None
                ]
            )
        )

    def pids(self) -> list[int]:
        """Process ids of the pods it runs now (as Kubelet.pids)."""
        return list(self._call(lambda: [r.proc.pid for r in self.runs.values() if r.proc]))

    def pid(self, namespace: str, pod: str) -> int | None:
        """The process id of the pod's process while the kubelet runs it."""
        runs = self._call(lambda: [r for r in self.runs.values() if r.key == (namespace, pod)])
        return runs[0].proc.pid if runs and runs[0].proc is not None else None

    def evict(
        self, namespace: str, pod: str, message: str = "The node was low on resource: memory. "
    ) -> None:
        """Kubelet eviction: SIGKILL the process; the pod fails with reason Evicted (and the
        DisruptionTarget condition, as the eviction manager writes it) and stays."""

        def evict() -> None:
            for run in self.runs.values():
                if run.key == (namespace, pod):
                    run.killed_by, run.evicted = "evict", message
                    run.wake.set()
                    pod_process.signal_group(run.proc, signal.SIGKILL)
                    return
            raise LookupError(f"no process of pod {namespace}/{pod} runs on this node")

        self._call(evict)

    def drop_watch(self, gone: bool = False) -> None:
        """Cut the pod watch's connection, as a network fault would (for tests). With `gone`
        the next watch request is refused as after an etcd compaction (410 Gone), so the kubelet
        must list again."""

        def drop() -> None:
            self._gone = gone
            if self._response is not None:
                self._response.close()

        self._call(drop)

    # -- the loop ------------------------------------------------------------------------------

    async def _start(self) -> None:
        self._listed = asyncio.Event()
        self._http = _Http(self.config, f"kopflow-sim-kubelet/{KUBELET_VERSION} ({self.node_name})")
        self._http.extra = self._identity()
        self._watch_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context(self.config), limit=4),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        await self._serve()
        await self._register()
        self._tasks = [
            asyncio.create_task(self._watch_pods(), name="kubelet-watch"),
            asyncio.create_task(self._renew_lease(), name="kubelet-lease"),
        ]
        await self._listed.wait()

    def _identity(self) -> dict[str, str]:
        """Act as the node itself (the Node authorizer then allows what a kubelet may do: its
        own Node and Lease, pods bound to it, the Secrets and ConfigMaps they reference)."""
        if not self.as_node:
            return {}
        return {
            "Impersonate-User": f"system:node:{self.node_name}",
            "Impersonate-Group": "system:nodes",
        }

    async def _stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        runs = list(self.runs.values())
        for run in runs:
            run.killed_by = run.killed_by or "stop"
            run.wake.set()
            pod_process.signal_group(run.proc, signal.SIGKILL)
        tasks = [r.task for r in runs if r.task is not None] + self._tasks
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for run in runs:
            if run.proc is not None and run.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, TimeoutError):
                    await asyncio.wait_for(run.proc.wait(), 2)
        self.runs.clear()
        for _, logs in self.container_logs.values():
            for one in logs:
                one.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._watch_session is not None:
            await self._watch_session.close()
        if self._http is not None:
            await self._http.close()

    async def _request(self, method: str, path: str, body: Any = None, **kw: Any) -> Obj:
        assert self._http is not None
        return await self._http.request(method, path, body, **kw)

    async def _update(self, path: str, change: Callable[[Obj], None], sub: str = "") -> Obj | None:
        """Read, change, PUT with the resourceVersion; on 409 read again (bounded). None: gone."""
        for attempt in range(10):
            try:
                obj = await self._request("GET", path)
                new = copy.deepcopy(obj)
                change(new)
                if new == obj:
                    return obj
                return await self._request("PUT", path + sub, new)
            except ApiError as exc:
                if exc.status == 404:
                    return None
                if exc.status != 409 and exc.status < 500 and exc.status != 429:
                    raise
            except (aiohttp.ClientError, TimeoutError):
                if attempt == 9:
                    raise
            await asyncio.sleep(0.05 * (attempt + 1))
        raise RuntimeError(f"{path}: still conflicting after 10 attempts")

    # -- the kubelet's HTTPS endpoint --------------------------------------------------------

    async def _serve(self) -> None:
        """HTTPS on 127.0.0.1 (a free port) with the kubelet's log endpoint. The API server of
        ../shared/k8s has no --kubelet-certificate-authority (it does not verify the serving
        certificate) and no --kubelet-client-certificate (it presents none), so any client is
        accepted, as a kubelet with --anonymous-auth and AlwaysAllow would."""
        app = web.Application()
        app.router.add_get(
            "/containerLogs/{namespace}/{pod}/{container}", self._container_logs_handler
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind((HOST_IP, 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, ssl_context=apiserver_tls.server_context())
        await site.start()

    def _pod_named(self, namespace: str, name: str) -> Obj | None:
        for pod in self.pods.values():
            if (pod["metadata"]["namespace"], pod["metadata"]["name"]) == (namespace, name):
                return pod
        return None

    async def _container_logs_handler(self, request: web.Request) -> web.StreamResponse:
        """GET /containerLogs/{namespace}/{pod}/{container}, as pkg/kubelet/server answers:
        plain-text errors, 404 for a pod or container it does not know, 400 when the container
        has no log to show (container_logs.choose)."""
        self.log_requests.append(request.path_qs)
        m = request.match_info
        namespace, name, container = m["namespace"], m["pod"], m["container"]
        try:
            opts = container_logs.parse_options(request.query)
        except ValueError:
            return web.Response(status=400, text='{"message": "Unable to decode query."}')
        if container_logs.invalid_options(opts):
            return web.Response(status=422, text='{"message": "Invalid request."}')
        pod = self._pod_named(namespace, name)
        if pod is None:
            return web.Response(status=404, text=f'pod "{name}" does not exist')
        names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        if container not in names:
            return web.Response(
                status=404, text=f'container "{container}" not found in pod "{name}"'
            )
        try:
            index = container_logs.choose(pod, container, opts.previous)
        except container_logs.LogError as exc:
            return web.Response(status=exc.status, text=exc.message)
        uid, logs = self.container_logs.get((namespace, name), ("", []))
        if uid != pod["metadata"]["uid"] or not 0 <= index < len(logs) or container != names[0]:
            return web.Response(
                status=400, text=f'container "{container}" in pod "{name}": no log kept here'
            )
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            async for chunk in container_logs.serve(logs[index], opts):
                await response.write(chunk)
            await response.write_eof()
        return response

    # -- the Node ------------------------------------------------------------------------------

    def _node_status(self, status: Obj) -> None:
        when = now_ts()
        old = {c.get("type"): c for c in status.get("conditions") or []}

        def condition(kind: str, value: str, reason: str, message: str) -> Obj:
            prev = old.get(kind) or {}
            since = prev.get("lastTransitionTime") if prev.get("status") == value else None
            return {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": when,
                "lastTransitionTime": since or when,
            }

        status.update(
            capacity=dict(CAPACITY),
            allocatable=dict(CAPACITY),
            conditions=[
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            # Only InternalIP: the API server reaches the kubelet at the first address of its
            # --kubelet-preferred-address-types (default Hostname first), and the node name
            # does not resolve here.
            addresses=[{"type": "InternalIP", "address": HOST_IP}],
            daemonEndpoints={"kubeletEndpoint": {"Port": self.port}},
            nodeInfo={
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, self.node_name).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.node_name)),
                "bootID": str(uuid.uuid4()),
                "kernelVersion": platform.release(),
                "osImage": "kopflow simulated node",
                "containerRuntimeVersion": "sim://1.0.0",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        )

    async def _register(self) -> None:
        """Create (or adopt) the Node, report it Ready, and drop the not-ready taint."""
        name = self.node_name
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
        }
        with contextlib.suppress(ApiError):  # 409: registered before (a restarted kubelet)
            await self._request("POST", "/api/v1/nodes", body)
        path = f"/api/v1/nodes/{name}"
        node = await self._update(
            path, lambda o: self._node_status(o.setdefault("status", {})), "/status"
        )
        assert node is not None
        self.node_uid = node["metadata"]["uid"]

        def untaint(o: Obj) -> None:
            spec = o.setdefault("spec", {})
            taints = [t for t in spec.get("taints") or [] if t.get("key") != NOT_READY_TAINT]
            if taints:
                spec["taints"] = taints
            else:
                spec.pop("taints", None)
            spec.pop("unschedulable", None)

        await self._update(path, untaint)

    async def _renew_lease(self) -> None:
        """The node heartbeat Lease (kube-node-lease/<node>), every LEASE_SECONDS / 4."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        while True:
            try:
                await self._request(
                    "PATCH",
                    path,
                    {"spec": {"renewTime": micro_ts(), "holderIdentity": self.node_name}},
                    content_type="application/merge-patch+json",
                )
            except ApiError as exc:
                if exc.status != 404:
                    log.warning("lease renewal: %s", exc)
                else:
                    with contextlib.suppress(ApiError):
                        await self._request("POST", path.rsplit("/", 1)[0], self._lease())
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("lease renewal: %r", exc)
            await asyncio.sleep(LEASE_SECONDS / 4)

    def _lease(self) -> Obj:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.node_name,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "name": self.node_name,
                        "uid": self.node_uid,
                    }
                ],
            },
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": micro_ts(),
            },
        }

    # -- the pod watch -------------------------------------------------------------------------

    async def _watch_pods(self) -> None:
        """List, then watch from the list's resourceVersion; re-list on 410, retry on errors."""
        selector = quote(f"spec.nodeName={self.node_name}")
        rv: str | None = None
        failures = 0
        while not self._stopping:
            try:
                if rv is None:
                    self.lists += 1
                    listed = await self._request("GET", f"/api/v1/pods?fieldSelector={selector}")
                    rv = str(listed["metadata"]["resourceVersion"])
                    self._relisted(listed.get("items") or [])
                    self._listed.set()
                url = (
                    f"/api/v1/pods?watch=1&fieldSelector={selector}&resourceVersion={rv}"
                    f"&allowWatchBookmarks=true&timeoutSeconds={self.watch_seconds}"
                )
                self.watches += 1
                if self._gone:
                    self._gone = False
                    raise ApiError(410, {"reason": "Expired", "message": "injected: too old"})
                async for kind, obj in self._stream(url):
                    failures = 0
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            rv = None
                            break
                        raise ApiError(int(obj.get("code") or 500), obj)
                    rv = str(obj["metadata"].get("resourceVersion") or rv)
                    if kind == "BOOKMARK":
                        continue
                    self._on_pod(kind, obj)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.status == 410:
                    rv = None
                    continue
                failures += 1
                log.warning("pod watch: %s", exc)
            except Exception as exc:  # connection reset, API server restart, bad chunk...
                failures += 1
                log.warning("pod watch: %r", exc)
            if failures:
                await asyncio.sleep(min(2.0, 0.05 * 2**failures))

    async def _stream(self, path: str) -> AsyncIterator[tuple[str, Obj]]:
        """The events of one watch request, each line decoded (lines of any length)."""
        assert self._watch_session is not None
        headers = {**auth_headers(self.config, "kopflow-sim-kubelet"), **self._identity()}
        async with self._watch_session.get(
            self.config.host + path,
            headers=headers,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=10, sock_read=self.watch_seconds + 30
            ),
        ) as resp:
            self._response = resp
            if resp.status >= 400:
                text = await resp.text()
                try:
                    body = json.loads(text)
                except ValueError:
                    body = {"message": text[:200]}
                raise ApiError(resp.status, body)
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        yield str(event.get("type")), event.get("object") or {}

    def _relisted(self, items: list[Obj]) -> None:
        """A fresh list: pods gone meanwhile are deleted; pods Running without a process here
        (left by an earlier kubelet of this node) have lost their container."""
        seen = {p["metadata"]["uid"] for p in items}
        for uid, pod in list(self.pods.items()):
            if uid not in seen:
                self._on_pod("DELETED", pod)
        for pod in items:
            uid = pod["metadata"]["uid"]
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            started = any("running" in (s.get("state") or {}) for s in statuses)
            if uid not in self.runs and started and not _finished(pod) and not _terminating(pod):
                self.pods[uid] = pod
                self._spawn(self._lost(pod), uid)
                continue
            self._on_pod("ADDED", pod)

    def _spawn(self, coro: Any, uid: str) -> None:
        """Run a one-off pod task (confirm a deletion, fail a lost pod) once per pod."""
        if uid in self._confirming:
            coro.close()
            return
        self._confirming.add(uid)

        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pod %s", uid)
            finally:
                self._confirming.discard(uid)

        task = asyncio.create_task(guarded())
        self._tasks.append(task)
        task.add_done_callback(lambda t: t in self._tasks and self._tasks.remove(t))

    def _on_pod(self, kind: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        run = self.runs.get(uid)
        if kind == "DELETED":
            self.pods.pop(uid, None)
            self._done.discard(uid)
            if run is not None:  # gone for good (grace 0, or confirmed): nothing to report to
                run.killed_by = run.killed_by or "gone"
                run.wake.set()
                pod_process.signal_group(run.proc, signal.SIGKILL)
            return
        if (pod.get("spec") or {}).get("nodeName") != self.node_name:
            return
        self.pods[uid] = pod
        if run is not None:
            run.pod = pod
            if _terminating(pod) and run.killed_by is None:
                run.killed_by = "delete"
                run.wake.set()
                self._terminate(run)
            return
        if _terminating(pod):
            self._spawn(self._confirm_unstarted(pod), uid)
        elif not _finished(pod) and not self._stopping and uid not in self._done:
            run = _Run(pod)
            self.runs[uid] = run
            run.task = asyncio.create_task(self._run_pod(run), name=f"pod-{run.key}")

    def _terminate(self, run: _Run) -> None:
        """SIGTERM the deleted pod's process, SIGKILL after min(its grace, kill_grace); once."""
        if run.proc is None or run.terminating:
            return  # not started yet: _run_container terminates it once it is
        run.terminating = True
        grace = float(run.pod["metadata"].get("deletionGracePeriodSeconds") or 0)
        task = asyncio.create_task(pod_process.terminate(run.proc, min(grace, self.kill_grace)))
        self._tasks.append(task)
        task.add_done_callback(lambda t: t in self._tasks and self._tasks.remove(t))

    # -- pod status ----------------------------------------------------------------------------

    async def _write_status(self, uid: str, pod: Obj, change: Callable[[Obj], None]) -> bool:
        """PUT pods/status from the last seen pod changed by `change`; on 409 re-read and retry.
        False when the pod (this uid) is gone."""
        current: Obj | None = self.pods.get(uid) or pod
        for attempt in range(10):
            try:
                if current is None:
                    current = await self._request("GET", _pod_path(pod))
                    if current["metadata"]["uid"] != uid:
                        return False
                new = copy.deepcopy(current)
                change(new.setdefault("status", {}))
                if new.get("status") == current.get("status"):
                    return True
                written = await self._request("PUT", _pod_path(pod, "/status"), new)
            except ApiError as exc:
                if exc.status == 404:
                    return False
                if exc.status != 409 and exc.status < 500 and exc.status != 429:
                    log.warning("status of %s: %s", _pod_path(pod), exc)
                    return False
                self.conflicts += exc.status == 409
                current = None
                await asyncio.sleep(0.01 * attempt)
                continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("status of %s: %r", _pod_path(pod), exc)
                current = None
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            if uid in self.pods:
                self.pods[uid] = written
            return True
        log.warning("status of %s: gave up after 10 conflicts", _pod_path(pod))
        return False

    def _base_status(self, status: Obj, when: str) -> None:
        status.update(
            hostIP=HOST_IP,
            hostIPs=[{"ip": HOST_IP}],
            podIP=HOST_IP,
            podIPs=[{"ip": HOST_IP}],
        )
        status.setdefault("startTime", when)

    def _waiting(self, pod: Obj, reason: str, message: str) -> Callable[[Obj], None]:
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        names = ",".join(str(c.get("name", "")) for c in containers)

        def change(status: Obj) -> None:
            when = now_ts()
            self._base_status(status, when)
            status["phase"] = "Pending"
            _conditions(
                status,
                {
                    "PodReadyToStartContainers": ("True", None),
                    "Initialized": ("True", None),
                    "Ready": ("False", "ContainersNotReady"),
                    "ContainersReady": ("False", "ContainersNotReady"),
                },
                when,
            )
            for c in status["conditions"]:
                if c["type"] in ("Ready", "ContainersReady"):
                    c["message"] = f"containers with unready status: [{names}]"
            status["containerStatuses"] = [
                {
                    **pod_process.container_status(
                        c,
                        {
                            "waiting": {
                                "reason": reason,
                                **({"message": message} if message else {}),
                            }
                        },
                        0,
                    ),
                    "imageID": "",
                }
                for c in containers
            ]

        return change

    def _running(
        self, pod: Obj, state: Obj, restarts: int, last: Obj | None, cid: str
    ) -> Callable[[Obj], None]:
        containers = (pod.get("spec") or {}).get("containers") or [{}]

        def change(status: Obj) -> None:
            when = now_ts()
            self._base_status(status, when)
            status["phase"] = "Running"
            _conditions(
                status,
                {
                    t: ("True", None)
                    for t in (
                        "PodReadyToStartContainers",
                        "Initialized",
                        "Ready",
                        "ContainersReady",
                    )
                },
                when,
            )
            status["containerStatuses"] = [
                pod_process.container_status(containers[0], state, restarts, last, cid)
            ] + [
                pod_process.container_status(c, {"waiting": {"reason": "NotRun"}}, 0)
                for c in containers[1:]
            ]

        return change

    def _terminal(
        self,
        pod: Obj,
        phase: str,
        state: Obj,
        restarts: int = 0,
        last: Obj | None = None,
        reason: tuple[str, str] | None = None,
    ) -> Callable[[Obj], None]:
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        cid = state.get("terminated", {}).get("containerID")

        def change(status: Obj) -> None:
            when = now_ts()
            self._base_status(status, when)
            status["phase"] = phase
            if reason is not None:
                status["reason"], status["message"] = reason
            why = "PodCompleted" if phase == "Succeeded" else "PodFailed"
            values: dict[str, tuple[str, str | None]] = {
                "PodReadyToStartContainers": ("False", None),
                "Initialized": ("True", None),
                "Ready": ("False", why),
                "ContainersReady": ("False", why),
            }
            if reason is not None and reason[0] == "Evicted":
                values["DisruptionTarget"] = ("True", "TerminationByKubelet")
            _conditions(status, values, when)
            for c in status["conditions"]:
                if c["type"] == "DisruptionTarget" and reason is not None:
                    c["message"] = reason[1]
            status["containerStatuses"] = [
                pod_process.container_status(containers[0], state, restarts, last, cid)
            ] + [pod_process.container_status(c, _unknown(when), 0) for c in containers[1:]]

        return change

    # -- running a pod -------------------------------------------------------------------------

    async def _fetch(
        self,
        pod: Obj,
        wanted: Any,
        convert: Callable[[str, Obj | None], Any],
    ) -> dict[pod_process.Source, Any]:
        """Each (kind, name) Secret or ConfigMap the pod needs, read as the node (None: missing)."""
        namespace = pod["metadata"]["namespace"]
        out: dict[pod_process.Source, Any] = {}
        for kind, name in wanted:
            try:
                obj = await self._request("GET", f"/api/v1/namespaces/{namespace}/{kind}s/{name}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                obj = None
            out[(kind, name)] = convert(kind, obj)
        return out

    async def _sources(self, pod: Obj, container: Obj) -> dict[pod_process.Source, Any]:
        return await self._fetch(pod, pod_process.sources(container), pod_process.object_data)

    async def _volume_files(self, pod: Obj) -> dict[pod_process.Source, Any]:
        return await self._fetch(pod, pod_process.volume_objects(pod), pod_process.object_files)

    async def _claim_folder(self, namespace: str, claim: str) -> Path:
        """Where a claim's data lives: the path of the hostPath or local PersistentVolume it is
        bound to (as a one-node cluster's provisioner would give), else a folder per claim."""
        with contextlib.suppress(ApiError):
            pvc = await self._request(
                "GET", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}"
            )
            volume = (pvc.get("spec") or {}).get("volumeName")
            if volume:
                pv = (await self._request("GET", f"/api/v1/persistentvolumes/{volume}")).get(
                    "spec"
                ) or {}
                local = (pv.get("hostPath") or pv.get("local") or {}).get("path")
                if local:
                    return Path(local)
        return self.workdir / "pvc" / namespace / claim

    async def _run_pod(self, run: _Run) -> None:
        """Prepare, start, watch and report the pod's first container until it ends; then, if
        the pod is being deleted, confirm the deletion."""
        pod = run.pod
        namespace, name = run.key
        try:
            container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
            home = self.workdir / f"{namespace}_{name}_{run.uid[:8]}"
            home.mkdir(parents=True, exist_ok=True)
            log_path = home / "log.txt"
            log_path.touch()
            self._logs[run.key] = log_path
            self.container_logs[run.key] = (run.uid, [])
            message_file = home / "termination-log"
            env = await self._prepare(run, container, str(home), str(message_file))
            if env is None:
                return
            restarts, last = 0, None
            while True:
                message_file.write_bytes(b"")
                final = await self._run_container(
                    run, container, env, home, log_path, restarts, last
                )
                policy = (run.pod.get("spec") or {}).get("restartPolicy", "Always")
                code = final["terminated"]["exitCode"]
                again = policy == "Always" or (policy == "OnFailure" and code != 0)
                if not again or run.killed_by is not None or restarts >= self.max_restarts:
                    break
                restarts, last = restarts + 1, final
            if run.killed_by in ("gone", "stop"):
                return
            phase = "Succeeded" if final["terminated"]["exitCode"] == 0 else "Failed"
            reason = None
            if run.evicted is not None:
                phase, reason = "Failed", ("Evicted", run.evicted)
            elif run.killed_by == "deadline":
                phase, reason = (
                    "Failed",
                    (
                        "DeadlineExceeded",
                        "Pod was active on the node longer than the specified deadline",
                    ),
                )
            await self._write_status(
                run.uid, run.pod, self._terminal(run.pod, phase, final, restarts, last, reason)
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s", namespace, name)
        finally:
            if self.runs.get(run.uid) is run:
                del self.runs[run.uid]
            if run.uid in self.pods:
                self._done.add(run.uid)
        latest = self.pods.get(run.uid)
        if latest is not None and _terminating(latest) and not self._stopping:
            await self._confirm(latest)

    async def _prepare(
        self, run: _Run, container: Obj, home: str, message_path: str
    ) -> dict[str, str] | None:
        """The container's env; while a referenced object or key is missing the container waits
        (CreateContainerConfigError) and the kubelet retries. None: the pod went away."""
        delay, shown = 0.1, None
        while run.killed_by is None:
            try:
                files = await self._volume_files(run.pod)
                folders = {
                    claim: await self._claim_folder(run.key[0], claim)
                    for claim in pod_process.claims(run.pod)
                }
                run.mounts = pod_process.mount_volumes(
                    run.pod, container, files, Path(home) / "volumes", folders, self.node_name
                )
                data = await self._sources(run.pod, container)
                return pod_process.build_env(
                    run.pod,
                    container,
                    data,
                    node_name=self.node_name,
                    home=home,
                    message_path=message_path,
                    mounts=run.mounts,
                )
            except VolumeError as exc:
                # the real kubelet: ContainerCreating (no message), a FailedMount Event
                if str(exc) != shown:
                    shown = str(exc)
                    log.info("pod %s/%s: %s", *run.key, shown)
                    change = self._waiting(run.pod, "ContainerCreating", "")
                    await self._write_status(run.uid, run.pod, change)
            except ConfigError as exc:
                if str(exc) != shown:
                    shown = str(exc)
                    change = self._waiting(run.pod, "CreateContainerConfigError", shown)
                    await self._write_status(run.uid, run.pod, change)
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("env of %s: %r", run.key, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.wake.wait(), delay)
            delay = min(1.0, delay * 2)
        if run.killed_by == "delete":
            await self._write_status(
                run.uid, run.pod, self._terminal(run.pod, "Failed", _unknown(now_ts()))
            )
        return None

    async def _run_container(
        self,
        run: _Run,
        container: Obj,
        env: dict[str, str],
        home: Path,
        log_path: Path,
        restarts: int,
        last: Obj | None,
    ) -> Obj:
        """Run the process once; return its `terminated` state."""
        argv = pod_process.command(container, env, run.mounts)
        started = now_ts()
        if not argv:
            return pod_process.start_error(started, now_ts(), "no command specified")
        out = container_logs.ContainerLog(
            home / f"{container.get('name', '')}-{restarts}.log", plain=log_path
        )
        try:
            run.proc = await pod_process.spawn(
                argv, env, pod_process.working_dir(container, home, run.mounts), log_path, out
            )
        except OSError as exc:
            return pod_process.start_error(started, now_ts(), f"exec: {exc}")
        self.container_logs.setdefault(run.key, (run.uid, []))[1].append(out)
        cid = f"sim://{run.uid[:8]}-{restarts}-{run.proc.pid}"
        if run.killed_by is None:
            running = {"running": {"startedAt": started}}
            await self._write_status(
                run.uid, run.pod, self._running(run.pod, running, restarts, last, cid)
            )
        if run.killed_by == "delete":  # deleted while it started
            self._terminate(run)
        elif run.killed_by is not None:
            pod_process.signal_group(run.proc, signal.SIGKILL)
        await self._wait(run)
        await out.drained()
        code = run.proc.returncode
        assert code is not None
        return pod_process.terminated(
            code,
            signalled_by_us=run.killed_by is not None,
            started=started,
            finished=now_ts(),
            message=pod_process.read_message(home / "termination-log", container, log_path, code),
            cid=cid,
        )

    async def _wait(self, run: _Run) -> None:
        """Wait for the process, enforcing the pod's activeDeadlineSeconds and max_runtime."""
        assert run.proc is not None
        limit, why = self.max_runtime, "timeout"
        deadline = (run.pod.get("spec") or {}).get("activeDeadlineSeconds")
        start = (run.pod.get("status") or {}).get("startTime")
        if deadline is not None:
            elapsed = time.time() - _parse(start) if start else 0.0
            if float(deadline) - elapsed < limit:
                limit, why = max(0.0, float(deadline) - elapsed), "deadline"
        try:
            await asyncio.wait_for(asyncio.shield(run.proc.wait()), limit)
        except TimeoutError:
            run.killed_by = run.killed_by or why
            await pod_process.terminate(run.proc, 0)

    async def _confirm(self, pod: Obj) -> None:
        """The kubelet's last word on a gracefully deleted pod: delete it with grace 0."""
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": pod["metadata"]["uid"]},
        }
        for attempt in range(5):
            try:
                await self._request("DELETE", _pod_path(pod), body)
                return
            except ApiError as exc:
                if exc.status in (404, 409):
                    return
                log.warning("delete %s: %s", _pod_path(pod), exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("delete %s: %r", _pod_path(pod), exc)
            await asyncio.sleep(0.1 * (attempt + 1))

    async def _confirm_unstarted(self, pod: Obj) -> None:
        """A pod deleted before (or after) it ran: a terminal status if it has none, then the
        confirming delete."""
        if not _finished(pod):
            await self._write_status(
                pod["metadata"]["uid"], pod, self._terminal(pod, "Failed", _unknown(now_ts()))
            )
        await self._confirm(pod)

    async def _lost(self, pod: Obj) -> None:
        """A pod that was running under an earlier kubelet of this node: its process is gone."""
        await self._write_status(
            pod["metadata"]["uid"], pod, self._terminal(pod, "Failed", _unknown(now_ts()))
        )


def _unknown(when: str) -> Obj:
    """The state the kubelet reports for a container it cannot find."""
    return {
        "terminated": {
            "exitCode": 137,
            "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
            "startedAt": when,
            "finishedAt": when,
        }
    }


def _parse(ts: str) -> float:
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def read_log(workdir: Path, namespace: str, pod: str) -> str | None:
    """A pod's log from a kubelet's workdir (the newest pod of that name), or None."""
    found = sorted(workdir.glob(f"{namespace}_{pod}_*/log.txt"), key=lambda p: p.stat().st_mtime_ns)
    return found[-1].read_bytes().decode("utf-8", "replace") if found else None


class KubeletProcess:
    """The kubelet as its own process (`python -m tests.support.remote_kubelet`), so that a
    benchmark's node does not take the CPU of the process under test.

        node = KubeletProcess(kubeconfig, workdir=tmp_path / "node").start()
        ... node.logs(namespace, pod) ...
        node.stop()   # SIGTERM: it kills its processes and exits 0
    """

    def __init__(
        self,
        kubeconfig: str | Path,
        *,
        workdir: Path,
        node_name: str = "kopflow-sim",
        kill_grace: float = 2.0,
    ) -> None:
        self.kubeconfig, self.workdir, self.node_name = Path(kubeconfig), workdir, node_name
        self.kill_grace = kill_grace
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> KubeletProcess:
        """Start it; returns once its Node is Ready and untainted."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parents[2]
        with (self.workdir / "kubelet.log").open("a") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.support.remote_kubelet",
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--node",
                    self.node_name,
                    "--workdir",
                    str(self.workdir),
                    "--kill-grace",
                    str(self.kill_grace),
                ],
                cwd=root,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().strip() if ready else ""
        if line != f"node {self.node_name} ready":
            self.stop()
            log_text = (self.workdir / "kubelet.log").read_text()[-3000:]
            raise RuntimeError(f"the kubelet process did not get ready: {line!r}\n{log_text}")
        return self

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; its exit code (0 for a clean stop)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def logs(self, namespace: str, pod: str) -> str | None:
        return read_log(self.workdir, namespace, pod)


def main(argv: list[str] | None = None) -> int:
    """Run the kubelet as its own process until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.remote_kubelet")
    parser.add_argument("--kubeconfig", required=True, help="admin kubeconfig of the control plane")
    parser.add_argument("--node", default="kopflow-sim", help="Node name (default kopflow-sim)")
    parser.add_argument("--kill-grace", type=float, default=2.0)
    parser.add_argument(
        "--workdir", type=Path, help="keep pod homes and logs here: <namespace>_<pod>_<uid8>/"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    kubelet = RemoteKubelet(
        args.kubeconfig, node_name=args.node, kill_grace=args.kill_grace, workdir=args.workdir
    )
    kubelet.start()
    print(f"node {args.node} ready", flush=True)
    try:
        while not done.wait(1.0):
            pass
    finally:
        kubelet.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
