"""A simulated node for the emulator: scheduler, kubelet and the Job controller in one.

The Job controller turns each Job into a Pod (owned by the Job, with the job-name labels and the
`batch.kubernetes.io/job-tracking` finalizer) and writes the Job status a v1.36 controller writes:
active/succeeded/failed counts, startTime, completionTime and the conditions SuccessCriteriaMet +
Complete, or FailureTarget + Failed with reason BackoffLimitExceeded or DeadlineExceeded. It
replaces failed pods after `job_backoff` seconds while backoffLimit allows, and deletes finished
Jobs after ttlSecondsAfterFinished (as the TTL controller does). Not modelled: indexed Jobs,
podFailurePolicy, successPolicy, suspending a running Job.

The kubelet binds pods to its node and runs the first container's command + args as a local
process in its own process group (the image is ignored; never through a shell unless the command
is one; see pod_process, shared with remote_kubelet). The process gets the container's env
(plain values, valueFrom, envFrom; while a referenced Secret, ConfigMap or key is missing the
container waits with reason CreateContainerConfigError, as on a real node, until it exists), a
temp file in place of the terminationMessagePath, and its output is served as the pod log.
Volumes become local folders and mount paths in args, env values and workingDir are rewritten
into them (pod_process.mount_volumes, as remote_kubelet and `kopflow run` do; a PVC is one
folder per claim under `<workdir>/pvc/<namespace>/`); a missing Secret or ConfigMap of a volume
keeps the container waiting with reason ContainerCreating.
Pod status goes Pending -> Running -> terminated with exit code, reason
(Completed, Error, OOMKilled when the process dies of SIGKILL it did not send, StartError when it
cannot start) and the termination message (at most 4096 bytes).

Faults: `start_delay` holds pods in Pending; `evict()` kills a pod's process and fails it with
reason Evicted; `lose_node_of()` is a node lost: the process is killed and the pod is marked
Failed (DisruptionTarget, DeletionByPodGC) and deleted, as the pod garbage collector does, so the
Job counts a failure (with backoffLimit 0: Failed, BackoffLimitExceeded; with more, a new
pod). Deleting a pod (e.g. by owner-reference garbage collection of its Job) stops its process:
SIGTERM, then SIGKILL after min(grace period, `kill_grace`).

Only the first container runs (init containers and native sidecars do not); a pod without
command runs its args; restartPolicy OnFailure/Always restarts the process in place up to
`max_restarts` times, then the pod ends with the last exit (real kubelets back off forever).

Everything runs on the emulator's event loop, talks to its store directly (so fault injection
and request counts only see the clients under test), and `stop()` kills every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from kopflow.executors.mounts import VolumeError

from . import container_logs, pod_process
from .apiserver import ApiServer
from .apiserver_store import terminating
from .apiserver_types import ApiError, Obj, ResourceType, now_ts, parse_ts
from .pod_process import expand

JOB_TRACKING = "batch.kubernetes.io/job-tracking"
MESSAGE_LIMIT = pod_process.MESSAGE_LIMIT
LOG_LIMIT = 1 << 20
Key = tuple[str, str]
__all__ = ["JOB_TRACKING", "Kubelet", "expand"]


def _condition(kind: str, reason: str, message: str, when: str) -> Obj:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": when,
        "lastTransitionTime": when,
    }


def _finished(job: Obj) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


class _Run:
    """One pod's process and what the kubelet knows about it."""

    def __init__(self, key: Key, uid: str) -> None:
        self.key, self.uid = key, uid
        self.task: asyncio.Task[None] | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.killed_by: str | None = None  # "delete", "evict", "lost", "deadline", "timeout"
        self.mounts: dict[str, str] = {}  # mount path -> local folder


class Kubelet:
    """Scheduler + kubelet + Job controller on the emulator's loop.

    Args:
        apiserver: a started ApiServer.
        node_name: the node every pod is bound to.
        start_delay: seconds a bound pod stays Pending before its process starts.
        max_runtime: a process still running after this long is killed (reason Error).
        kill_grace: longest wait between SIGTERM and SIGKILL when a pod is deleted.
        job_backoff: seconds before a Job replaces a failed pod (when backoffLimit allows one).
        max_restarts: container restarts for restartPolicy OnFailure/Always before giving up.
        job_controller: also run the Job controller (off: only pods created by the test run).
    """

    def __init__(
        self,
        apiserver: ApiServer,
        *,
        node_name: str = "kopflow-sim-node",
        start_delay: float = 0.0,
        max_runtime: float = 120.0,
        kill_grace: float = 2.0,
        job_backoff: float = 0.5,
        max_restarts: int = 2,
        job_controller: bool = True,
    ) -> None:
        self.apiserver, self.store = apiserver, apiserver.store
        self.node_name = node_name
        self.start_delay = start_delay
        self.max_runtime = max_runtime
        self.kill_grace = kill_grace
        self.job_backoff = job_backoff
        self.max_restarts = max_restarts
        self.job_controller = job_controller
        self.runs: dict[Key, _Run] = {}
        self.logs: dict[Key, Path] = {}
        self.container_logs: dict[Key, tuple[str, list[container_logs.ContainerLog]]] = {}
        """(namespace, pod) -> (pod uid, one log per run of its first container)."""
        self.dirty: set[tuple[str, str, str]] = set()
        self.timers: dict[tuple[str, str, str], asyncio.TimerHandle] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="kopflow-kubelet-"))
        self._scheduled = False
        self._started = False
        self.pods: ResourceType = self.store.storage[("", "pods")]
        self.jobs: ResourceType = self.store.storage[("batch", "jobs")]
        self.events: ResourceType = self.store.storage[("", "events")]

    # -- lifecycle (called from the test thread) ------------------------------------------------

    def start(self) -> Kubelet:
        self.apiserver.call(self._start)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Kill every process, cancel every task, forget the node (idempotent)."""
        loop = self.apiserver.loop
        if not self._started or loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout)

    def __enter__(self) -> Kubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        self._started = True
        self.store.listeners.append(self._on_event)
        self.apiserver.log_source = self._serve_log
        self.apiserver.shutdown_hooks.append(self._stop)
        for rt, kind in ((self.pods, "pod"), (self.jobs, "job")):
            for obj in self.store.iter_objects(rt, None):
                self._enqueue(kind, obj["metadata"]["namespace"], obj["metadata"]["name"])

    async def _stop(self) -> None:
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(ValueError):
            self.store.listeners.remove(self._on_event)
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        runs = list(self.runs.values())
        for run in runs:
            run.killed_by = run.killed_by or "stop"
            self._signal(run, signal.SIGKILL)
        tasks = [r.task for r in runs if r.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for run in runs:
            if run.proc is not None and run.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, asyncio.TimeoutError):
                    await asyncio.wait_for(run.proc.wait(), 2)
        self.runs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- test controls ---------------------------------------------------------------------------

    def evict(
        self, namespace: str, name: str, message: str = "The node was low on resource: memory."
    ) -> None:
        """Kubelet eviction: kill the process; the pod fails with reason Evicted."""
        self.apiserver.call(self._disrupt, namespace, name, "evict", message)

    def lose_node_of(self, namespace: str, name: str) -> None:
        """The pod's node vanishes: process killed, pod failed by the pod GC and deleted."""
        self.apiserver.call(self._disrupt, namespace, name, "lost", "")

    def running(self) -> list[Key]:
        """(namespace, name) of pods whose process is alive right now."""

        def alive() -> list[Key]:
            return sorted(
                k for k, r in self.runs.items() if r.proc is not None and r.proc.returncode is None
            )

        return self.apiserver.call(alive)

    def logs(self, namespace: str, pod: str) -> str | None:
        """The pod's stdout+stderr so far (as RemoteKubelet.logs), or None."""
        return self._log(namespace, pod, None)

    def pids(self) -> list[int]:
        return self.apiserver.call(
            lambda: [r.proc.pid for r in self.runs.values() if r.proc is not None]
        )

    # -- event intake ----------------------------------------------------------------------------

    def _on_event(self, rt: ResourceType, kind: str, obj: Obj, old: Obj | None) -> None:
        m = obj["metadata"]
        if rt is self.pods:
            self._enqueue("pod", m["namespace"], m["name"])
            for ref in m.get("ownerReferences") or []:
                if ref.get("kind") == "Job" and ref.get("controller"):
                    self._enqueue("job", m["namespace"], ref["name"])
        elif rt is self.jobs:
            self._enqueue("job", m["namespace"], m["name"])

    def _enqueue(self, kind: str, namespace: str, name: str) -> None:
        if not self._started:
            return
        self.dirty.add((kind, namespace, name))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _later(self, delay: float, kind: str, namespace: str, name: str) -> None:
        key = (kind, namespace, name)
        if key in self.timers:
            self.timers[key].cancel()
        loop = asyncio.get_running_loop()
        self.timers[key] = loop.call_later(max(0.0, delay), self._fire, key)

    def _fire(self, key: tuple[str, str, str]) -> None:
        self.timers.pop(key, None)
        self._enqueue(*key)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self.dirty = self.dirty, set()
        for kind, namespace, name in sorted(batch):
            try:
                (self._sync_pod if kind == "pod" else self._sync_job)(namespace, name)
            except ApiError:
                self._later(0.2, kind, namespace, name)  # raced with a client's write: retry

    # -- pods ------------------------------------------------------------------------------------

    def _sync_pod(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        pod = self.store.find(self.pods, namespace, name)
        run = self.runs.get(key)
        if pod is None or (run is not None and run.uid != pod["metadata"]["uid"]):
            if run is not None:  # force-deleted: nothing left to report to
                run.killed_by = run.killed_by or "delete"
                self._signal(run, signal.SIGKILL)
            if pod is None:
                return
        spec = pod.get("spec") or {}
        if not spec.get("nodeName"):
            if spec.get(
                "schedulerName", "default-scheduler"
            ) == "default-scheduler" and not terminating(pod):
                self._bind(pod)
            return
        if spec["nodeName"] != self.node_name:
            return
        self._release_job_finalizer(pod)
        if terminating(pod):
            if run is not None and run.proc is not None and run.proc.returncode is None:
                if run.killed_by is None:
                    run.killed_by = "delete"
                    grace = min(
                        float(pod["metadata"].get("deletionGracePeriodSeconds") or 0),
                        self.kill_grace,
                    )
                    asyncio.get_running_loop().create_task(self._terminate(run, grace))
            elif run is None or run.task is None or run.task.done():
                if _phase(pod) not in ("Succeeded", "Failed"):
                    self._fail_unstarted(pod)
                self.store.delete(self.pods, namespace, name, {"gracePeriodSeconds": 0})
            return
        if _phase(pod) in ("Succeeded", "Failed") or key in self.runs:
            return
        run = _Run(key, pod["metadata"]["uid"])
        self.runs[key] = run
        run.task = asyncio.get_running_loop().create_task(self._run_pod(run))

    def _fail_unstarted(self, pod: Obj) -> None:
        """A pod deleted before its process ran ends Failed, as the kubelet reports it."""
        when = now_ts()
        terminated = {
            "exitCode": 137,
            "reason": "ContainerStatusUnknown",
            "startedAt": when,
            "finishedAt": when,
            "message": "The container could not be located when the pod was terminated",
        }

        def fail(o: Obj) -> None:
            status = o.setdefault("status", {})
            status["phase"] = "Failed"
            status["containerStatuses"] = [
                self._container_status(c, {"terminated": terminated}, 0)
                for c in (o.get("spec") or {}).get("containers") or [{}]
            ]

        self._write_status(pod, fail)

    def _bind(self, pod: Obj) -> None:
        m = pod["metadata"]
        when = now_ts()

        def bind(o: Obj) -> None:
            o["spec"]["nodeName"] = self.node_name

        def scheduled(o: Obj) -> None:
            conditions = [
                c
                for c in (o.setdefault("status", {}).get("conditions") or [])
                if c.get("type") != "PodScheduled"
            ]
            conditions.append(
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": when,
                }
            )
            o["status"]["conditions"] = conditions

        self.store.mutate(self.pods, m["namespace"], m["name"], bind)
        self.store.mutate(self.pods, m["namespace"], m["name"], scheduled, subresource="status")

    async def _terminate(self, run: _Run, grace: float) -> None:
        await pod_process.terminate(run.proc, grace)

    @staticmethod
    def _signal(run: _Run, sig: int) -> None:
        pod_process.signal_group(run.proc, sig)

    def _disrupt(self, namespace: str, name: str, how: str, message: str) -> None:
        pod = self.store.get(self.pods, namespace, name)
        run = self.runs.get((namespace, name))
        if run is not None:
            run.killed_by = how
            self._signal(run, signal.SIGKILL)
        if run is None or run.task is None or run.task.done():
            self._fail_disrupted(pod, how, message, None)

    def _fail_disrupted(self, pod: Obj, how: str, message: str, started: str | None) -> None:
        """Status of an evicted pod, or of one the pod GC removes after its node was lost."""
        m = pod["metadata"]
        when = now_ts()
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        if how == "evict":
            reason, condition = (
                "Evicted",
                ("TerminationByKubelet", "Pod was evicted by the kubelet"),
            )
            terminated = {"exitCode": 137, "reason": "Error"}
        else:
            reason, condition = "NodeLost", ("DeletionByPodGC", "PodGC: node no longer exists")
            message = (
                message
                or f"Node {self.node_name} which was running pod {m['name']} is unresponsive"
            )
            terminated = {
                "exitCode": 137,
                "reason": "ContainerStatusUnknown",
                "message": "The container could not be located when the pod was terminated",
            }
        terminated = {**terminated, "startedAt": started or when, "finishedAt": when}

        def fail(o: Obj) -> None:
            status = o.setdefault("status", {})
            status.update(phase="Failed", reason=reason, message=message)
            status["conditions"] = [
                c
                for c in status.get("conditions") or []
                if c.get("type") not in ("Ready", "ContainersReady", "DisruptionTarget")
            ]
            status["conditions"] += [
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": condition[0],
                    "message": condition[1],
                    "lastTransitionTime": when,
                },
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "PodFailed",
                    "lastTransitionTime": when,
                },
                {
                    "type": "ContainersReady",
                    "status": "False",
                    "reason": "PodFailed",
                    "lastTransitionTime": when,
                },
            ]
            status["containerStatuses"] = [
                self._container_status(c, {"terminated": terminated}, 0) for c in containers
            ]

        self.store.mutate(self.pods, m["namespace"], m["name"], fail, subresource="status")
        if how == "lost" and self.store.find(self.pods, m["namespace"], m["name"]) is not None:
            self.store.delete(self.pods, m["namespace"], m["name"], {"gracePeriodSeconds": 0})

    @staticmethod
    def _container_status(
        container: Obj, state: Obj, restarts: int, last: Obj | None = None
    ) -> Obj:
        return pod_process.container_status(
            container, state, restarts, last, f"sim://{container.get('name', '')}"
        )

    def _write_status(self, pod: Obj, change: Callable[[Obj], None]) -> None:
        m = pod["metadata"]
        current = self.store.find(self.pods, m["namespace"], m["name"])
        if current is not None and current["metadata"]["uid"] == m["uid"]:
            self.store.mutate(self.pods, m["namespace"], m["name"], change, subresource="status")

    async def _run_pod(self, run: _Run) -> None:
        """Start, watch and report the pod's first container until it ends."""
        namespace, name = run.key
        try:
            if self.start_delay > 0:
                await asyncio.sleep(self.start_delay)
            pod = self.store.find(self.pods, namespace, name)
            if pod is None or pod["metadata"]["uid"] != run.uid or terminating(pod):
                return
            if not await self._config_ready(run, pod):
                return
            restarts, last_state = 0, None
            while True:
                final = await self._run_container(run, pod, restarts, last_state)
                policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
                code = final["terminated"]["exitCode"]
                again = policy == "Always" or (policy == "OnFailure" and code != 0)
                if not again or run.killed_by is not None or restarts >= self.max_restarts:
                    break
                restarts, last_state = restarts + 1, final
            if run.killed_by in ("evict", "lost"):
                self._fail_disrupted(pod, run.killed_by, "", final["terminated"].get("startedAt"))
                return
            phase = "Succeeded" if final["terminated"]["exitCode"] == 0 else "Failed"
            self._report(pod, phase, final, restarts, last_state, run)
        finally:
            if self.runs.get(run.key) is run:
                del self.runs[run.key]
            if self._started:
                self._enqueue("pod", namespace, name)

    async def _config_ready(self, run: _Run, pod: Obj) -> bool:
        """Hold the container while a Secret, ConfigMap or key its env needs is missing, as the
        real kubelet does (waiting, CreateContainerConfigError), retrying until it exists.
        False: the pod was deleted meanwhile."""
        container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
        shown = None
        while True:
            try:
                run.mounts = self._mount(pod, container)
                self._env(pod, container, "", "")
                return True
            except VolumeError as exc:  # the real kubelet: ContainerCreating, no message
                if str(exc) != shown:
                    shown = str(exc)
                    self._write_status(
                        pod, lambda o: self._mark_waiting(o, "", "ContainerCreating")
                    )
            except pod_process.ConfigError as exc:
                if str(exc) != shown:
                    shown = str(exc)
                    self._write_status(pod, lambda o, m=shown: self._mark_waiting(o, m))
            await asyncio.sleep(0.1)
            current = self.store.find(self.pods, *run.key)
            if current is None or current["metadata"]["uid"] != run.uid or terminating(current):
                return False

    def _mount(self, pod: Obj, container: Obj) -> dict[str, str]:
        """The pod's volumes as folders under its home (PVCs: one folder per claim under the
        workdir, shared by the pods that name it); mount path -> folder."""
        m = pod["metadata"]
        files = {
            (kind, name): pod_process.object_files(
                kind, self.store.find(self.store.storage[("", kind + "s")], m["namespace"], name)
            )
            for kind, name in pod_process.volume_objects(pod)
        }
        claims = {c: self.workdir / "pvc" / m["namespace"] / c for c in pod_process.claims(pod)}
        root = self.workdir / f"{m['namespace']}_{m['name']}" / "volumes"
        return pod_process.mount_volumes(pod, container, files, root, claims, self.node_name)

    def _mark_waiting(
        self, o: Obj, message: str, reason: str = "CreateContainerConfigError"
    ) -> None:
        status = o.setdefault("status", {})
        when = now_ts()
        status.update(hostIP="127.0.0.1", podIP="127.0.0.1", phase="Pending")
        status.update(hostIPs=[{"ip": "127.0.0.1"}], podIPs=[{"ip": "127.0.0.1"}])
        status.setdefault("startTime", when)
        containers = (o.get("spec") or {}).get("containers") or [{}]
        names = ",".join(str(c.get("name", "")) for c in containers)
        kept = [c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"]
        status["conditions"] = (
            kept
            + [
                {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": when}
                for t in ("PodReadyToStartContainers", "Initialized")
            ]
            + [
                {
                    "type": t,
                    "status": "False",
                    "reason": "ContainersNotReady",
                    "message": f"containers with unready status: [{names}]",
                    "lastProbeTime": None,
                    "lastTransitionTime": when,
                }
                for t in ("Ready", "ContainersReady")
            ]
        )
        waiting = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        status["containerStatuses"] = [
            {**pod_process.container_status(c, waiting, 0), "imageID": ""} for c in containers
        ]

    def _report(
        self, pod: Obj, phase: str, state: Obj, restarts: int, last: Obj | None, run: _Run
    ) -> None:
        when = now_ts()
        containers = (pod.get("spec") or {}).get("containers") or [{}]

        def finish(o: Obj) -> None:
            status = o.setdefault("status", {})
            status["phase"] = phase
            if run.killed_by == "deadline":
                status.update(
                    reason="DeadlineExceeded",
                    message="Pod was active on the node longer than the specified deadline",
                )
            reason = "PodCompleted" if phase == "Succeeded" else "PodFailed"
            status["conditions"] = [
                c
                for c in status.get("conditions") or []
                if c.get("type") not in ("Ready", "ContainersReady")
            ] + [
                {
                    "type": t,
                    "status": "False",
                    "reason": reason,
                    "lastProbeTime": None,
                    "lastTransitionTime": when,
                }
                for t in ("Ready", "ContainersReady")
            ]
            status["containerStatuses"] = [
                self._container_status(containers[0], state, restarts, last)
            ] + [
                self._container_status(c, {"terminated": {"exitCode": 0, "reason": "Completed"}}, 0)
                for c in containers[1:]
            ]

        self._write_status(pod, finish)

    async def _run_container(self, run: _Run, pod: Obj, restarts: int, last: Obj | None) -> Obj:
        """Run the process once; return its `terminated` state."""
        m, spec = pod["metadata"], pod.get("spec") or {}
        container = (spec.get("containers") or [{}])[0]
        home = self.workdir / f"{m['namespace']}_{m['name']}"
        home.mkdir(parents=True, exist_ok=True)
        message_file = home / f"termination-log-{restarts}"
        message_file.touch()
        env = self._env(pod, container, str(message_file), str(home), run.mounts)
        argv = pod_process.command(container, env, run.mounts)
        started = now_ts()
        log_path = self.logs.setdefault(run.key, home / "log.txt")
        if not argv:
            return pod_process.start_error(started, now_ts(), "no command specified")
        out = container_logs.ContainerLog(
            home / f"{run.uid[:8]}-{container.get('name', '')}-{restarts}.log", plain=log_path
        )
        try:
            run.proc = await pod_process.spawn(
                argv, env, pod_process.working_dir(container, home, run.mounts), log_path, out
            )
        except OSError as exc:
            return pod_process.start_error(started, now_ts(), f"exec: {exc}")
        uid, logs = self.container_logs.get(run.key, ("", []))
        if uid != run.uid:
            uid, logs = run.uid, []
        self.container_logs[run.key] = (uid, [*logs, out])
        running = {"running": {"startedAt": started}}
        self._write_status(
            pod, lambda o: self._mark_running(o, container, running, restarts, last, started)
        )
        await self._wait(run, pod)
        await out.drained()
        code = run.proc.returncode
        assert code is not None
        return pod_process.terminated(
            code,
            signalled_by_us=run.killed_by is not None,
            started=started,
            finished=now_ts(),
            message=pod_process.read_message(message_file, container, log_path, code),
            cid=f"sim://{container.get('name', '')}",
        )

    def _mark_running(
        self, o: Obj, container: Obj, state: Obj, restarts: int, last: Obj | None, started: str
    ) -> None:
        status = o.setdefault("status", {})
        status.update(
            phase="Running",
            hostIP="127.0.0.1",
            podIP="127.0.0.1",
            hostIPs=[{"ip": "127.0.0.1"}],
            podIPs=[{"ip": "127.0.0.1"}],
        )
        status.setdefault("startTime", started)
        kept = [c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"]
        status["conditions"] = kept + [
            {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": started}
            for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
        ]
        containers = (o.get("spec") or {}).get("containers") or [container]
        status["containerStatuses"] = [
            self._container_status(containers[0], state, restarts, last)
        ] + [
            self._container_status(c, {"waiting": {"reason": "NotRun"}}, 0) for c in containers[1:]
        ]

    async def _wait(self, run: _Run, pod: Obj) -> None:
        """Wait for the process, enforcing the pod's activeDeadlineSeconds and max_runtime."""
        assert run.proc is not None
        limit, why = self.max_runtime, "timeout"
        deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
        if deadline is not None:
            start = (pod.get("status") or {}).get("startTime")
            elapsed = time.time() - parse_ts(start) if start else 0.0
            if deadline - elapsed < limit:
                limit, why = max(0.0, deadline - elapsed), "deadline"
        try:
            await asyncio.wait_for(asyncio.shield(run.proc.wait()), limit)
        except TimeoutError:
            run.killed_by = run.killed_by or why
            self._signal(run, signal.SIGKILL)
            await run.proc.wait()

    def _env(
        self,
        pod: Obj,
        container: Obj,
        message_path: str,
        home: str,
        mounts: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """The container's environment (ConfigError while a referenced object is missing)."""
        namespace = pod["metadata"]["namespace"]
        data = {
            (kind, name): pod_process.object_data(
                kind, self.store.find(self.store.storage[("", kind + "s")], namespace, name)
            )
            for kind, name in pod_process.sources(container)
        }
        return pod_process.build_env(
            pod,
            container,
            data,
            node_name=self.node_name,
            home=home,
            message_path=message_path,
            mounts=mounts,
        )

    def _log(self, namespace: str, name: str, container: str | None) -> str | None:
        path = self.logs.get((namespace, name))
        if path is None or not path.exists():
            return None
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_LIMIT))
            return f.read().decode("utf-8", "replace")

    async def _serve_log(
        self, pod: Obj, container: str, opts: container_logs.LogOptions
    ) -> AsyncIterator[bytes]:
        """The kubelet's containerLogs answer for the API server's pods/log (the same checks and
        words as remote_kubelet's HTTPS endpoint; container_logs.LogError for a refusal)."""
        m = pod["metadata"]
        name = m["name"]
        names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        if container not in names:
            raise container_logs.LogError(404, f'container "{container}" not found in pod "{name}"')
        index = container_logs.choose(pod, container, opts.previous)
        uid, logs = self.container_logs.get((m["namespace"], name), ("", []))
        if uid != m["uid"] or not 0 <= index < len(logs) or container != names[0]:
            raise container_logs.LogError(
                400, f'container "{container}" in pod "{name}": no log kept here'
            )
        async for chunk in container_logs.serve(logs[index], opts):
            yield chunk

    def _release_job_finalizer(self, pod: Obj) -> None:
        """Pods whose Job is gone or being deleted keep no tracking finalizer (as the controller
        drops it), so that garbage collection can remove them."""
        m = pod["metadata"]
        if JOB_TRACKING not in (m.get("finalizers") or []):
            return
        owner = next((r for r in m.get("ownerReferences") or [] if r.get("kind") == "Job"), None)
        job = self.store.find(self.jobs, m["namespace"], owner["name"]) if owner else None
        if job is None or job["metadata"]["uid"] != (owner or {}).get("uid") or terminating(job):
            self.store.remove_finalizer(self.pods, pod, JOB_TRACKING)

    # -- Job controller --------------------------------------------------------------------------

    def _job_pods(self, job: Obj) -> list[Obj]:
        uid = job["metadata"]["uid"]
        out = []
        for ref in sorted(self.store.dependents.get(uid, set())):
            obj = self.store.resolve(ref)
            if (
                obj is not None
                and ref[0] == self.pods.key
                and any(
                    r.get("uid") == uid and r.get("controller")
                    for r in obj["metadata"].get("ownerReferences") or []
                )
            ):
                out.append(obj)
        return out

    def _sync_job(self, namespace: str, name: str) -> None:
        if not self.job_controller:
            return
        job = self.store.find(self.jobs, namespace, name)
        if job is None or terminating(job) or self._expire(job):
            return
        spec, status = job.get("spec") or {}, dict(job.get("status") or {})
        pods = self._job_pods(job)
        succeeded, failed = int(status.get("succeeded") or 0), int(status.get("failed") or 0)
        counted = []
        for pod in pods:
            if JOB_TRACKING in (pod["metadata"].get("finalizers") or []) and _phase(pod) in (
                "Succeeded",
                "Failed",
            ):
                counted.append(pod)
                if _phase(pod) == "Succeeded":
                    succeeded += 1
                else:
                    failed += 1
        active = [
            p for p in pods if _phase(p) not in ("Succeeded", "Failed") and not terminating(p)
        ]
        stopping = [p for p in pods if _phase(p) not in ("Succeeded", "Failed") and terminating(p)]
        when = now_ts()
        conditions = list(status.get("conditions") or [])
        types = {c.get("type") for c in conditions}
        start = status.get("startTime")
        if spec.get("suspend") and not start:
            return
        start = start or when
        finished = _finished(job)
        completions = spec.get("completions")
        if not finished and "FailureTarget" not in types and "SuccessCriteriaMet" not in types:
            deadline = spec.get("activeDeadlineSeconds")
            if failed > int(spec.get("backoffLimit", 6)):
                conditions.append(
                    _condition(
                        "FailureTarget",
                        "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit",
                        when,
                    )
                )
            elif succeeded >= (completions or 1) and (completions is not None or not active):
                conditions.append(
                    _condition(
                        "SuccessCriteriaMet",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                        when,
                    )
                )
            elif deadline is not None and time.time() - parse_ts(start) >= float(deadline):
                conditions.append(
                    _condition(
                        "FailureTarget",
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline",
                        when,
                    )
                )
            elif deadline is not None:
                self._later(
                    float(deadline) - (time.time() - parse_ts(start)) + 0.01, "job", namespace, name
                )
        target = next(
            (c for c in conditions if c.get("type") in ("FailureTarget", "SuccessCriteriaMet")),
            None,
        )
        if target is not None and not finished:
            for pod in active:  # stop what still runs; the kubelet kills the process
                self.store.delete(self.pods, namespace, pod["metadata"]["name"])
                stopping.append(pod)
            active = []
            if not stopping:
                final = "Failed" if target["type"] == "FailureTarget" else "Complete"
                conditions.append(_condition(final, target["reason"], target["message"], when))
                self._event(
                    job,
                    "Normal" if final == "Complete" else "Warning",
                    "Completed" if final == "Complete" else target["reason"],
                    "Job completed" if final == "Complete" else target["message"],
                )
                finished = final
        elif not finished and not spec.get("suspend"):
            want = (
                min(int(spec.get("parallelism", 1)), (completions or 1) - succeeded)
                - len(active)
                - len(stopping)
            )
            if want > 0 and failed and counted:
                self._later(
                    self.job_backoff, "job", namespace, name
                )  # replace failures after a backoff
                want = 0
            for _ in range(max(0, want)):
                pod = self._create_pod(job)
                if pod is None:
                    break
                active.append(pod)
        new_status = {k: v for k, v in status.items() if k not in ("active", "succeeded", "failed")}
        counts = {"active": len(active), "succeeded": succeeded, "failed": failed}
        new_status.update({k: v for k, v in counts.items() if v})  # zero counters are omitted
        new_status.update(
            startTime=start,
            ready=sum(1 for p in active if _phase(p) == "Running"),
            terminating=len(stopping),
            uncountedTerminatedPods={},
            conditions=conditions,
        )
        if finished == "Complete":
            new_status.setdefault("completionTime", when)
        if not conditions:
            del new_status["conditions"]
        if new_status != job.get("status"):
            self.store.mutate(
                self.jobs,
                namespace,
                name,
                lambda o: o.__setitem__("status", new_status),
                subresource="status",
            )
        for pod in counted:
            self.store.remove_finalizer(self.pods, pod, JOB_TRACKING)

    def _expire(self, job: Obj) -> bool:
        """The TTL-after-finished controller: delete a finished Job once its TTL has passed."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None or not _finished(job):
            return False
        conditions = (job.get("status") or {}).get("conditions") or []
        done = next(c for c in conditions if c.get("type") in ("Complete", "Failed"))
        left = float(ttl) - (time.time() - parse_ts(done["lastTransitionTime"]))
        m = job["metadata"]
        if left > 0:
            self._later(left, "job", m["namespace"], m["name"])
            return False
        self.store.delete(self.jobs, m["namespace"], m["name"], {"propagationPolicy": "Foreground"})
        return True

    def _create_pod(self, job: Obj) -> Obj | None:
        m = job["metadata"]
        template = (job.get("spec") or {}).get("template") or {}
        tmeta = template.get("metadata") or {}
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{m['name']}-",
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": dict(tmeta.get("annotations") or {}),
                "finalizers": [JOB_TRACKING],
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": m["name"],
                        "uid": m["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": dict(template.get("spec") or {}),
        }
        if not body["metadata"]["annotations"]:
            del body["metadata"]["annotations"]
        try:
            pod, _ = self.store.create(
                self.pods, m["namespace"], body, manager="kube-controller-manager"
            )
        except ApiError as exc:
            self._event(job, "Warning", "FailedCreate", f"Error creating: {exc.message}")
            self._later(1.0, "job", m["namespace"], m["name"])
            return None
        self._event(job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        return pod

    def _event(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        m = obj["metadata"]
        when = now_ts()
        body = {
            "metadata": {"generateName": f"{m['name']}.", "namespace": m["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": m["name"],
                "namespace": m["namespace"],
                "uid": m["uid"],
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "count": 1,
            "firstTimestamp": when,
            "lastTimestamp": when,
            "source": {"component": "job-controller"},
            "reportingComponent": "job-controller",
        }
        with contextlib.suppress(ApiError):
            self.store.create(self.events, m["namespace"], body, manager="kube-controller-manager")
