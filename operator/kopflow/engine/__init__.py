"""The engine: pure decision logic of a run, shared by the local runner and the operator.

No I/O, no clock, no kopf, no Kubernetes client: executors hand it `now`, observations of
attempts and cache answers, and carry out the Decision it returns. Both executors run::

    state = RunState(name, namespace, spec, params)    # status None: a new run
    answers: dict[str, CacheEntry | None] = {}
    while True:
        seen = {job: observe(job) for job in jobs_to_observe(state.status)}
        decision = reconcile(state, seen, answers, datetime.now(UTC))
        for action in decision.actions:                 # carry out first...
            match action:
                case Launch(): create_job(action)       # 409: it exists, fine
                case Stop(): delete_job(action.job_name)
                case StoreCache(): store.put(action.key, action.outputs, action.expires_at)
                case LookupCache(): answers |= {k: store.get(k) for k in action.keys}
        if decision.changed:
            persist(decision.status)                    # ...then persist, never before
        state = replace(state, status=decision.status)
        if decision.finished:
            break
        wait_for_change(until=decision.requeue_at)      # requeue_at == now: go again at once
"""

from kopflow.engine.cache import cache_key
from kopflow.engine.decisions import (
    Action,
    Decision,
    Event,
    Launch,
    LookupCache,
    Stop,
    StoreCache,
)
from kopflow.engine.defaults import merge_defaults, snapshot
from kopflow.engine.naming import job_name, label_value, labels
from kopflow.engine.observations import CacheEntry, Observation, ObservedState
from kopflow.engine.outputs import OutputsError, parse_outputs
from kopflow.engine.reconcile import MISSING_GRACE, reconcile
from kopflow.engine.retry import backoff_seconds
from kopflow.engine.state import RunState, jobs_to_observe
from kopflow.engine.times import format_duration, format_time, parse_time

__all__ = [
    "MISSING_GRACE",
    "Action",
    "CacheEntry",
    "Decision",
    "Event",
    "Launch",
    "LookupCache",
    "Observation",
    "ObservedState",
    "OutputsError",
    "RunState",
    "Stop",
    "StoreCache",
    "backoff_seconds",
    "cache_key",
    "format_duration",
    "format_time",
    "job_name",
    "jobs_to_observe",
    "label_value",
    "labels",
    "merge_defaults",
    "parse_outputs",
    "parse_time",
    "reconcile",
    "snapshot",
]
