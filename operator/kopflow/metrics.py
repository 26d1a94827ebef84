"""Prometheus metrics (issue 15 builds the rest and the endpoint); labels stay bounded."""

from __future__ import annotations

from prometheus_client import Counter

SCHEDULE_SLOTS = Counter(
    "kopflow_schedule_slots",
    "Schedule slots by outcome: Created, Taken (another operator created it), Skipped "
    "(concurrencyPolicy Forbid), Missed (startingDeadlineSeconds or catchUp).",
    ["namespace", "workflow", "outcome"],
)


def slot(namespace: str, workflow: str, outcome: str, count: int = 1) -> None:
    SCHEDULE_SLOTS.labels(namespace, workflow, outcome).inc(count)
