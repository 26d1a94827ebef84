"""Retry policy: which failures are retried, and when the next attempt starts."""

from __future__ import annotations

from datetime import datetime, timedelta

from kopflow.api.workflow import Backoff, FailureKind, Retry
from kopflow.engine.observations import Observation
from kopflow.engine.times import ceil_seconds

TIMEOUT_REASONS = frozenset({"DeadlineExceeded", "Timeout"})
"""Reasons meaning the attempt ran out of time (a Job's activeDeadlineSeconds included)."""
LOST_REASONS = frozenset({"Evicted", "NodeLost", "Preempted", "Lost"})
"""Reasons meaning the attempt was taken away, not that the task failed."""


def failure_kind(observation: Observation) -> FailureKind:
    """How a finished, unsuccessful attempt counts for `retry.reasons`."""
    if observation.state in ("lost", "missing") or observation.reason in LOST_REASONS:
        return "Lost"
    if observation.reason in TIMEOUT_REASONS:
        return "Timeout"
    return "Failed"


DEFAULT_REASONS: dict[FailureKind, str] = {"Failed": "Error", "Timeout": "Timeout", "Lost": "Lost"}


def classify(observation: Observation) -> tuple[FailureKind, str, str | None]:
    """Kind, status reason and detail of a failed attempt.

    A Failed attempt keeps the executor's reason (Error, OOMKilled...); Timeout and Lost use
    their kind as reason, so that a Job's DeadlineExceeded reads `Timeout` like the engine's
    own timeout, and the executor's reason moves into the detail (`Evicted: ...`).
    """
    kind = failure_kind(observation)
    reason = observation.reason if kind == "Failed" and observation.reason else None
    reason = reason or DEFAULT_REASONS[kind]
    parts = [p for p in (observation.reason, observation.message) if p and p != reason]
    return kind, reason, ": ".join(parts) or None


def should_retry(
    retry: Retry | None, kind: FailureKind, exit_code: int | None, attempts: int
) -> bool:
    """Whether attempt `attempts + 1` may run: within the limit, a kind in `reasons`, and for
    Failed an exit code in `exitCodes` when that list is given."""
    if retry is None or attempts > retry.limit or kind not in retry.reasons:
        return False
    if kind == "Failed" and retry.exit_codes is not None:
        return exit_code in retry.exit_codes
    return True


def backoff_seconds(backoff: Backoff, attempt: int) -> float:
    """Delay after failed attempt n: `min(seconds * factor^(n-1), maxSeconds)`."""
    delay = float(backoff.seconds)
    for _ in range(max(0, attempt - 1)):
        if delay >= backoff.max_seconds:
            break
        delay *= backoff.factor
    return min(delay, float(backoff.max_seconds))


def next_attempt_at(backoff: Backoff, attempt: int, finished: datetime) -> datetime:
    """When attempt n+1 starts, rounded up to the second (status precision)."""
    return ceil_seconds(finished + timedelta(seconds=backoff_seconds(backoff, attempt)))
