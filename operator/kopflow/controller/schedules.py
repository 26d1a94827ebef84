"""One timer loop per scheduled Workflow: decide its due slots (engine.schedule) and act.

Exactly once per slot: a slot's run has a name derived from the Workflow and the slot, so a
second creation (another operator, or this one after a restart) gets a 409 and nothing more.
The loop's cursor is the newest decided slot: the larger of status.lastSlotTime and the slot of
the newest run it created (a crash between creating a run and writing status loses nothing).
Actions come before the status that records them; Events and counts are for people.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kopflow import metrics
from kopflow.api.workflow import API_VERSION, WorkflowSpec
from kopflow.controller.client import MERGE_PATCH, ApiError
from kopflow.controller.clock import Clock
from kopflow.controller.kube import Kube
from kopflow.engine.naming import label_value
from kopflow.engine.schedule import (
    WORKFLOW_LABEL,
    ScheduledRun,
    plan,
    run_body,
    run_name,
    slot_id,
)
from kopflow.engine.times import format_time, parse_time
from kopflow.engine.validation import validate_spec

logger = logging.getLogger("kopflow.schedules")
Key = tuple[str, str]
ERROR_DELAY = 5.0
"""Wall seconds before a failed decision is tried again."""


def scheduled_runs(workflow: str, bodies: Iterable[dict[str, Any]]) -> list[ScheduledRun]:
    """The runs this Workflow's schedule created, from the watched run bodies."""
    label = label_value(workflow)
    found = []
    for body in bodies:
        meta = body.get("metadata", {})
        spec = body.get("spec") or {}
        if (meta.get("labels") or {}).get(WORKFLOW_LABEL) != label:
            continue
        if (spec.get("workflowRef") or {}).get("name") != workflow or not spec.get("scheduledTime"):
            continue
        status = body.get("status") or {}
        finished = status.get("finishedAt")
        try:
            found.append(
                ScheduledRun(
                    meta["name"],
                    parse_time(spec["scheduledTime"]),
                    status.get("phase"),
                    bool(spec.get("cancel")),
                    parse_time(finished) if finished else None,
                )
            )
        except ValueError:
            continue
    return found


class ScheduleLoop:
    """Decides and acts for one Workflow until stopped; woken by Workflow and run changes."""

    def __init__(
        self,
        key: Key,
        kube: Kube,
        clock: Clock,
        runs: Callable[[], Iterable[dict[str, Any]]],
        ready: Callable[[str], bool],
    ) -> None:
        self.key, self.kube, self.clock, self.runs, self.ready = key, kube, clock, runs, ready
        self.body: dict[str, Any] = {}
        self.wake = asyncio.Event()
        self.created: dict[str, datetime] = {}
        """Runs created by this loop that the watch may not show yet (name -> slot)."""
        self.decided: datetime | None = None
        self.written: dict[str, Any] = {}
        self.valid_for: tuple[Any, Any] | None = None
        self.is_valid = False
        self.counts: dict[str, int] | None = None
        """missed and skipped so far (status is read once: later bodies may lag our writes)."""

    async def loop(self) -> None:
        while True:
            self.wake.clear()
            try:
                delay = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("workflow %s/%s: schedule step failed", *self.key)
                delay = ERROR_DELAY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)

    async def tick(self) -> float | None:
        """One decision; the wall seconds until the next slot (None: until woken)."""
        namespace, name = self.key
        body = self.body
        if not self.ready(namespace):
            return None
        try:
            spec = WorkflowSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            return None
        if spec.schedule is None or not self._valid(spec):
            return None  # an invalid Workflow says so in its Valid condition
        schedule = spec.schedule
        now = self.clock.now()
        runs = scheduled_runs(name, self.runs())
        seen = {r.name for r in runs}
        for run_name_, slot in list(self.created.items()):
            if run_name_ in seen:
                del self.created[run_name_]
            else:
                runs.append(ScheduledRun(run_name_, slot))
        status = body.get("status") or {}
        if self.counts is None:
            self.counts = {k: int(status.get(k) or 0) for k in ("missed", "skipped")}
        after = parse_time(body["metadata"]["creationTimestamp"])
        for candidate in (
            status.get("lastSlotTime"),
            status.get("lastScheduleTime"),
        ):
            if candidate:
                after = max(after, parse_time(candidate))
        if runs:
            after = max(after, max(r.slot for r in runs))
        if self.decided is not None:
            after = max(after, self.decided)
        decision = plan(spec, now, after, runs)
        wf = f"{namespace}/{name}"
        for victim in decision.cancel:
            await self._cancel(namespace, victim)
            metrics.schedule_slots(namespace, name, "replaced")
            self.kube.post_event_later(
                body, "Normal", "Replaced", f"cancelled {victim}: concurrencyPolicy Replace", now
            )
        last_created = status.get("lastScheduleTime")
        last_run = status.get("lastRunName")
        for slot in decision.create:
            run = run_name(name, schedule, slot)
            fresh = await self._create(body, run, schedule, slot)
            self.created[run] = slot
            runs.append(ScheduledRun(run, slot))
            last_created, last_run = format_time(slot), run
            metrics.schedule_slots(namespace, name, "started" if fresh else "taken")
            if fresh:
                lag = (self.clock.now() - slot).total_seconds() / self.clock.rate
                logger.info("workflow %s: created %s for slot %s (%.3fs late)", wf, run, slot, lag)
        for slot in decision.skipped:
            metrics.schedule_slots(namespace, name, "skipped")
            self.kube.post_event_later(
                body,
                "Normal",
                "SlotSkipped",
                f"slot {slot_id(schedule, slot)} skipped: a scheduled run is still active "
                "(concurrencyPolicy Forbid)",
                now,
            )
        if decision.missed_count:
            metrics.schedule_slots(namespace, name, "missed", decision.missed_count)
            newest = decision.missed[-1] if decision.missed else decision.decided
            assert newest is not None
            self.kube.post_event_later(
                body,
                "Warning",
                "SlotMissed",
                f"{decision.missed_count} slot(s) missed, the newest {slot_id(schedule, newest)}: "
                "later than startingDeadlineSeconds or beyond catchUp",
                now,
            )
        for victim in decision.delete:
            await self.kube.delete_run(namespace, victim)
        if decision.decided is not None:
            self.decided = decision.decided
        metrics.schedule_next(namespace, name, decision.next.timestamp() if decision.next else None)
        self.counts["missed"] += decision.missed_count
        self.counts["skipped"] += len(decision.skipped)
        deleted = set(decision.delete)
        succeeded = [r.finished_at for r in runs if r.phase == "Succeeded" and r.finished_at]
        new_status: dict[str, Any] = {
            "lastScheduleTime": last_created,
            "lastRunName": last_run,
            "nextScheduleTime": format_time(decision.next) if decision.next else None,
            "lastSlotTime": format_time(self.decided) if self.decided else None,
            "active": sorted(r.name for r in runs if not r.finished and r.name not in deleted),
            "missed": self.counts["missed"],
            "skipped": self.counts["skipped"],
        }
        if succeeded:
            new_status["lastSuccessfulTime"] = format_time(max(succeeded))
        changed = {k: v for k, v in new_status.items() if status.get(k) != v}
        if changed and changed != self.written:
            await self.kube.patch_workflow_status(namespace, name, changed)
            self.written = changed
        if decision.recheck is None:
            return None
        return self.clock.real_seconds(decision.recheck)

    def _valid(self, spec: WorkflowSpec) -> bool:
        """validate_spec, once per generation (ticks follow every run event)."""
        meta = self.body.get("metadata", {})
        version = (meta.get("uid"), meta.get("generation") or meta.get("resourceVersion"))
        if self.valid_for != version:
            self.valid_for, self.is_valid = version, not validate_spec(spec)
        return self.is_valid

    async def _create(
        self, workflow: dict[str, Any], name: str, schedule: Any, slot: datetime
    ) -> bool:
        """Create the slot's run; False when it exists already (the slot is taken)."""
        meta = workflow["metadata"]
        body = run_body(meta["name"], meta.get("uid"), schedule, slot)
        assert body["metadata"]["name"] == name
        path = f"/apis/{API_VERSION}/namespaces/{meta['namespace']}/workflowruns"
        try:
            await self.kube.http.request("POST", path, body)
        except ApiError as err:
            if err.status == 409:
                return False
            raise
        return True

    async def _cancel(self, namespace: str, name: str) -> None:
        path = f"/apis/{API_VERSION}/namespaces/{namespace}/workflowruns/{name}"
        try:
            await self.kube.http.request("PATCH", path, {"spec": {"cancel": True}}, MERGE_PATCH)
        except ApiError as err:
            if err.status != 404:
                raise


class Schedules:
    """The loops of every scheduled Workflow; called from the supervisor on kopf's loop."""

    def __init__(
        self,
        kube: Kube,
        clock: Clock,
        runs: Callable[[], Iterable[dict[str, Any]]],
        ready: Callable[[str], bool],
    ) -> None:
        self.kube, self.clock, self.runs, self.ready = kube, clock, runs, ready
        self.loops: dict[Key, ScheduleLoop] = {}
        self.tasks: dict[Key, asyncio.Task[None]] = {}

    def update(self, key: Key, body: dict[str, Any]) -> None:
        """A Workflow was listed, added or modified: start, wake or stop its loop."""
        if not (body.get("spec") or {}).get("schedule"):
            self.remove(key)
            return
        loop = self.loops.get(key)
        if loop is None or loop.body.get("metadata", {}).get("uid") != body["metadata"].get("uid"):
            self.remove(key)
            loop = self.loops[key] = ScheduleLoop(key, self.kube, self.clock, self.runs, self.ready)
            loop.body = body
            self.tasks[key] = asyncio.create_task(loop.loop(), name=f"schedule {key}")
        loop.body = body
        loop.wake.set()

    def remove(self, key: Key) -> None:
        self.loops.pop(key, None)
        task = self.tasks.pop(key, None)
        if task is not None:
            task.cancel()

    def on_run(self, body: dict[str, Any]) -> None:
        """A run changed: wake the loop of the Workflow that scheduled it (history, active)."""
        meta = body.get("metadata", {})
        if WORKFLOW_LABEL not in (meta.get("labels") or {}):
            return
        workflow = ((body.get("spec") or {}).get("workflowRef") or {}).get("name")
        loop = self.loops.get((meta.get("namespace", ""), workflow or ""))
        if loop is not None:
            loop.wake.set()

    def wake_all(self) -> None:
        for loop in self.loops.values():
            loop.wake.set()

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        self.loops.clear()
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
