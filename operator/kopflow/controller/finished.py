"""What the operator keeps of a finished run: a few hundred bytes, no worker, no Jobs.

A finished run (its status phase is final) needs nothing more from the operator except, with
`ttlSecondsAfterFinished`, its deletion once due. Keeping its whole body, its worker and its
attempts in memory made the operator grow with every run ever kept. Instead the supervisor
keeps `summary(body)`: the fields that recognise the run (uid, generation: an event for it
costs a dict lookup and is not processed again) and those the schedules and metrics read.
Deadlines of runs with a TTL wait in one heap served by one timer task (`Expiry`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kopflow.api.run import FINISHED_RUN_PHASES
from kopflow.engine.times import parse_time

logger = logging.getLogger("kopflow.finished")
RunKey = tuple[str, str]
_META = ("name", "namespace", "uid", "generation", "creationTimestamp", "generateName")
_LABELS = ("kopflow.dev/workflow",)
_SPEC = ("workflowRef", "scheduledTime", "cancel")
_STATUS = ("phase", "startedAt", "finishedAt", "deleteAt")
RETRY = timedelta(seconds=30)
"""A deletion that failed is tried again this much later."""


def is_finished(body: dict[str, Any]) -> bool:
    return (body.get("status") or {}).get("phase") in FINISHED_RUN_PHASES


def ttl_due(status: dict[str, Any]) -> datetime | None:
    """When a finished run is to be deleted (its workflow's ttlSecondsAfterFinished), or None.
    The operator records it as `deleteAt`; runs finished before that carry the TTL in their
    status snapshot."""
    with contextlib.suppress(ValueError, TypeError):
        if isinstance(status.get("deleteAt"), str):
            return parse_time(status["deleteAt"])
    ttl = (status.get("workflow") or {}).get("ttlSecondsAfterFinished")
    finished = status.get("finishedAt")
    if ttl is None or not isinstance(finished, str) or not finished:
        return None
    try:
        return parse_time(finished) + timedelta(seconds=int(ttl))
    except (ValueError, TypeError):
        return None


def summary(body: dict[str, Any]) -> dict[str, Any]:
    """The part of a finished run's body that the operator still reads (same shape: the
    schedules' history and the metrics' gauges read it like a full body). It has no
    resourceVersion: that tells a summary from a body read from the API."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    status = body.get("status") or {}
    compact_meta = {k: meta[k] for k in _META if k in meta}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k in _LABELS}
    if labels:
        compact_meta["labels"] = labels
    compact_status = {k: status[k] for k in _STATUS if k in status}
    ttl = (status.get("workflow") or {}).get("ttlSecondsAfterFinished")
    if ttl is not None:  # what ttl_due() reads, so a summary of a summary keeps it
        compact_status["workflow"] = {"ttlSecondsAfterFinished": ttl}
    return {
        "metadata": compact_meta,
        "spec": {k: spec[k] for k in _SPEC if k in spec},
        "status": compact_status,
    }


class Expiry:
    """One timer for every finished run with a TTL: deletes each once due (leader only)."""

    def __init__(
        self,
        delete: Callable[[str, str], Awaitable[None]],
        current: Callable[[RunKey], str | None],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.delete, self.current, self.now = delete, current, now
        self.heap: list[tuple[datetime, RunKey, str]] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def add(self, key: RunKey, uid: str, due: datetime) -> None:
        heapq.heappush(self.heap, (due, key, uid))
        if self.heap[0][1] == key:
            self.wake.set()

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.loop(), name="finished runs' TTL")

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def loop(self) -> None:
        while True:
            self.wake.clear()
            now = self.now()
            while self.heap and self.heap[0][0] <= now:
                _, key, uid = heapq.heappop(self.heap)
                if self.current(key) != uid:
                    continue  # deleted meanwhile, or another run under that name
                try:
                    await self.delete(*key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("run %s/%s: could not delete after its TTL", *key)
                    heapq.heappush(self.heap, (now + RETRY, key, uid))
            timeout = (self.heap[0][0] - self.now()).total_seconds() if self.heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)
