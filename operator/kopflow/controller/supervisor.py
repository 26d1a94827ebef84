"""Keeps one RunWorker task per unfinished run and routes watch events to them.

A finished run keeps no worker, no body and no attempts here, only `finished.summary` of it
(and its TTL deadline in one shared timer): memory follows active runs, not kept ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from kopflow.controller.clock import Clock
from kopflow.controller.finished import Expiry, is_finished, summary, ttl_due
from kopflow.controller.index import AttemptIndex, RunKey
from kopflow.controller.kube import Kube
from kopflow.controller.runs import RunWorker
from kopflow.controller.schedules import Schedules
from kopflow.controller.workflows import validity
from kopflow.engine.naming import label_value

logger = logging.getLogger("kopflow.supervisor")


def _wakes(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a new body of a run needs a reconcile: a new spec generation (cancel, suspend),
    deletion, or another object under the same name; a status-only change is our own write."""
    a, b = old.get("metadata", {}), new.get("metadata", {})
    return any(a.get(k) != b.get(k) for k in ("generation", "uid", "deletionTimestamp"))


class Supervisor:
    """Owns the workers; every method is called from kopf's event loop."""

    def __init__(
        self,
        kube: Kube,
        active: bool = True,
        namespaces: list[str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.kube = kube
        self.finished: set[tuple[str, str]] = set()
        """(namespace, run label value) of the finished runs: their Jobs and Pods are not
        indexed (Pods name their run only by label)."""
        self.index = AttemptIndex(lambda ns, label: (ns, label) in self.finished)
        self.workers: dict[RunKey, RunWorker] = {}
        self.tasks: dict[RunKey, asyncio.Task[None]] = {}
        self.bodies: dict[RunKey, dict[str, Any]] = {}
        """Every run: the full body while unfinished, `finished.summary` of it once finished."""
        self.expiry = Expiry(self._expire, self._finished_uid)
        self.workflows: dict[RunKey, dict[str, Any]] = {}
        self.checks: set[asyncio.Task[None]] = set()
        self.active = active
        self.unsynced = {(kind, ns) for kind in ("jobs", "pods") for ns in namespaces or ()}
        """Initial Job and Pod lists still to come: until then no worker starts, or it would
        take attempts whose Job it has not seen yet for vanished ones."""
        """False while another replica leads: watch, index, but act on nothing."""
        self.listed: set[str] = set()
        """Namespaces ("" for all) whose initial list of runs arrived: schedules wait for it."""
        self.schedules = Schedules(
            kube, clock or Clock(), lambda: self.bodies.values(), self._runs_listed
        )

    async def activate(self) -> None:
        """Became the leader: start a worker for every known run, check every Workflow."""
        self.active = True
        self.expiry.start()
        for body in list(self.bodies.values()):
            self.on_run("MODIFIED", body)
        for body in list(self.workflows.values()):
            self.on_workflow("MODIFIED", body)

    async def deactivate(self) -> None:
        """Lost the lead: stop every worker now (the next leader continues from status)."""
        self.active = False
        self.workers.clear()
        await self.expiry.stop()
        await self.schedules.stop()
        await self.stop()
        self.tasks.clear()

    def on_run(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A WorkflowRun was listed, added, modified or deleted."""
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self.bodies.pop(key, None)
            self.finished.discard((key[0], label_value(key[1])))
            task = self.tasks.pop(key, None)
            self.workers.pop(key, None)
            if task is not None:
                task.cancel()
            self.index.forget_run(*key)
            return
        if self._still_finished(key, body):
            return
        worker = self.workers.get(key)
        if worker is None and is_finished(body) and not meta.get("deletionTimestamp"):
            self._finish(key, body)
            return
        if worker is not None and "resourceVersion" not in meta:
            worker.wake.set()  # a summary (a relist's): the worker keeps its full body
            return
        self.bodies[key] = body
        if self.active:
            self.schedules.on_run(body)
        if not self.active or self.unsynced:
            return
        if worker is not None and not _wakes(worker.body, body):
            worker.body = body  # our own status write coming back: nothing to do
            return
        if worker is None or worker.body.get("metadata", {}).get("uid") != meta.get("uid"):
            worker = RunWorker(key[0], key[1], self.kube, self.index, self.workflows)
            self.workers[key] = worker
            old = self.tasks.pop(key, None)
            if old is not None:
                old.cancel()
            worker.update(body)
            self.tasks[key] = asyncio.create_task(self._run(key, worker), name=f"run {key}")
        else:
            worker.update(body)

    async def _run(self, key: RunKey, worker: RunWorker) -> None:
        await worker.loop()
        if self.workers.get(key) is worker:  # finished (or being deleted)
            self.tasks.pop(key, None)
            del self.workers[key]
            body = worker.body
            if worker.written is not None:  # fresher than the watch's body
                body = {**body, "status": worker.written.dump()}
            self._finish(key, body)

    def _finish(self, key: RunKey, body: dict[str, Any]) -> None:
        """Keep only the summary of a finished run; forget its attempts; time its TTL."""
        self.bodies[key] = small = summary(body)
        self.finished.add((key[0], label_value(key[1])))
        self.index.forget_run(*key)
        if self.active:
            self.schedules.on_run(small)
        due = ttl_due(small["status"])
        if due is not None:
            self.expiry.add(key, small["metadata"].get("uid", ""), due)
            if self.active:
                self.expiry.start()

    async def _expire(self, namespace: str, name: str) -> None:
        self.kube.fence()
        await self.kube.delete_run(namespace, name)

    def _still_finished(self, key: RunKey, body: dict[str, Any]) -> bool:
        """A body of a run already finished, same object and spec generation: at most its
        summary changes (an echo of our last write, labels); an older echo changes nothing."""
        kept = self.bodies.get(key)
        if kept is None or (key[0], label_value(key[1])) not in self.finished:
            return False
        if key in self.workers:
            return False
        if _wakes(kept, body) and "deletionTimestamp" not in body.get("metadata", {}):
            self.finished.discard((key[0], label_value(key[1])))
            return False  # another run under this name, or a new spec: look at it afresh
        if is_finished(body):
            self.bodies[key] = summary(body)
        return True

    def shrink(self, body: dict[str, Any]) -> dict[str, Any]:
        """What a relist keeps of a run while the rest of the list arrives: a finished run's
        summary (10,000 kept runs must not be held in full at once), else the body."""
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if is_finished(body) and key not in self.workers:
            return summary(body)
        return body

    def _finished_uid(self, key: RunKey) -> str | None:
        """The uid of a run kept as finished (the TTL timer deletes only that object)."""
        if (key[0], label_value(key[1])) not in self.finished:
            return None
        uid = (self.bodies.get(key) or {}).get("metadata", {}).get("uid")
        return str(uid) if uid is not None else None

    def on_workflow(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Validate a Workflow whose status does not describe its current generation."""
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self.workflows.pop(key, None)
            self.schedules.remove(key)
            return
        self.workflows[key] = body
        if event_type in ("ADDED", None):  # runs waiting for this Workflow start now
            for (namespace, _), worker in self.workers.items():
                ref = (worker.body.get("spec") or {}).get("workflowRef") or {}
                if namespace == key[0] and ref.get("name") == key[1]:
                    worker.wake.set()
        if self.active:
            self.schedules.update(key, body)
        observed = (body.get("status") or {}).get("observedGeneration")
        if self.active and observed != meta.get("generation"):
            task = asyncio.create_task(self._validate(key, body))
            self.checks.add(task)
            task.add_done_callback(self.checks.discard)

    async def _validate(self, key: RunKey, body: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        status, problem = validity(body, now)
        try:
            await self.kube.patch_workflow_status(key[0], key[1], status)
            if problem:
                await self.kube.post_event(body, "Warning", "InvalidWorkflow", problem, now)
        except Exception:
            logger.exception("workflow %s/%s: could not record validation", *key)

    def on_job(self, event_type: str | None, body: dict[str, Any]) -> None:
        self._wake(self.index.on_job(event_type, body))

    def on_pod(self, event_type: str | None, body: dict[str, Any]) -> None:
        self._wake(self.index.on_pod(event_type, body))

    def relist_runs(self, namespace: str, runs: list[dict[str, Any]]) -> None:
        """A fresh list of runs: runs that vanished meanwhile count as deleted."""
        present = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in runs}
        for key in [k for k in self.bodies if (not namespace or k[0] == namespace)]:
            if key not in present:
                self.on_run("DELETED", self.bodies[key])
        for run in runs:
            self.on_run("ADDED", run)
        self.listed.add(namespace)
        self.schedules.wake_all()

    async def resync_runs(self, namespace: str, runs: list[dict[str, Any]]) -> None:
        """A fresh list of runs next to kopf's watch (which reports no deletions it missed
        while disconnected): a known run absent from the list is dropped once a read confirms
        it is gone (it may be newer than the list); unknown ones are added; the rest is kopf's."""
        present = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in runs}
        for key in [k for k in self.bodies if (not namespace or k[0] == namespace)]:
            if key not in present and await self.kube.get_run(*key) is None and key in self.bodies:
                self.on_run("DELETED", self.bodies[key])
        for run in runs:
            meta = run["metadata"]
            if (meta["namespace"], meta["name"]) not in self.bodies:
                self.on_run("ADDED", run)
        self.listed.add(namespace)
        self.schedules.wake_all()

    def stuck(self) -> list[tuple[str, float]]:
        """Run workers inside one step now, and since when (for /healthz)."""
        return [
            (f"run {key[0]}/{key[1]}", since)
            for key, worker in self.workers.items()
            if (since := worker.stepping_since) is not None and key in self.tasks
        ]

    def _runs_listed(self, namespace: str) -> bool:
        return "" in self.listed or namespace in self.listed

    def relist_jobs(self, namespace: str, jobs: list[dict[str, Any]]) -> None:
        for key in self.index.relist_jobs(namespace, jobs):
            self._wake(key)
        self._synced("jobs", namespace)

    def relist_pods(self, namespace: str, pods: list[dict[str, Any]]) -> None:
        for key in self.index.relist_pods(namespace, pods):
            self._wake(key)
        self._synced("pods", namespace)

    def _synced(self, kind: str, namespace: str) -> None:
        """An initial list arrived; the last one starts the workers."""
        if (kind, namespace) in self.unsynced:
            self.unsynced.discard((kind, namespace))
            if not self.unsynced and self.active:
                for body in list(self.bodies.values()):
                    self.on_run("ADDED", body)

    def _wake(self, key: RunKey | None) -> None:
        if key is not None and (worker := self.workers.get(key)) is not None:
            worker.wake.set()

    async def stop(self) -> None:
        await self.expiry.stop()
        await self.schedules.stop()
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
