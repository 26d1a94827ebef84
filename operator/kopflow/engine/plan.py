"""The shape of a workflow as reconcile() walks it: tasks by name, dependencies, start order."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

from kopflow.api.workflow import Task, WorkflowSpec
from kopflow.engine import dag


@dataclass(frozen=True)
class Plan:
    """Built once per reconcile in O(n log n); everything else is a lookup."""

    tasks: dict[str, Task]
    """Main and onFailure tasks by name, as written (taskDefaults not merged)."""
    deps: dict[str, list[str]]
    main: list[str]
    """Main tasks in start order: topological, ties in declaration order."""
    handlers: list[str]
    """onFailure tasks in start order."""
    problem: str | None = None
    """Why the spec cannot run (validation should have caught it first)."""

    @classmethod
    def of(cls, spec: WorkflowSpec) -> Plan:
        groups = (spec.tasks, spec.on_failure or [])
        tasks = {t.name: t for group in groups for t in group}
        deps = {t.name: list(t.depends_on or ()) for group in groups for t in group}
        orders = [dag.topological_order({t.name: deps[t.name] for t in g}) for g in groups]
        problem = None
        if len(tasks) != len(spec.tasks) + len(groups[1]):
            problem = "task names are not unique"
        for group, order in zip(groups, orders, strict=True):
            names = {t.name for t in group}
            unknown = sorted({d for t in group for d in deps[t.name]} - names)
            if unknown:
                problem = f"unknown dependencies: {', '.join(unknown)}"
            elif len(order) != len(group):
                problem = "the dependencies form a cycle"
        if problem is not None:
            problem = f"invalid workflow: {problem}; run `kopflow validate` on it"
        return cls(tasks, deps, orders[0], orders[1], problem)


_PLANS: dict[int, tuple[Callable[[], WorkflowSpec | None], Plan]] = {}


def plan_for(spec: WorkflowSpec) -> Plan:
    """Plan.of(spec), remembered while that very spec object lives.

    An executor passes the same snapshot object on every call, so a 5,000-task run is not
    re-sorted on every Job event. Keyed by identity, never by content: a spec is a snapshot
    and must not be mutated in place (build a new one instead).
    """
    key = id(spec)
    known = _PLANS.get(key)
    if known is not None and known[0]() is spec:
        return known[1]
    plan = Plan.of(spec)
    _PLANS[key] = (weakref.ref(spec, lambda _: _PLANS.pop(key, None)), plan)
    return plan
