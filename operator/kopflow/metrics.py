"""Prometheus metrics of the operator and of `kopflow run`, and their HTTP endpoint.

Two kinds of metrics, kept apart on purpose:

- Counters and histograms of things that happen (a run finished, an attempt failed, an API
  call answered). They are counted where the work is done, so only the replica that acts (the
  leader) counts; a restarted operator does not count again what its status already records
  (counting follows the status writes, which are diffs against what the server holds).
- Gauges about the cluster (active runs, the oldest active run, the last success). They are
  derived at scrape time from the resources this replica watches (`track()`), so they are right
  right after a restart and on a new leader; a follower exports none, so `sum()` across
  replicas never counts a run twice.

Labels are bounded: namespace, workflow (a Workflow's name, never a run's name), task (at most
MAX_TASKS distinct names per workflow, the rest as `_other`), phase, result, verb, code.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kopflow import __version__
from kopflow.engine.times import parse_time

C = TypeVar("C")
OTHER = "_other"
"""The label value for everything past a cap."""
MAX_TASKS = 50
"""Distinct task label values per workflow; more tasks are counted as `_other`."""
MAX_WORKFLOWS = 500
"""Distinct workflow label values per namespace (inline runs name theirs by generateName)."""
INLINE = "_inline"
"""The workflow label of an inline run without generateName."""
FINISHED = ("Succeeded", "Failed", "Cancelled", "Invalid")
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
TASK_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400)
API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# `_created` series would double the output; no query needs them
disable_created_metrics()  # type: ignore[no-untyped-call]
WF = ("namespace", "workflow")
RUNS = Counter("kopflow_runs", "Runs finished, by final phase.", [*WF, "phase"])
RUN_DURATION = Histogram(
    "kopflow_run_duration_seconds",
    "Wall time of finished runs, start to finish.",
    [*WF, "phase"],
    buckets=RUN_BUCKETS,
)
TASK_ATTEMPTS = Counter(
    "kopflow_task_attempts",
    "Finished task attempts by result (succeeded, failed, cancelled).",
    [*WF, "task", "result"],
)
TASK_DURATION = Histogram(
    "kopflow_task_duration_seconds",
    "Wall time of finished task attempts.",
    [*WF, "task"],
    buckets=TASK_BUCKETS,
)
TASK_RETRIES = Counter(
    "kopflow_task_retries", "Attempts started after a task's first one.", [*WF, "task"]
)
CACHE_LOOKUPS = Counter("kopflow_cache_lookups", "Task cache lookups (hit, miss).", ["result"])
CACHE_EXPIRED = Counter(
    "kopflow_cache_entries_expired_deleted", "Expired cache entries the operator deleted."
)
SCHEDULE_SLOTS = Counter(
    "kopflow_schedule_slots",
    "Schedule slots by outcome: started, taken (another replica created it first), skipped "
    "(concurrencyPolicy Forbid), missed (startingDeadlineSeconds or catchUp), replaced (an "
    "active run cancelled by concurrencyPolicy Replace).",
    [*WF, "outcome"],
)
SCHEDULE_NEXT = Gauge(
    "kopflow_schedule_next_timestamp_seconds",
    "When a scheduled workflow's next run is due (Unix time).",
    list(WF),
)
RECONCILE_DURATION = Histogram(
    "kopflow_reconcile_duration_seconds",
    "Duration of one reconcile of one run.",
    buckets=API_BUCKETS,
)
RECONCILE_ERRORS = Counter(
    "kopflow_reconcile_errors", "Reconciles that failed (retried with backoff).", ["namespace"]
)
EVENTS_DROPPED = Counter(
    "kopflow_events_dropped",
    "Events not posted because too many were waiting (the API server is behind).",
)
API_REQUESTS = Counter(
    "kopflow_api_requests", "Requests to the Kubernetes API by verb and code.", ["verb", "code"]
)
API_LATENCY = Histogram(
    "kopflow_api_request_duration_seconds",
    "Time to the response headers of Kubernetes API requests (a watch: until it is open).",
    ["verb"],
    buckets=API_BUCKETS,
)
BUILD = Info("kopflow_build", "The kopflow version of this process.")
BUILD.info({"version": __version__})


# --- labels -----------------------------------------------------------------------------------

_tasks: dict[tuple[str, str], set[str]] = {}
_workflows: dict[str, set[str]] = {}


def _capped(seen: set[str], value: str, cap: int) -> str:
    if value in seen:
        return value
    if len(seen) >= cap:
        return OTHER
    seen.add(value)
    return value


def task_label(namespace: str, workflow: str, task: str) -> str:
    """The task itself while the workflow has fewer than MAX_TASKS labelled tasks."""
    return _capped(_tasks.setdefault((namespace, workflow), set()), task, MAX_TASKS)


def workflow_of(run: Mapping[str, Any]) -> str:
    """A run's workflow label: its workflowRef, else its generateName (without the dash),
    else `_inline`; never the run's own name, which is new for every run."""
    spec, meta = run.get("spec") or {}, run.get("metadata") or {}
    ref = (spec.get("workflowRef") or {}).get("name")
    name = str(ref or (meta.get("generateName") or "").rstrip("-") or INLINE)
    namespace = str(meta.get("namespace", ""))
    return _capped(_workflows.setdefault(namespace, set()), name, MAX_WORKFLOWS)


# --- events (counted by the acting replica) ----------------------------------------------------


def _time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value).timestamp()
    except ValueError:
        return None


def run_status_written(
    namespace: str,
    run: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    workflow: str | None = None,
) -> None:
    """Count what changed between the status the server held and the one just written:
    attempts that ended, retries started, the run finishing (wire-form status dicts)."""
    wf = workflow or workflow_of(run)
    old = old or {}
    old_phase, phase = old.get("phase"), new.get("phase")
    if old_phase is None and phase is not None:
        for final in FINISHED:  # a series at 0 first, so increase() sees the first failure
            RUNS.labels(namespace, wf, final)
    old_tasks = old.get("tasks") or {}
    for name, task in (new.get("tasks") or {}).items():
        before = old_tasks.get(name) or {}
        _task_changed(namespace, wf, name, before, task)
    if phase in FINISHED and old_phase not in FINISHED:
        RUNS.labels(namespace, wf, phase).inc()
        start, end = _time(new.get("startedAt")), _time(new.get("finishedAt"))
        if start is not None and end is not None:
            RUN_DURATION.labels(namespace, wf, phase).observe(max(0.0, end - start))


def _task_changed(
    namespace: str, wf: str, name: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> None:
    was, now = int(before.get("attempts") or 0), int(after.get("attempts") or 0)
    if now > max(was, 1):
        TASK_RETRIES.labels(namespace, wf, task_label(namespace, wf, name)).inc(now - max(was, 1))
    if before.get("phase") != "Running" or (after.get("phase") == "Running" and now == was):
        return
    phase = after.get("phase")
    if phase == "Succeeded":
        result = "succeeded"
    elif phase == "Cancelled" or after.get("reason") == "Cancelled":
        result = "cancelled"
    else:
        result = "failed"
    task = task_label(namespace, wf, name)
    TASK_ATTEMPTS.labels(namespace, wf, task, result).inc()
    ended = next(
        (
            a.get("finishedAt")
            for a in after.get("history") or ()
            if a.get("attempt") == was and a.get("finishedAt")
        ),
        after.get("finishedAt"),
    )
    start, end = _time(before.get("attemptStartedAt")), _time(ended) or time.time()
    if start is not None:
        TASK_DURATION.labels(namespace, wf, task).observe(max(0.0, end - start))


def schedule_slots(namespace: str, workflow: str, outcome: str, count: int = 1) -> None:
    """Slots of a schedule by outcome (started, taken, skipped, missed, replaced)."""
    wf = _capped(_workflows.setdefault(namespace, set()), workflow, MAX_WORKFLOWS)
    SCHEDULE_SLOTS.labels(namespace, wf, outcome).inc(count)


def schedule_next(namespace: str, workflow: str, when: float | None) -> None:
    """When the workflow's next slot is due; the series goes away while none is (suspended)."""
    wf = _capped(_workflows.setdefault(namespace, set()), workflow, MAX_WORKFLOWS)
    if when is None:
        with contextlib.suppress(KeyError):
            SCHEDULE_NEXT.remove(namespace, wf)
    else:
        SCHEDULE_NEXT.labels(namespace, wf).set(when)


def cache_lookup(hit: bool) -> None:
    CACHE_LOOKUPS.labels("hit" if hit else "miss").inc()


@contextlib.contextmanager
def reconciling(namespace: str) -> Iterator[None]:
    """Time one reconcile; an exception counts as a reconcile error (and propagates)."""
    start = time.perf_counter()
    try:
        yield
    except Exception:
        RECONCILE_ERRORS.labels(namespace).inc()
        raise
    finally:
        RECONCILE_DURATION.observe(time.perf_counter() - start)


# --- Kubernetes API requests -------------------------------------------------------------------


def api_request(verb: str, code: int | str, seconds: float) -> None:
    """The one place API calls are counted: verb (HTTP method, WATCH for a watch) and code
    (the HTTP status, or `error` when no answer came)."""
    API_REQUESTS.labels(verb.upper(), str(code)).inc()
    API_LATENCY.labels(verb.upper()).observe(seconds)


def _code_of(err: BaseException) -> str:
    status = getattr(err, "status", None)
    return str(status) if isinstance(status, int) and status > 0 else "error"


def instrument_client(client: C) -> C:
    """Count the official client's requests (its REST layer: every call passes there)."""
    rest: Any = client.rest_client  # type: ignore[attr-defined]
    if getattr(rest.request, "_kopflow_metrics", False):
        return client
    send = rest.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            response = send(method, url, *args, **kwargs)
        except Exception as err:
            api_request(method, _code_of(err), time.perf_counter() - start)
            raise
        api_request(method, getattr(response, "status", "error"), time.perf_counter() - start)
        return response

    request._kopflow_metrics = True  # type: ignore[attr-defined]
    rest.request = request
    return client


def aiohttp_trace() -> Any:
    """An aiohttp TraceConfig that counts every request of a session (watches included:
    their latency is the time until the stream opens)."""
    import aiohttp

    trace = aiohttp.TraceConfig()

    def verb(params: Any) -> str:
        return "WATCH" if params.url.query.get("watch") == "true" else str(params.method)

    async def start(_: Any, ctx: Any, params: Any) -> None:
        ctx.kopflow_start = time.perf_counter()

    async def end(_: Any, ctx: Any, params: Any) -> None:
        api_request(verb(params), params.response.status, time.perf_counter() - ctx.kopflow_start)

    async def failed(_: Any, ctx: Any, params: Any) -> None:
        api_request(verb(params), "error", time.perf_counter() - ctx.kopflow_start)

    trace.on_request_start.append(start)
    trace.on_request_end.append(end)
    trace.on_request_exception.append(failed)
    return trace


# --- gauges derived from the watched resources --------------------------------------------------


class Source(Protocol):
    """What the gauges are derived from: the supervisor, or a local run."""

    @property
    def active(self) -> bool: ...

    @property
    def bodies(self) -> Mapping[Any, Mapping[str, Any]]: ...


@dataclass
class _Derived:
    source: Source
    remembered: dict[tuple[str, str], float]


class ClusterCollector(Collector):
    """Active runs, the oldest active run's start, the last success, and leadership, computed
    from the runs this replica watches at every scrape."""

    def __init__(self) -> None:
        self.derived: _Derived | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        leader = GaugeMetricFamily(
            "kopflow_leader", "1 while this replica acts (holds the Lease, or runs alone)."
        )
        active = GaugeMetricFamily("kopflow_runs_active", "Runs not finished yet.", labels=list(WF))
        oldest = GaugeMetricFamily(
            "kopflow_runs_oldest_start_timestamp_seconds",
            "When the oldest unfinished run started (Unix time).",
            labels=list(WF),
        )
        success = GaugeMetricFamily(
            "kopflow_workflow_last_success_timestamp_seconds",
            "When a run of the workflow last succeeded (Unix time).",
            labels=list(WF),
        )
        derived = self.derived
        leading = derived is not None and derived.source.active
        leader.add_metric([], 1.0 if leading else 0.0)
        if derived is not None and leading:
            counts: dict[tuple[str, str], int] = {}
            starts: dict[tuple[str, str], float] = {}
            for body in list(derived.source.bodies.values()):
                key = (str((body.get("metadata") or {}).get("namespace", "")), workflow_of(body))
                status = body.get("status") or {}
                if status.get("phase") in FINISHED:
                    end = _time(status.get("finishedAt"))
                    if status.get("phase") == "Succeeded" and end is not None:
                        derived.remembered[key] = max(derived.remembered.get(key, 0.0), end)
                    continue
                counts[key] = counts.get(key, 0) + 1
                start = _time(status.get("startedAt"))
                if start is not None:
                    starts[key] = min(starts.get(key, start), start)
            for key, n in sorted(counts.items()):
                active.add_metric(list(key), n)
            for key, at in sorted(starts.items()):
                oldest.add_metric(list(key), at)
            for key, at in sorted(derived.remembered.items()):
                success.add_metric(list(key), at)
        return [leader, active, oldest, success]


COLLECTOR = ClusterCollector()
REGISTRY.register(COLLECTOR)


def track(source: Source) -> None:
    """Derive the cluster gauges from this source (the supervisor; a local run). The last
    success per workflow is remembered past the deletion of its run (history limits, TTL)."""
    COLLECTOR.derived = _Derived(source, {})


# --- the endpoint ------------------------------------------------------------------------------


async def serve(port: int, host: str = "0.0.0.0") -> Callable[[], Any]:
    """Serve /metrics on the event loop (scrapes see a consistent view of the watched state);
    returns the coroutine function that stops the server."""
    from aiohttp import web

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner.cleanup
