"""Kubernetes-style conditions: lastTransitionTime moves only when the status value moves."""

from __future__ import annotations

from typing import Literal

from kopflow.api.run import FINISHED_RUN_PHASES
from kopflow.api.workflow import Condition


def set_condition(
    conditions: list[Condition] | None,
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str | None,
    now: str,
    generation: int | None,
) -> list[Condition]:
    """conditions with `type_` set; the others are kept in their order."""
    old = next((c for c in conditions or () if c.type == type_), None)
    moved = old is None or old.status != status or old.last_transition_time is None
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now if moved or old is None else old.last_transition_time,
        observed_generation=generation,
    )
    if old is None:
        return [*(conditions or ()), new]
    return [new if c is old else c for c in conditions or ()]


def run_conditions(
    conditions: list[Condition] | None,
    phase: str | None,
    reason: str | None,
    message: str | None,
    suspended: bool,
    now: str,
    generation: int | None,
) -> list[Condition] | None:
    """The run's `Succeeded` condition: Unknown (Running or Suspended) until the run ends,
    then True, or False with the run's reason (TaskFailed, DeadlineExceeded, Cancelled...)."""
    if phase is None:
        return conditions
    state: Literal["True", "False", "Unknown"] = "Unknown"
    why = "Suspended" if suspended else "Running"
    if phase == "Succeeded":
        state, why = "True", "Succeeded"
    elif phase in FINISHED_RUN_PHASES:
        state, why = "False", reason or phase
    return set_condition(conditions, "Succeeded", state, why, message, now, generation)
