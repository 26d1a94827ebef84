"""JSON merge patches (RFC 7386) from two versions of a document.

Status is persisted as the difference to what the API server already holds: a field the engine
dropped (a cleared `nextRetryAt`, a finished attempt's start time) must be sent as null, or the
merge keeps the stale value; and a 2,000-task run should not resend every task on each change.
"""

from __future__ import annotations

from typing import Any


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The smallest merge patch turning old into new (lists are replaced whole)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = merge_patch(before, value)
            if inner:
                patch[key] = inner
        elif key not in old or before != value:
            patch[key] = value
    return patch
