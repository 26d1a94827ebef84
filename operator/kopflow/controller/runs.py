"""One WorkflowRun's control loop: resolve, reconcile, act, persist, sleep until woken.

All state is in the run's status; this object only caches the last status it wrote (fresher
than the watch may be) and the cache answers of the current step. Killing it at any point
loses nothing: Jobs are created before the status that records them (a relaunch is a 409),
and a status is written only after its actions were carried out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from kopflow import metrics
from kopflow.api.run import FINISHED_RUN_PHASES, ConfigMapKeyRef, WorkflowRun, WorkflowRunStatus
from kopflow.api.workflow import WorkflowSpec
from kopflow.controller import owned
from kopflow.controller.client import ApiError
from kopflow.controller.index import AttemptIndex
from kopflow.controller.kube import JobRejected, Kube
from kopflow.controller.patches import merge_patch
from kopflow.engine.conditions import set_condition
from kopflow.engine.decisions import Decision, Launch, LookupCache, Stop, StoreCache
from kopflow.engine.defaults import snapshot
from kopflow.engine.observations import CacheEntry, Observation
from kopflow.engine.params import resolve_parameters
from kopflow.engine.reconcile import MISSING_GRACE, reconcile
from kopflow.engine.render import run_values
from kopflow.engine.reuse import reuse_issues
from kopflow.engine.spill import hydrate, needed_shards, plan_spill, shard_name, stored
from kopflow.engine.state import RunState, jobs_to_observe
from kopflow.engine.times import format_time, parse_time
from kopflow.engine.validation import Issue, missing_images, pydantic_issues, validate_spec
from kopflow.executors.kubernetes import build_job

logger = logging.getLogger("kopflow.runs")
MAX_MESSAGE_ISSUES = 5
ERROR_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
POD_GRACE = timedelta(milliseconds=500)
"""How long a finished Job's Pod event may lag before the Pod is read from the API."""
DONE = datetime.min.replace(tzinfo=UTC)
"""What step() returns when the run needs no further reconciling."""
MAX_CONFLICTS = 3
"""Conflicting status writes recomputed at once in a row; then the error backoff applies."""
REJECTION_ROUNDS = 8
"""Reconciles within one step that may follow refused Jobs (each can launch more)."""
REFUSAL_CHECK = timedelta(seconds=2)
"""A Job still without a pod this long after its launch has its FailedCreate Events read
(then twice as long after each read, up to REFUSAL_CHECK_MAX: when a busy Job controller
leaves hundreds of Jobs pod-less for a while, a fixed period made a storm of Event lists that
slowed it further): the refusal's words go into the task status."""
REFUSAL_CHECK_MAX = timedelta(seconds=30)


class Conflict(Exception):
    """The run changed since our last read (a fenced status write got 409): recompute now."""


class WaitForWorkflow(Exception):
    """The run's Workflow does not exist (yet); look again at `until` or when it appears."""

    def __init__(self, until: datetime) -> None:
        super().__init__(until)
        self.until = until


def _now() -> datetime:
    return datetime.now(UTC)


class Invalid(Exception):
    """The run cannot start; issues say why (they end up in status.message and an Event)."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(map(str, issues)))
        self.issues = issues


class RunWorker:
    """Drives one run until it finishes (and, with a TTL, until it is deleted)."""

    def __init__(
        self,
        namespace: str,
        name: str,
        kube: Kube,
        index: AttemptIndex,
        workflows: Mapping[tuple[str, str], dict[str, Any]] | None = None,
    ) -> None:
        self.namespace, self.name = namespace, name
        self.kube, self.index = kube, index
        self.workflows = workflows or {}
        """Workflows as the operator's watch last saw them: a run starts without a read."""
        self.body: dict[str, Any] = {}
        self.wake = asyncio.Event()
        self.stepping_since: float | None = None
        """monotonic() when the current step began (None between steps): /healthz reads it."""
        self.written: WorkflowRunStatus | None = None
        self.answers: dict[str, CacheEntry | None] = {}
        self.spec: WorkflowSpec | None = None
        self.pod_waits: dict[str, datetime] = {}
        """Jobs seen finished whose Pod's final state has not arrived yet: since when."""
        self.rejected: dict[str, Observation] = {}
        """Attempts whose Job the API refused: they fail on the next step (JobRejected)."""
        self.refusals: dict[str, tuple[datetime, str | None, timedelta]] = {}
        """Pod-less Jobs: when their FailedCreate Events were last read, the message, and
        how long until the next read."""
        self.rv: str | None = None
        """resourceVersion of the run after our last status write: the next write's fence."""
        self.pinned: ConfigMapKeyRef | None = None
        """The ConfigMap holding the workflowRef's spec as this run started (to record)."""
        self.budget = owned.budget()

    def update(self, body: dict[str, Any]) -> None:
        """A newer body from the watch; wakes the loop."""
        self.body = body
        self.rv = None
        self.wake.set()

    async def loop(self) -> None:
        """Reconcile until finished; API errors back off and retry, they never end the run."""
        failures = conflicts = 0
        while True:
            self.wake.clear()
            try:
                self.stepping_since = time.monotonic()
                with metrics.reconciling(self.namespace):
                    until = await self.step()
                failures = conflicts = 0
            except asyncio.CancelledError:
                raise
            except Conflict:
                conflicts += 1
                if conflicts <= MAX_CONFLICTS:
                    continue  # re-read already: recompute at once
                failures, conflicts = failures + 1, 0
                delay = ERROR_BACKOFF[min(failures, len(ERROR_BACKOFF) - 1)]
                until = _now() + timedelta(seconds=delay)
            except Exception:
                delay = ERROR_BACKOFF[min(failures, len(ERROR_BACKOFF) - 1)]
                failures += 1
                logger.exception(
                    "run %s/%s: step failed; retrying in %ss", self.namespace, self.name, delay
                )
                until = _now() + timedelta(seconds=delay)
            self.stepping_since = None
            if until is DONE:
                return
            await self._sleep(until)

    async def _sleep(self, until: datetime | None) -> None:
        """Until woken, or until `until` (None: only a wake ends the sleep)."""
        timeout = None if until is None else (until - _now()).total_seconds()
        if (timeout is not None and timeout <= 0) or self.wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)

    # --- one step ----------------------------------------------------------------------------

    def _status(self) -> WorkflowRunStatus | None:
        if self.written is not None:
            return self.written
        raw = self.body.get("status")
        if not raw:
            return None
        try:
            return WorkflowRunStatus.model_validate(raw)
        except ValidationError:
            return None

    async def step(self) -> datetime | None:
        """One reconcile; returns when to run again at the latest (None: when woken), or DONE."""
        if self.body.get("metadata", {}).get("deletionTimestamp"):
            return DONE
        status = self._status()
        if status is not None and status.phase in FINISHED_RUN_PHASES:
            return await self._expire(status)
        if self.written is None and (names := needed_shards(self.name, status)):
            assert status is not None
            shards = await owned.read_shards(self.kube, self.body, names)
            status = hydrate(self.name, status, shards)  # outputs for templating
        try:
            run = WorkflowRun.model_validate(self.body)
        except ValidationError as err:  # what the CRD schema let through (or an older CRD)
            await self._invalid(pydantic_issues(err))
            return DONE
        try:
            spec, params = await self._resolve(run, status)
        except Invalid as err:
            await self._invalid(err.issues)
            return DONE
        except WaitForWorkflow as wait:
            return wait.until
        if status is not None and status.phase == "Pending" and status.started_at is None:
            status = None  # it waited for its Workflow: it starts now
        state = RunState(
            name=self.name,
            namespace=self.namespace,
            spec=spec,
            parameters=params,
            status=status,
            cancel=run.spec.cancel,
            suspend=run.spec.suspend,
            use_cache=run.spec.cache,
            scheduled_time=run.spec.scheduled_time,
            generation=self.body["metadata"].get("generation"),
            uid=self.body["metadata"].get("uid") or "",
            retry_of=run.spec.retry_of,
        )
        observations, pod_due = await self._observe(status)
        now = _now()
        decision = reconcile(state, observations, self.answers, now)
        self.kube.fence()
        await self._carry_out(decision, now)
        events, changed = list(decision.events), decision.changed
        for _ in range(REJECTION_ROUNDS):
            # a refused Job fails its attempt before any status is written: a status that
            # says Running for a Job that never existed would read as Lost after a restart
            refused = {a.job_name for a in decision.launches} & self.rejected.keys()
            if not refused:
                break
            observations = {**observations, **{j: self.rejected[j] for j in refused}}
            state = dataclasses.replace(state, status=decision.status)
            decision = reconcile(state, observations, self.answers, now)
            self.kube.fence()
            await self._carry_out(decision, now)
            events += decision.events
            changed = changed or decision.changed
        if changed:
            self.kube.fence()
            await self._persist(decision.status)
        for event in events:
            self.kube.post_event_later(self.body, event.type, event.reason, event.message, now)
        if decision.finished:
            return await self._expire(self._finishing(decision.status))
        running = set(jobs_to_observe(decision.status))
        for job in [j for j in self.rejected if j not in running]:
            del self.rejected[job]
        for job in [j for j in self.refusals if j not in running]:
            del self.refusals[job]
        if self.rejected:
            return now  # record the refusal as the attempt's failure at once
        if pod_due is not None:
            return min(pod_due, decision.requeue_at or pod_due)
        return decision.requeue_at

    async def _observe(
        self, status: WorkflowRunStatus | None
    ) -> tuple[dict[str, Observation], datetime | None]:
        """Observations of the running attempts, and when to look again for a Pod.

        A Job can be seen finished before its Pod's final state (two watches race), and the
        outputs are in the Pod. Such an attempt counts as still running for POD_GRACE, which
        the Pod event nearly always beats; after that its Pods are read once from the API.
        """
        observations: dict[str, Observation] = {}
        due: datetime | None = None
        tasks = (status.tasks or {}).values() if status is not None else ()
        launched = {
            t.job_name: parse_time(t.attempt_started_at)
            for t in tasks
            if t.job_name and t.attempt_started_at
        }
        for job in jobs_to_observe(status):
            if job in self.rejected:
                observations[job] = self.rejected[job]
                continue
            if self.index.needs_pod(self.namespace, job):
                seen = self.pod_waits.setdefault(job, _now())
                if _now() - seen < POD_GRACE:
                    observations[job] = Observation("running")
                    due = min(due or seen + POD_GRACE, seen + POD_GRACE)
                    continue
                for pod in await self.kube.job_pods(self.namespace, job):
                    self.index.on_pod("ADDED", pod)
            self.pod_waits.pop(job, None)
            observations[job] = await self._observe_one(job, launched.get(job))
        return observations, due

    async def _observe_one(self, job: str, launched: datetime | None) -> Observation:
        """The attempt from the index; a Job the watch has not shown by the time it would be
        Lost is read from the API first (a lagging watch must not cause a second attempt);
        a pod-less Job's FailedCreate Events are read for the refusal's words."""
        uid = self.body.get("metadata", {}).get("uid")
        seen = self.index.observe(self.namespace, job, uid)
        now = _now()
        if seen.state == "missing" and launched is not None and now >= launched + MISSING_GRACE:
            body = await self.kube.get_job(self.namespace, job)
            if body is not None:
                self.index.on_job("ADDED", body)
                seen = self.index.observe(self.namespace, job, uid)
        if (
            seen.pending
            and seen.reason == "PodNotCreated"
            and self.index.synced(self.namespace, job)  # a busy Job controller: no refusal yet
        ):
            checked, message, every = self.refusals.get(job, (None, None, REFUSAL_CHECK))
            old_enough = launched is None or now >= launched + REFUSAL_CHECK
            if old_enough and (checked is None or now >= checked + every):
                message = await self.kube.job_refusal(self.namespace, job) or message
                later = every if checked is None else min(every * 2, REFUSAL_CHECK_MAX)
                self.refusals[job] = (now, message, later)
            if message:
                seen = self.index.observe(self.namespace, job, uid, refused=message)
        return seen

    async def _resolve(
        self, run: WorkflowRun, status: WorkflowRunStatus | None
    ) -> tuple[WorkflowSpec, dict[str, str]]:
        """The spec snapshot and parameters: from status once started, else from the spec."""
        if status is not None and status.workflow is not None:  # an earlier kopflow's run
            if self.spec is None:
                self.spec = WorkflowSpec.model_validate(status.workflow)
            return self.spec, dict(status.parameters or {})
        if status is not None and status.workflow_snapshot is not None:
            if self.spec is None:
                self.spec = await self._read_pinned(status.workflow_snapshot)
            return self.spec, dict(status.parameters or {})
        if status is not None and status.started_at is not None and run.spec.workflow is not None:
            self.spec = run.spec.workflow  # immutable (CRD rule): the run's one copy
            return self.spec, dict(status.parameters or {})
        if run.spec.workflow is not None:
            spec, prefix = run.spec.workflow, "spec.workflow"
        elif run.spec.workflow_ref is not None:
            ref = run.spec.workflow_ref.name
            body = self.workflows.get((self.namespace, ref))
            if body is None:  # created a moment ago (or never): the watch may not have it yet
                body = await self.kube.get_workflow(self.namespace, ref)
            if body is None:
                await self._wait_for_workflow(run, ref, status)
                raise Invalid(
                    [
                        Issue(
                            "spec.workflowRef.name",
                            f'Workflow "{ref}" not found in namespace {self.namespace}; create it '
                            "first or fix the name",
                        )
                    ]
                )
            try:
                spec = WorkflowSpec.model_validate(body.get("spec") or {})
            except ValidationError as err:
                issues = pydantic_issues(err, "spec")
                raise Invalid(
                    [Issue(f"Workflow {ref}: {i.path}", i.message) for i in issues]
                ) from err
            prefix = f"Workflow {ref}: spec"
        else:
            raise Invalid([Issue("spec", "set exactly one of spec.workflowRef or spec.workflow")])
        issues = [
            Issue(i.path.replace("spec", prefix, 1), i.message)
            for i in validate_spec(spec) + missing_images(spec)
        ]
        issues += reuse_issues(spec, run.spec.retry_of)
        started = format_time(_now())
        values = run_values(self.name, self.namespace, run.spec.scheduled_time, started)
        params, param_issues = resolve_parameters(spec, run.spec.parameters, values)
        if issues or param_issues:
            raise Invalid(issues + param_issues)
        if run.spec.workflow_ref is not None:
            self.pinned, raw = await owned.pin_workflow(self.kube, self.body, snapshot(spec))
            if raw != snapshot(spec):  # pinned before a restart; the Workflow changed since
                spec = WorkflowSpec.model_validate(raw)
                params, _ = resolve_parameters(spec, run.spec.parameters, values)
        self.spec = spec
        return spec, params

    async def _read_pinned(self, ref: ConfigMapKeyRef) -> WorkflowSpec:
        raw = await owned.read_snapshot(self.kube, self.body, ref)
        if raw is None:
            raise Invalid(
                [
                    Issue(
                        "status.workflowSnapshot",
                        f"ConfigMap {ref.config_map} (key {ref.key}) with the spec this run "
                        "started with is gone; the run cannot continue: create it again",
                    )
                ]
            )
        return WorkflowSpec.model_validate(raw)

    async def _wait_for_workflow(
        self, run: WorkflowRun, ref: str, status: WorkflowRunStatus | None
    ) -> None:
        """Within workflowWaitSeconds of its creation a run waits for its Workflow (Pending,
        WorkflowNotFound, an Event once): `kubectl apply -f dir/` may create it first. Raises
        WaitForWorkflow; returns when the wait is over (the run is then Invalid)."""
        created = self.body.get("metadata", {}).get("creationTimestamp")
        now = _now()
        start = parse_time(created) if isinstance(created, str) and created else now
        until = start + timedelta(seconds=run.spec.workflow_wait_seconds)
        if now >= until:
            return
        if status is None or status.reason != "WorkflowNotFound":
            message = (
                f'Workflow "{ref}" not found in namespace {self.namespace}; waiting up to '
                f"{run.spec.workflow_wait_seconds}s (spec.workflowWaitSeconds) for it"
            )
            stamp = format_time(now)
            generation = self.body["metadata"].get("generation")
            await self._persist(
                WorkflowRunStatus(
                    phase="Pending",
                    reason="WorkflowNotFound",
                    message=message,
                    observed_generation=generation,
                    conditions=set_condition(
                        None, "Succeeded", "Unknown", "WorkflowNotFound", message, stamp, generation
                    ),
                )
            )
            self.kube.post_event_later(self.body, "Warning", "WorkflowNotFound", message, now)
        raise WaitForWorkflow(until)

    async def _invalid(self, issues: list[Issue]) -> None:
        shown = "; ".join(str(i) for i in issues[:MAX_MESSAGE_ISSUES])
        if len(issues) > MAX_MESSAGE_ISSUES:
            shown += f" (and {len(issues) - MAX_MESSAGE_ISSUES} more)"
        now = format_time(_now())
        generation = self.body["metadata"].get("generation")
        status = WorkflowRunStatus(
            phase="Invalid",
            reason="Invalid",
            message=shown,
            started_at=now,
            finished_at=now,
            duration="0s",
            observed_generation=generation,
            conditions=set_condition(None, "Succeeded", "False", "Invalid", shown, now, generation),
        )
        await self._persist(status)
        self.kube.post_event_later(self.body, "Warning", "RunInvalid", shown, _now())

    def _written(self) -> WorkflowRunStatus | None:
        """The status last written (in memory, outputs hydrated), else as the body has it."""
        if self.written is not None:
            return self.written
        try:
            return WorkflowRunStatus.model_validate(self.body.get("status") or {})
        except ValidationError:
            return None

    async def _persist(self, status: WorkflowRunStatus) -> None:
        """Write status as a merge patch against what the server holds (as far as we know):
        outputs over the inline budget first into the run's shards, which it then names."""
        previous = self._written()
        spill = plan_spill(self.name, status, previous, self.budget, len(status.tasks or {}))
        for n, entries in sorted(spill.writes.items()):
            await owned.write_shard(self.kube, self.body, shard_name(self.name, n), entries)
        status = self._finishing(spill.status)
        new = stored(status).dump()
        if self.written is not None:
            old = stored(self.written).dump()
        else:
            old = self.body.get("status") or {}
        patch = merge_patch(old, new)
        if patch:
            fence = self.rv or self.body.get("metadata", {}).get("resourceVersion")
            try:
                answer = await self.kube.patch_run_status(self.namespace, self.name, patch, fence)
            except ApiError as err:
                if err.status != 409:
                    raise
                fresh = await self.kube.get_run(self.namespace, self.name)
                if fresh is not None:
                    self.body = fresh
                self.written, self.rv, self.spec = None, None, None
                raise Conflict(str(err)) from err
            self.rv = (answer.get("metadata") or {}).get("resourceVersion") or None
            metrics.run_status_written(self.namespace, self.body, old, new)
        self.written = status

    async def _carry_out(self, decision: Decision, now: datetime) -> None:
        launches = [a for a in decision.actions if isinstance(a, Launch)]
        if launches:
            await asyncio.gather(*(self._launch(a, now) for a in launches))
        for action in decision.actions:
            if isinstance(action, Stop):
                await self.kube.delete_job(self.namespace, action.job_name)
            elif isinstance(action, StoreCache):
                await self.kube.put_cache(
                    self.namespace,
                    action.key,
                    dict(action.outputs),
                    action.expires_at,
                    (self._workflow_name(), action.task),
                )
            elif isinstance(action, LookupCache):
                answers = await asyncio.gather(
                    *(self.kube.get_cache(self.namespace, k, now) for k in action.keys)
                )
                self.answers.update(zip(action.keys, answers, strict=True))

    def _workflow_name(self) -> str:
        """The Workflow a run runs: its workflowRef, else its generateName, else its name."""
        ref = ((self.body.get("spec") or {}).get("workflowRef") or {}).get("name")
        stem = (self.body.get("metadata", {}).get("generateName") or "").rstrip("-")
        return str(ref or stem or self.name)

    async def _launch(self, launch: Launch, now: datetime) -> None:
        """Delete the previous attempt's Job, then create this one's; a refusal is recorded
        to fail the attempt (JobRejected) instead of retrying the step forever."""
        if launch.replaces:
            await self.kube.delete_job(self.namespace, launch.replaces)
        try:
            if not await self.kube.create_job(self.namespace, build_job(launch, self.body)):
                # The Job existed (a relaunch): it may have finished and all its watch events
                # come before this step, and then none follows to wake us; look again at once
                # instead of sleeping until it would count as Lost (MISSING_GRACE, 30 s).
                self.wake.set()
        except JobRejected as err:
            message = f"the API refused Job {launch.job_name} ({err.status}): {err}"
            self.rejected[launch.job_name] = Observation(
                "failed", reason="JobRejected", message=message, permanent=err.permanent
            )
            text = f'task "{launch.task}": {message}'
            self.kube.post_event_later(self.body, "Warning", "JobRejected", text, now)

    def _finishing(self, status: WorkflowRunStatus) -> WorkflowRunStatus:
        """What the status records besides the engine's: the pinned spec's ConfigMap, and when
        a finished run is deleted (so that a restart need not read the spec to know)."""
        update: dict[str, Any] = {}
        if self.pinned is not None and status.workflow_snapshot is None:
            update["workflow_snapshot"] = self.pinned
        ttl = self.spec.ttl_seconds_after_finished if self.spec is not None else None
        finished = status.phase in FINISHED_RUN_PHASES and status.finished_at
        if finished and ttl is not None and status.delete_at is None:
            due = parse_time(status.finished_at or "") + timedelta(seconds=ttl)
            update["delete_at"] = format_time(due)
        return status.model_copy(update=update) if update else status

    async def _expire(self, status: WorkflowRunStatus) -> datetime | None:
        """Delete a finished run whose workflow's ttlSecondsAfterFinished has passed; a later
        deadline is the supervisor's (finished.Expiry): the worker ends either way."""
        ttl = (status.workflow or {}).get("ttlSecondsAfterFinished")
        if status.delete_at:
            due = parse_time(status.delete_at)
        elif ttl is None or not status.finished_at:
            return DONE
        else:
            due = parse_time(status.finished_at) + timedelta(seconds=int(ttl))
        if _now() >= due:
            await self.kube.delete_run(self.namespace, self.name)
        return DONE
