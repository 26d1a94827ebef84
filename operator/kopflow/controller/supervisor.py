"""Keeps one RunWorker task per unfinished run and routes watch events to them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from kopflow.controller.index import AttemptIndex, RunKey
from kopflow.controller.kube import Kube
from kopflow.controller.runs import RunWorker

logger = logging.getLogger("kopflow.supervisor")


class Supervisor:
    """Owns the workers; every method is called from kopf's event loop."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.index = AttemptIndex()
        self.workers: dict[RunKey, RunWorker] = {}
        self.tasks: dict[RunKey, asyncio.Task[None]] = {}

    def on_run(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A WorkflowRun was listed, added, modified or deleted."""
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            task = self.tasks.pop(key, None)
            self.workers.pop(key, None)
            if task is not None:
                task.cancel()
            self.index.forget_run(*key)
            return
        worker = self.workers.get(key)
        if worker is None or worker.body.get("metadata", {}).get("uid") != meta.get("uid"):
            worker = self.workers[key] = RunWorker(key[0], key[1], self.kube, self.index)
            old = self.tasks.pop(key, None)
            if old is not None:
                old.cancel()
            worker.update(body)
            self.tasks[key] = asyncio.create_task(self._run(key, worker), name=f"run {key}")
        else:
            worker.update(body)

    async def _run(self, key: RunKey, worker: RunWorker) -> None:
        try:
            await worker.loop()
        finally:
            if self.workers.get(key) is worker:
                # finished: keep the worker (so a later event does not restart it) but no task
                self.tasks.pop(key, None)

    def on_job(self, event_type: str | None, body: dict[str, Any]) -> None:
        self._wake(self.index.on_job(event_type, body))

    def on_pod(self, event_type: str | None, body: dict[str, Any]) -> None:
        self._wake(self.index.on_pod(event_type, body))

    def _wake(self, key: RunKey | None) -> None:
        if key is not None and (worker := self.workers.get(key)) is not None:
            worker.wake.set()

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
