"""reconcile(): one pure step of a run, from what is known to what to do next.

The executor loop (local runner or operator) is:

    observations = {job: observe(job) for job in jobs_to_observe(status)}
    decision = reconcile(RunState(..., status=status), observations, cache_answers, now)
    carry out decision.actions; persist decision.status (when decision.changed)
    sleep until an observation changes or decision.requeue_at

A step, in order: apply observations to running attempts (success, failure, retry, timeout,
loss); honour cancel; enforce the run deadline; remember the first failure; start what is
ready (topological then declaration order, within parallelism, unless suspended); once the
main DAG is done, run onFailure tasks if it failed; finish the run.

Idempotence: every action's effect is written into the returned status (a Launch is a
Running task with its job name), so the same input status and observations produce the same
status and no new Launch or Stop. A job the status says was launched but the executor cannot
see (`missing`) is taken to be not yet visible for MISSING_GRACE after its launch, then Lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from kopflow.api.run import (
    FINISHED_RUN_PHASES,
    FINISHED_TASK_PHASES,
    HISTORY_LIMIT,
    Attempt,
    RunPhase,
    TaskStatus,
    WorkflowRunStatus,
)
from kopflow.api.workflow import FailureKind, PodSettings, Task
from kopflow.engine import templating
from kopflow.engine.cache import cache_key
from kopflow.engine.conditions import run_conditions
from kopflow.engine.decisions import (
    Action,
    Decision,
    Event,
    Launch,
    LookupCache,
    Stop,
    StoreCache,
)
from kopflow.engine.defaults import (
    merge_defaults,
    pod_pending_timeout_of,
    retry_of,
    timeout_of,
)
from kopflow.engine.naming import job_name, labels
from kopflow.engine.observations import MISSING, CacheEntry, Observation
from kopflow.engine.outputs import OutputsError, parse_outputs
from kopflow.engine.plan import Plan, plan_for
from kopflow.engine.render import attempt_env, render_task, run_values, unmet_condition
from kopflow.engine.retry import classify, next_attempt_at, should_retry
from kopflow.engine.reuse import reused_tasks
from kopflow.engine.state import RunState
from kopflow.engine.times import format_duration, format_time, parse_time, utc

MISSING_GRACE = timedelta(seconds=30)
"""How long a launched job may stay invisible (informer lag, a slow create) before it is Lost."""
MESSAGE_LIMIT = 1024
"""Longest message kept in status: 2,000 failing tasks must still fit in one object."""
POD_FIELDS = (
    "env_from",
    "resources",
    "volumes",
    "volume_mounts",
    "node_selector",
    "tolerations",
    "pod_template",
)


def reconcile(
    run: RunState,
    observations: Mapping[str, Observation],
    cache: Mapping[str, CacheEntry | None],
    now: datetime,
) -> Decision:
    """The next status of the run and what to do about it.

    observations: by job name, the attempts `jobs_to_observe(run.status)` lists (an absent
    one counts as `missing`). cache: the answers to earlier LookupCache keys (entry, or None
    for a miss); a key not present is looked up first. now: timezone-aware.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (datetime.now(UTC))")
    return _Step(run, plan_for(run.spec), observations, cache, utc(now)).run()


def _describe(reason: str, exit_code: int | None, message: str | None) -> str:
    text = reason if exit_code is None else f"{reason} (exit code {exit_code})"
    return f"{text}: {message}" if message else text


def _short(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


class _Step:
    """The working state of one reconcile; discarded afterwards."""

    def __init__(
        self,
        run: RunState,
        plan: Plan,
        observations: Mapping[str, Observation],
        cache: Mapping[str, CacheEntry | None],
        now: datetime,
    ) -> None:
        self.state, self.plan, self.observations, self.cache = run, plan, observations, cache
        self.now, self.stamp = now, format_time(now)
        self.defaults = run.spec.task_defaults
        self.old = run.status or WorkflowRunStatus()
        self.tasks: dict[str, TaskStatus] = dict(self.old.tasks or {})
        self.phase: RunPhase | None = self.old.phase
        self.reason, self.message = self.old.reason, self.old.message
        self.started_at, self.finished_at = self.old.started_at, self.old.finished_at
        self.changed = False
        self.actions: list[Action] = []
        self.lookups: list[str] = []
        self.events: list[Event] = []
        self.wakes: list[datetime] = []
        self.running = 0
        self.reserved = 0
        """Slots held by tasks waiting for a cache answer, so later tasks cannot overtake them
        (start order must not depend on whether the executor remembered an answer)."""
        self._values: dict[str, str] | None = None
        self._merged: dict[str, Task] = {}

    # --- the step ------------------------------------------------------------------------

    def run(self) -> Decision:
        if self.phase in FINISHED_RUN_PHASES:
            return self._decide()
        if self.plan.problem is not None:
            self.started_at = self.started_at or self.stamp
            self._finish("Invalid", "Invalid", self.plan.problem)
            return self._decide()
        if self.phase is None:
            self._begin()
        self.running = sum(1 for t in self.tasks.values() if t.phase == "Running")
        for name in (*self.plan.main, *self.plan.handlers):
            status = self.tasks.get(name)
            if status is not None and status.phase == "Running":
                self._observe(name, status)
        if self.state.cancel:
            self._cancel()
            return self._decide()
        self._enforce_deadline()
        self._note_failure()
        self._advance(self.plan.main, failing=self.reason is not None)
        if self._done(self.plan.main):
            if self.reason is None:
                self._succeed()
            else:
                self._run_handlers()
        return self._decide()

    def _begin(self) -> None:
        self.phase, self.started_at, self.changed = "Running", self.stamp, True
        for name in self.plan.main:
            self.tasks.setdefault(name, TaskStatus())
        reused = reused_tasks(self.state.retry_of, self.plan.tasks, self.plan.main, self.stamp)
        for name, status in reused.items():
            self.tasks[name] = status
            self._event("Normal", "TaskReused", status.message or "", name)

    # --- observing attempts --------------------------------------------------------------

    def _observe(self, name: str, status: TaskStatus) -> None:
        """Turn what the executor saw of the running attempt into the task's next phase."""
        job = status.job_name or ""
        seen = self.observations.get(job, MISSING)
        launched = parse_time(status.attempt_started_at) if status.attempt_started_at else self.now
        if seen.state == "running" or (
            seen.state == "missing" and self.now < launched + MISSING_GRACE
        ):
            timeout = timeout_of(self.plan.tasks[name], self.defaults)
            if timeout is not None and self.now >= launched + timedelta(seconds=timeout):
                self._stop(name, status, "Timeout")
                message = f"attempt {status.attempts} exceeded timeoutSeconds={timeout}"
                self._attempt_failed(name, status, "Timeout", None, "Timeout", message, self.now)
                return
            if timeout is not None:
                self.wakes.append(launched + timedelta(seconds=timeout))
            if seen.pending and self._pod_pending(name, status, seen, launched):
                return
            if seen.state == "missing":
                self.wakes.append(launched + MISSING_GRACE)
            return
        finished = utc(seen.finished_at) if seen.finished_at else self.now
        if seen.state == "succeeded":
            try:
                outputs = parse_outputs(seen.outputs, self.plan.tasks[name].outputs or ())
            except OutputsError as err:
                self._attempt_failed(
                    name, status, "Failed", seen.exit_code, "OutputsTooLarge", str(err), finished
                )
            else:
                self._attempt_succeeded(name, status, seen, outputs, finished)
            return
        if seen.state == "missing":
            grace = int(MISSING_GRACE.total_seconds())
            seen = Observation("lost", message=f"job {job} not found {grace}s after its launch")
        kind, reason, detail = classify(seen)
        self._attempt_failed(
            name, status, kind, seen.exit_code, reason, detail, finished, seen.permanent
        )

    def _pod_pending(
        self, name: str, status: TaskStatus, seen: Observation, launched: datetime
    ) -> bool:
        """Fail an attempt whose pod has not started within podPendingTimeoutSeconds of its
        launch (True), with the reason and words the API gave; else wake at that time."""
        limit = pod_pending_timeout_of(self.plan.tasks[name], self.defaults)
        due = launched + timedelta(seconds=limit)
        if self.now < due:
            self.wakes.append(due)
            return False
        self._stop(name, status, "PodPending")
        message = f"the pod did not start within podPendingTimeoutSeconds={limit}"
        if seen.message:
            message += f": {seen.message}"
        reason = seen.reason or "PodPending"
        self._attempt_failed(name, status, "Failed", None, reason, message, self.now)
        return True

    def _record(
        self,
        status: TaskStatus,
        exit_code: int | None,
        reason: str | None,
        finished: datetime,
        final: bool = True,
    ) -> list[Attempt] | None:
        """History with the attempt that just ended appended (the last HISTORY_LIMIT kept).

        A task that ends after a single attempt keeps no history: its own exit code, reason,
        start and finish describe that attempt, and 2,000 tasks must fit in one object.
        """
        if final and not status.history:
            return None
        attempt = Attempt(
            attempt=status.attempts,
            exit_code=exit_code,
            reason=reason,
            started_at=status.attempt_started_at,
            finished_at=format_time(finished),
        )
        return [*(status.history or ())[-(HISTORY_LIMIT - 1) :], attempt]

    def _attempt_succeeded(
        self,
        name: str,
        status: TaskStatus,
        seen: Observation,
        outputs: dict[str, str],
        finished: datetime,
    ) -> None:
        exit_code = seen.exit_code if seen.exit_code is not None else 0
        self._set(
            name,
            status,
            phase="Succeeded",
            exit_code=exit_code,
            reason=None,
            message=None,
            outputs=outputs or None,
            finished_at=format_time(finished),
            attempt_started_at=None,
            history=self._record(status, exit_code, "Completed", finished),
        )
        self.running -= 1
        self._add_outputs(name, outputs)
        task = self._task(name)
        if task.cache is not None:
            key = cache_key(self.state.namespace, render_task(task, self._context()), self._params)
            expires = finished + timedelta(seconds=task.cache.ttl_seconds)
            self.actions.append(StoreCache(key, outputs, expires, name))
        self._event("Normal", "TaskSucceeded", f"attempt {status.attempts} succeeded", name)

    def _attempt_failed(
        self,
        name: str,
        status: TaskStatus,
        kind: FailureKind,
        exit_code: int | None,
        reason: str,
        message: str | None,
        finished: datetime,
        permanent: bool = False,
    ) -> None:
        """Retry the task after its backoff when the policy allows (and a retry can help),
        else fail it."""
        n = status.attempts
        retry = retry_of(self.plan.tasks[name], self.defaults)
        again = not permanent and retry is not None and should_retry(retry, kind, exit_code, n)
        detail = f"{_describe(reason, exit_code, message)} (attempt {n} of "
        detail += f"{(retry.limit if retry else 0) + 1})"
        common: dict[str, Any] = {
            "exit_code": exit_code,
            "reason": reason,
            "attempt_started_at": None,
            "history": self._record(status, exit_code, reason, finished, final=not again),
        }
        self.running -= 1
        if retry is not None and again:
            at = format_time(next_attempt_at(retry.backoff, n, finished))
            message = _short(f"{detail}; retrying at {at}")
            self._set(name, status, phase="Retrying", next_retry_at=at, message=message, **common)
            self._event("Warning", "TaskRetrying", message, name)
        else:
            message = _short(detail)
            self._set(
                name, status, phase="Failed", finished_at=self.stamp, message=message, **common
            )
            self._event("Warning", "TaskFailed", message, name)

    # --- cancel, deadline, failure -------------------------------------------------------

    def _stop(
        self,
        name: str,
        status: TaskStatus,
        reason: Literal["Timeout", "Cancelled", "DeadlineExceeded", "PodPending"],
    ) -> None:
        self.actions.append(Stop(status.job_name or "", name, reason))

    def _end_task(
        self,
        name: str,
        status: TaskStatus,
        phase: Literal["Failed", "Skipped", "Cancelled"],
        reason: str,
        message: str,
    ) -> None:
        """Put a task in a final phase, recording an interrupted attempt in its history."""
        update: dict[str, Any] = {}
        if status.phase == "Running":
            update["history"] = self._record(status, None, reason, self.now)
            self.running -= 1
        self._set(
            name,
            status,
            phase=phase,
            reason=reason,
            message=_short(message),
            finished_at=self.stamp,
            next_retry_at=None,
            attempt_started_at=None,
            **update,
        )

    def _cancel(self) -> None:
        for name in (*self.plan.main, *self.plan.handlers):
            status = self.tasks.get(name)
            if status is None or status.phase in FINISHED_TASK_PHASES:
                continue
            if status.phase == "Running":
                self._stop(name, status, "Cancelled")
            self._end_task(name, status, "Cancelled", "Cancelled", "the run was cancelled")
        self._finish("Cancelled", "Cancelled", "cancelled by spec.cancel")

    def _enforce_deadline(self) -> None:
        """Past activeDeadlineSeconds: stop the main tasks, skip what has not started."""
        seconds = self.state.spec.active_deadline_seconds
        if seconds is None or self.started_at is None or self._done(self.plan.main):
            return
        deadline = parse_time(self.started_at) + timedelta(seconds=seconds)
        if self.now < deadline:
            self.wakes.append(deadline)
            return
        message = f"the run exceeded activeDeadlineSeconds={seconds}"
        for name in self.plan.main:
            status = self.tasks.get(name) or TaskStatus()
            if status.phase == "Running":
                self._stop(name, status, "DeadlineExceeded")
                self._end_task(name, status, "Failed", "DeadlineExceeded", f"stopped: {message}")
            elif status.phase == "Retrying":
                msg = f"not retried: {message}"
                self._end_task(name, status, "Failed", "DeadlineExceeded", msg)
            elif status.phase not in FINISHED_TASK_PHASES:
                msg = f"not started: {message}"
                self._end_task(name, status, "Skipped", "DeadlineExceeded", msg)
        if self.reason is None:
            self.reason, self.message = "DeadlineExceeded", message

    def _note_failure(self) -> None:
        """Remember the first task that failed for good (it names the run's failure)."""
        if self.reason is not None:
            return
        for name in self.plan.main:
            status = self.tasks.get(name)
            if (
                status is not None
                and status.phase == "Failed"
                and not self.plan.tasks[name].allow_failure
            ):
                self.reason = "TaskFailed"
                self.message = _short(f'task "{name}" failed: {status.message or status.reason}')
                self._event("Warning", "RunFailing", self.message)
                return

    # --- starting tasks ------------------------------------------------------------------

    def _advance(self, order: list[str], failing: bool) -> None:
        """Skip what can no longer run, start what is ready, in start order."""
        for name in order:
            status = self.tasks.get(name)
            if status is None:
                status = self.tasks[name] = TaskStatus()
                self.changed = True
            if status.phase == "Pending":
                ready = self._readiness(name)
                if isinstance(ready, str):
                    self._end_task(name, status, "Skipped", "UpstreamFailed", ready)
                elif failing:
                    msg = f"not started: the run is failing ({self.reason})"  # not its message
                    # again: 5,000 copies of it would not fit in one object
                    self._end_task(name, status, "Skipped", "UpstreamFailed", msg)
                elif ready and not self.state.suspend:
                    self._try_start(name, status)
            elif status.phase == "Retrying":
                if failing:
                    last = (status.message or "").partition("; retrying at ")[0]
                    msg = f"{last}; not retried: {self.message}"
                    self._end_task(name, status, "Failed", status.reason or "Error", msg)
                    continue
                due = parse_time(status.next_retry_at) if status.next_retry_at else self.now
                if due > self.now:
                    self.wakes.append(due)
                elif not self.state.suspend and self._slot_free():
                    self._launch(name, status, None)

    def _readiness(self, name: str) -> bool | str:
        """True when every dependency Succeeded or was Skipped by its own `when`; a message
        when one never will (it failed, or was skipped or cancelled); else False."""
        ready = True
        for dep in self.plan.deps[name]:
            status = self.tasks.get(dep)
            phase = status.phase if status is not None else "Pending"
            if phase == "Succeeded" or (status is not None and status.reason == "WhenFalse"):
                continue
            if phase in ("Failed", "Cancelled", "Skipped"):
                return f'dependency "{dep}" {phase.lower()}'
            ready = False
        return ready

    def _slot_free(self) -> bool:
        limit = self.state.spec.parallelism
        return limit is None or self.running + self.reserved < limit

    def _try_start(self, name: str, status: TaskStatus) -> None:
        """First attempt of a ready task: `when`, then the cache, then a launch if a slot is
        free."""
        raw = self.plan.tasks[name]
        use_cache = raw.cache is not None and self.state.use_cache
        if not raw.when and not use_cache and not self._slot_free():
            return
        task = self._task(name)
        unmet = unmet_condition(task, self._context()) if task.when else None
        if unmet is not None:
            self._end_task(name, status, "Skipped", "WhenFalse", unmet)
            self._event("Normal", "TaskSkipped", unmet, name)
            return
        rendered = None
        if use_cache:
            rendered = render_task(task, self._context())
            key = cache_key(self.state.namespace, rendered, self._params)
            if key not in self.cache:
                self.lookups.append(key)
                self.reserved += self._slot_free()
                return
            entry = self.cache[key]
            if entry is not None and (entry.expires_at is None or utc(entry.expires_at) > self.now):
                self._cached(name, status, entry)
                return
        if self._slot_free():
            self._launch(name, status, rendered)

    def _cached(self, name: str, status: TaskStatus, entry: CacheEntry) -> None:
        declared = self.plan.tasks[name].outputs or ()
        outputs = {k: v for k, v in entry.outputs.items() if k in declared}
        self._set(
            name,
            status,
            phase="Succeeded",
            cached=True,
            outputs=outputs or None,
            started_at=self.stamp,
            finished_at=self.stamp,
        )
        self._add_outputs(name, outputs)
        self._event("Normal", "TaskCached", "reused a cached result; nothing ran", name)

    def _launch(self, name: str, status: TaskStatus, rendered: Task | None) -> None:
        task = rendered or render_task(self._task(name), self._context())
        n = status.attempts + 1
        job = job_name(self.state.name, name, n, self.state.uid)
        timeout = task.timeout_seconds
        self.actions.append(
            Launch(
                job_name=job,
                task=name,
                attempt=n,
                image=task.image,
                command=tuple(task.command) if task.command is not None else None,
                args=tuple(task.args or ()),
                env=attempt_env(self.state.name, task, n, self._params),
                script=task.script,
                timeout_seconds=timeout,
                outputs=tuple(task.outputs or ()),
                labels=labels(self.state.name, name, n),
                pod=PodSettings(**{f: getattr(task, f) for f in POD_FIELDS}),
                service_account_name=self.state.spec.service_account_name,
                on_failure=name in self.plan.handlers,
                # Only an attempt whose container did not exit (Lost...) may still run; a
                # failed one's Job stays, so its pod log can be read (kopflow logs --attempt).
                replaces=status.job_name if status.attempts and status.exit_code is None else None,
            )
        )
        self._set(
            name,
            status,
            phase="Running",
            attempts=n,
            job_name=job,
            attempt_started_at=self.stamp,
            started_at=status.started_at or self.stamp,
            next_retry_at=None,
            exit_code=None,
            reason=None,
            message=None,
        )
        self.running += 1
        self.wakes.append(self.now + MISSING_GRACE)
        if timeout is not None:
            self.wakes.append(self.now + timedelta(seconds=timeout))
        self._event("Normal", "TaskStarted", f"attempt {n} started as job {job}", name)

    # --- finishing -----------------------------------------------------------------------

    def _done(self, order: list[str]) -> bool:
        for name in order:
            status = self.tasks.get(name)
            if status is None or status.phase not in FINISHED_TASK_PHASES:
                return False
        return True

    def _succeed(self) -> None:
        allowed = [n for n in self.plan.main if self.tasks[n].phase == "Failed"]
        message = f"allowed failures: {', '.join(allowed)}" if allowed else None
        self._finish("Succeeded", "Succeeded", message)

    def _run_handlers(self) -> None:
        """The main DAG failed and is finished: run onFailure, then fail the run."""
        self._advance(self.plan.handlers, failing=False)
        if not self._done(self.plan.handlers):
            return
        message = self.message or "the run failed"
        failed = [n for n in self.plan.handlers if self.tasks[n].phase != "Succeeded"]
        if failed:
            message += f"; onFailure not successful: {', '.join(failed)}"
        self._finish("Failed", self.reason or "TaskFailed", _short(message))

    def _finish(self, phase: RunPhase, reason: str, message: str | None) -> None:
        self.phase, self.reason, self.message = phase, reason, message
        self.finished_at = self.stamp
        kind: Literal["Normal", "Warning"] = "Normal" if phase == "Succeeded" else "Warning"
        self._event(kind, f"Run{phase}", message or f"the run {phase.lower()}")

    def _decide(self) -> Decision:
        """Assemble the new status; only a changed status gets a new duration."""
        total = len(self.plan.main)
        done = sum(
            1
            for n in self.plan.main
            if (s := self.tasks.get(n)) is not None and s.phase in FINISHED_TASK_PHASES
        )
        generation = (
            self.state.generation
            if self.state.generation is not None
            else self.old.observed_generation
        )
        fields: dict[str, Any] = {
            "phase": self.phase,
            "reason": self.reason,
            "message": self.message,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "progress": f"{done}/{total}",
            "parameters": self.old.parameters
            if self.old.parameters is not None
            else dict(self.state.parameters),
            "observed_generation": generation,
            "conditions": run_conditions(
                self.old.conditions,
                self.phase,
                self.reason,
                self.message,
                self.state.suspend,
                self.stamp,
                generation,
            ),
        }
        changed = self.changed or any(getattr(self.old, k) != v for k, v in fields.items())
        status = self.old
        if changed:
            end = parse_time(self.finished_at) if self.finished_at else self.now
            start = parse_time(self.started_at) if self.started_at else end
            fields["duration"] = format_duration((end - start).total_seconds())
            fields["tasks"] = self.tasks
            status = self.old.model_copy(update=fields)
        requeue = None
        if self.phase not in FINISHED_RUN_PHASES:
            if self.lookups:
                requeue = self.now
            else:
                requeue = min((w for w in self.wakes if w > self.now), default=None)
        actions = list(self.actions)
        if self.lookups:
            actions.append(LookupCache(tuple(dict.fromkeys(self.lookups))))
        return Decision(status, tuple(actions), requeue, tuple(self.events), changed)

    # --- helpers -------------------------------------------------------------------------

    @property
    def _params(self) -> Mapping[str, str]:
        return self.state.parameters

    def _set(self, name: str, status: TaskStatus, **update: Any) -> None:
        self.tasks[name] = status.model_copy(update=update)
        self.changed = True

    def _task(self, name: str) -> Task:
        """The task with taskDefaults merged (built only for tasks about to start or end)."""
        task = self._merged.get(name)
        if task is None:
            task = self._merged[name] = merge_defaults(self.plan.tasks[name], self.defaults)
        return task

    def _context(self) -> dict[str, str]:
        """Template values: parameters, run values, outputs of finished tasks."""
        if self._values is None:
            outputs = {n: s.outputs for n, s in self.tasks.items() if s.outputs}
            started = self.started_at
            values = run_values(
                self.state.name, self.state.namespace, self.state.scheduled_time, started
            )
            self._values = templating.context(self._params, outputs, values)
        return self._values

    def _add_outputs(self, name: str, outputs: Mapping[str, str]) -> None:
        if self._values is not None:
            self._values.update(templating.context({}, {name: outputs}, {}))

    def _event(
        self, kind: Literal["Normal", "Warning"], reason: str, message: str, task: str | None = None
    ) -> None:
        text = f'task "{task}": {message}' if task else message
        self.events.append(Event(kind, reason, text, task))
