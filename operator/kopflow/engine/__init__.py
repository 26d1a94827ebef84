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

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "MISSING_GRACE": "reconcile",
    "Action": "decisions",
    "CacheEntry": "observations",
    "Decision": "decisions",
    "Event": "decisions",
    "Launch": "decisions",
    "LookupCache": "decisions",
    "Observation": "observations",
    "ObservedState": "observations",
    "OutputsError": "outputs",
    "RunState": "state",
    "Stop": "decisions",
    "StoreCache": "decisions",
    "backoff_seconds": "retry",
    "cache_key": "cache",
    "format_duration": "times",
    "format_time": "times",
    "job_name": "naming",
    "jobs_to_observe": "state",
    "label_value": "naming",
    "labels": "naming",
    "merge_defaults": "defaults",
    "parse_outputs": "outputs",
    "parse_time": "times",
    "reconcile": "reconcile",
    "snapshot": "defaults",
}
"""Where each name of the package's API lives: imported on first use (PEP 562), so that
`kopflow validate`, which needs only validation, dag and templating, does not pay for the
reconciler's imports."""


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """`reconcile` names both a submodule and the function exported here. Importing the
    submodule sets the package's attribute to the module; the package keeps the function (as
    it did when it imported everything eagerly), whichever is imported first."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _WHERE.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
