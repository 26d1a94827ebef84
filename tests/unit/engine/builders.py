"""Builders for engine tests: specs from short descriptions, and a simulated executor.

`Sim` plays the executor loop the local runner and the operator run: it reports the attempts the
status says are running, answers cache look-ups from an in-memory store, carries out the
actions, persists the status, and moves a virtual clock to the next thing that happens (an
attempt ending, or `requeue_at`). At every step it also checks the invariants every run must
keep (idempotence, dependencies before dependents, parallelism, attempt limits, job names).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from kopflow.api.run import FINISHED_RUN_PHASES, TaskStatus, WorkflowRunStatus
from kopflow.api.workflow import WorkflowSpec
from kopflow.engine import (
    Action,
    CacheEntry,
    Decision,
    Event,
    Launch,
    LookupCache,
    Observation,
    RunState,
    Stop,
    StoreCache,
    jobs_to_observe,
    reconcile,
)

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def at(seconds: float) -> datetime:
    """T0 plus seconds."""
    return T0 + timedelta(seconds=seconds)


def stamp(seconds: float) -> str:
    """The status form of T0 plus seconds."""
    return at(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def task(name: str, *deps: str, **fields: Any) -> dict[str, Any]:
    """A task document: `task("load", "extract", retry={"limit": 2})`; image defaults."""
    doc: dict[str, Any] = {"name": name, "command": ["run", name]}
    if deps:
        doc["dependsOn"] = list(deps)
    doc.update(fields)
    return doc


def env(**values: str) -> list[dict[str, str]]:
    """Env var documents in keyword order: `env(MODE="full")`."""
    return [{"name": k, "value": v} for k, v in values.items()]


def spec(*tasks: dict[str, Any], **fields: Any) -> WorkflowSpec:
    """A validated WorkflowSpec; keyword fields use wire names (onFailure, parallelism...)."""
    doc: dict[str, Any] = {"taskDefaults": {"image": "busybox"}, "tasks": list(tasks)}
    doc.update(fields)
    return WorkflowSpec.model_validate(doc)


def decide(
    workflow: WorkflowSpec,
    observations: Mapping[str, Observation] | None = None,
    cache: Mapping[str, CacheEntry | None] | None = None,
    now: datetime = T0,
    **state: Any,
) -> Decision:
    """One reconcile of a run named `run` (RunState fields as keywords)."""
    state.setdefault("name", "run")
    state.setdefault("namespace", "default")
    return reconcile(RunState(spec=workflow, **state), observations or {}, cache or {}, now)


@dataclass(frozen=True)
class Outcome:
    """What one attempt does: end in `state` after `seconds`, or `hang` until stopped."""

    state: Literal["succeeded", "failed", "lost", "hang"] = "succeeded"
    seconds: int = 10
    exit_code: int | None = None
    outputs: str | None = None
    reason: str | None = None
    message: str | None = None


OK = Outcome()
FAIL = Outcome("failed", exit_code=1, reason="Error")
HANG = Outcome("hang")

Outcomes = Callable[[str, int], Outcome] | Mapping[Any, Outcome | list[Outcome]]
"""Per (task, attempt): a function, or a mapping of task name -> Outcome or list by attempt
(the last repeats), or of (task, attempt) -> Outcome. Unlisted attempts succeed."""


@dataclass
class Job:
    task: str
    attempt: int
    start: datetime
    outcome: Outcome
    stopped: bool = False

    @property
    def end(self) -> datetime | None:
        if self.outcome.state == "hang" or self.stopped:
            return None
        return self.start + timedelta(seconds=self.outcome.seconds)


@dataclass
class Sim:
    """A deterministic executor around reconcile(), with a virtual clock."""

    spec: WorkflowSpec
    outcomes: Outcomes = field(default_factory=dict)
    name: str = "run"
    namespace: str = "default"
    params: Mapping[str, str] = field(default_factory=dict)
    now: datetime = T0
    use_cache: bool = True
    store: dict[str, CacheEntry] = field(default_factory=dict)
    check: bool = True
    edits: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)
    """Changes to the run at given times, e.g. `(at(30), {"cancel": True})`."""

    def __post_init__(self) -> None:
        self.state = RunState(
            self.name, self.namespace, self.spec, dict(self.params), use_cache=self.use_cache
        )
        self.jobs: dict[str, Job] = {}
        self.answers: dict[str, CacheEntry | None] = {}
        self.decisions: list[Decision] = []
        self.launches: list[tuple[datetime, Launch]] = []
        self.stops: list[tuple[datetime, Stop]] = []
        self.events: list[Event] = []
        self.max_running = 0
        self.conflicts = 0
        """Launches of a job that already exists (409), only after a simulated crash."""
        self.crashed = False

    # --- the loop ------------------------------------------------------------------------

    def outcome(self, task: str, attempt: int) -> Outcome:
        if callable(self.outcomes):
            return self.outcomes(task, attempt)
        if (task, attempt) in self.outcomes:
            found = self.outcomes[(task, attempt)]
            assert isinstance(found, Outcome)
            return found
        found = self.outcomes.get(task, OK)
        if isinstance(found, list):
            return found[min(attempt, len(found)) - 1]
        return found

    def observe(self, job_name: str) -> Observation:
        job = self.jobs.get(job_name)
        if job is None:
            return Observation("missing")
        end = job.end
        if end is None or self.now < end:
            return Observation("running", started_at=job.start)
        o = job.outcome
        if o.state == "succeeded":
            code = 0 if o.exit_code is None else o.exit_code
            return Observation("succeeded", code, o.reason, o.message, o.outputs, job.start, end)
        code = o.exit_code if o.state == "failed" else None
        return Observation(o.state, code, o.reason, o.message, o.outputs, job.start, end)

    def observations(self) -> dict[str, Observation]:
        return {job: self.observe(job) for job in jobs_to_observe(self.state.status)}

    def step(self, **changes: Any) -> Decision:
        """One executor iteration; `changes` edit the run first (cancel=True, suspend=...)."""
        while self.edits and self.edits[0][0] <= self.now:
            changes = {**self.edits.pop(0)[1], **changes}
        if changes:
            self.state = replace(self.state, **changes)
        seen = self.observations()
        decision = reconcile(self.state, seen, dict(self.answers), self.now)
        if self.check:
            self._check(decision, seen)
        for action in decision.actions:
            self._carry_out(action)
        self.state = replace(self.state, status=decision.status)
        self.decisions.append(decision)
        self.events.extend(decision.events)
        return decision

    def crash(self) -> Decision:
        """One iteration whose status is never persisted: the executor died after acting."""
        before = self.state.status
        decision = self.step()
        self.state = replace(self.state, status=before)
        self.answers.clear()
        self.crashed = True
        return decision

    def _carry_out(self, action: Action) -> None:
        if isinstance(action, Launch):
            if action.job_name in self.jobs:
                assert self.crashed, f"{action.job_name} launched twice"
                self.conflicts += 1
                return
            outcome = self.outcome(action.task, action.attempt)
            self.jobs[action.job_name] = Job(action.task, action.attempt, self.now, outcome)
            self.launches.append((self.now, action))
        elif isinstance(action, Stop):
            self.jobs[action.job_name].stopped = True
            self.stops.append((self.now, action))
        elif isinstance(action, LookupCache):
            for key in action.keys:
                entry = self.store.get(key)
                live = entry is not None and (
                    entry.expires_at is None or entry.expires_at > self.now
                )
                self.answers[key] = entry if live else None
        elif isinstance(action, StoreCache):
            self.store[action.key] = CacheEntry(dict(action.outputs), action.expires_at)

    def next_time(self, decision: Decision) -> datetime | None:
        """When the executor would wake: an attempt ends, or requeue_at."""
        if decision.lookups:
            return self.now
        times = [j.end for j in self.jobs.values() if j.end is not None and j.end > self.now]
        if decision.requeue_at is not None:
            times.append(decision.requeue_at)
        times.extend(when for when, _ in self.edits[:1])
        return min(times, default=None)

    def run(self, max_steps: int = 2000, until: datetime | None = None) -> WorkflowRunStatus:
        """Step until the run finishes (or the clock would pass `until`)."""
        for _ in range(max_steps):
            decision = self.step()
            if decision.finished:
                return decision.status
            wake = self.next_time(decision)
            assert wake is not None, f"run is stuck at {self.now}: {self.phases()}"
            if until is not None and wake > until:
                self.now = until
                return decision.status
            self.now = wake
        raise AssertionError(f"run did not finish in {max_steps} steps: {self.phases()}")

    # --- reading the result --------------------------------------------------------------

    @property
    def status(self) -> WorkflowRunStatus:
        assert self.state.status is not None
        return self.state.status

    def task(self, name: str) -> TaskStatus:
        return (self.status.tasks or {})[name]

    def phases(self) -> dict[str, str]:
        return {n: t.phase for n, t in (self.status.tasks or {}).items()}

    def started(self, name: str) -> list[datetime]:
        """When each attempt of a task was launched."""
        return [when for when, launch in self.launches if launch.task == name]

    def order(self) -> list[str]:
        """Tasks in the order of their first launch."""
        return list(dict.fromkeys(launch.task for _, launch in self.launches))

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    # --- invariants ----------------------------------------------------------------------

    def _check(self, decision: Decision, seen: Mapping[str, Observation]) -> None:
        again = reconcile(replace(self.state, status=decision.status), seen, self.answers, self.now)
        assert again.status == decision.status, "not idempotent"
        assert not again.launches and not again.stops, "repeated call acts again"
        assert not again.changed
        status = decision.status
        tasks = status.tasks or {}
        running = sum(1 for t in tasks.values() if t.phase == "Running")
        self.max_running = max(self.max_running, running)
        limit = self.spec.parallelism
        assert limit is None or running <= limit, f"{running} running > parallelism {limit}"
        merged = {t.name: t for t in [*self.spec.tasks, *(self.spec.on_failure or [])]}
        defaults = self.spec.task_defaults
        for launch in decision.launches:
            assert len(launch.job_name) <= 63 and DNS_LABEL.match(launch.job_name)
            for dep in merged[launch.task].depends_on or ():
                d = tasks[dep]
                assert d.phase == "Succeeded" or (d.phase == "Skipped" and d.reason == "WhenFalse")
        for name, t in tasks.items():
            retry = merged[name].retry or (defaults.retry if defaults else None)
            assert t.attempts <= (retry.limit if retry else 0) + 1
        if status.phase in FINISHED_RUN_PHASES:
            assert decision.requeue_at is None
