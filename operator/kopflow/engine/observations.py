"""What the executor tells the engine: the state of each attempt, and cache look-up answers.

Both executors produce these: the local runner from its subprocesses, the operator from Jobs and
Pods. They are facts about the outside world; the engine turns them into status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

ObservedState = Literal["running", "succeeded", "failed", "lost", "missing"]
"""`running` (also while the pod is pending), `succeeded` (exit 0), `failed` (non-zero exit, or
killed: OOMKilled, DeadlineExceeded), `lost` (pod or node vanished, eviction), `missing` (no
such Job or process: not created yet, not visible yet, or deleted)."""


@dataclass(frozen=True)
class Observation:
    """One attempt as the executor last saw it, keyed by its job name."""

    state: ObservedState
    exit_code: int | None = None
    """Container or process exit code, when it exited."""
    reason: str | None = None
    """Kubernetes-style reason: Error, OOMKilled, DeadlineExceeded, Evicted..."""
    message: str | None = None
    """Human details (the pod status message, the last log line...)."""
    outputs: str | None = None
    """Raw `key=value` text the task wrote (termination message or `$KOPFLOW_OUTPUTS`)."""
    started_at: datetime | None = None
    """When the container or process started."""
    finished_at: datetime | None = None
    """When it ended; the retry backoff counts from here (from `now` when unknown)."""
    pending: bool = False
    """`running` but not started yet: no pod (refused at admission: FailedCreate), pod not
    scheduled, image not pulled, container not created; reason and message say why, as the
    API put it. The engine fails such an attempt after podPendingTimeoutSeconds."""
    permanent: bool = False
    """`failed` in a way no retry can mend (the API refuses the Job as written: 400, 422):
    the retry policy is not consulted."""


MISSING = Observation("missing")
"""What an attempt the executor did not report is taken to be."""


@dataclass(frozen=True)
class CacheEntry:
    """A stored successful result, as the cache store returns it."""

    outputs: Mapping[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None
    """After this the entry is a miss; None never expires."""
