"""Kubernetes-style conditions: lastTransitionTime moves only when the status value moves."""

from __future__ import annotations

from typing import Literal

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
