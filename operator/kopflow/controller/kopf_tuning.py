"""kopf settings that keep its per-event cost flat in the size of a run.

kopflow registers only event handlers (no on.create/update/resume, no daemons), so kopf's
diff base (the "essence" of each object, for change detection) is never used; kopf still
deep-copies every event's whole body to build it, status included, before throwing the
status away. For a WorkflowRun that is most of kopf's CPU per event, and it grows with the
run: a 2,000-task run is a 1 MiB body deep-copied on each of its status writes coming back.
"""

from __future__ import annotations

from typing import Any

import kopf


class NoDiffBase(kopf.DiffBaseStorage):
    """A diff base that is never built, stored or read: right only while no change-detecting
    handler (on.create, on.update, on.field, on.resume) or daemon is registered."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


def tune(settings: kopf.OperatorSettings) -> None:
    """Apply the settings above (at startup)."""
    settings.persistence.diffbase_storage = NoDiffBase()
