"""Deterministic Kubernetes names: the same run, task and attempt always give the same Job.

Determinism is what makes launching idempotent: an executor that crashed before persisting a
launch creates the same name again and gets a harmless 409.
"""

from __future__ import annotations

import hashlib
import re

MAX_LABEL = 63
HASH_CHARS = 10
JOB_HASH_CHARS = 8
"""Enough against collisions among one namespace's Jobs; short enough to keep names readable."""
_INVALID = re.compile(r"[^a-z0-9-]+")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:HASH_CHARS]


def _fit(text: str, suffix: str, digest: str) -> str:
    """text cut so that `text-digest` + suffix fits a label; the digest keeps it unique."""
    tail = f"-{digest}{suffix}"
    head = _INVALID.sub("-", text.lower())[: MAX_LABEL - len(tail)].strip("-")
    return f"{head}{tail}" if head else tail.lstrip("-")


def job_name(run: str, task: str, attempt: int, uid: str = "") -> str:
    """`<run>-<task>-<hash>-<attempt>`, at most 63 characters: a readable start (cut when
    long) plus a short hash of the run's uid, run, task and attempt. The hash keeps names
    unique across runs (run `a-b` task `c` and run `a` task `b-c` differ; so do two
    incarnations of one run name) and deterministic, so a relaunch after a crash is a 409."""
    digest = hashlib.sha256("\0".join((uid, run, task, str(attempt))).encode()).hexdigest()
    return _fit(f"{run}-{task}", f"-{attempt}", digest[:JOB_HASH_CHARS])


def label_value(value: str) -> str:
    """value as a valid label value (a run name may be up to 253 characters)."""
    if len(value) <= MAX_LABEL and DNS_LABEL.match(value):
        return value
    return _fit(value, "", _digest(value))


def labels(run: str, task: str, attempt: int) -> dict[str, str]:
    """The labels every attempt's Job carries, to find a run's Jobs by selector."""
    return {
        "kopflow.dev/run": label_value(run),
        "kopflow.dev/task": label_value(task),
        "kopflow.dev/attempt": str(attempt),
    }
