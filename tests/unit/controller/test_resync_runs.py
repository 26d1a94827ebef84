"""kopf reports no deletion it missed while disconnected: the periodic list of runs does, but
only a read confirms a run is gone (the list may be older than a run kopf just reported)."""

from __future__ import annotations

import asyncio
from typing import Any

from kopflow.controller.supervisor import Supervisor


class Api:
    """A Kube whose runs are `existing`; every other call waits forever."""

    def __init__(self, existing: set[str]) -> None:
        self.existing = existing

    async def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        return run(name) if name in self.existing else None

    def __getattr__(self, name: str) -> Any:
        async def wait(*_: Any, **__: Any) -> None:
            await asyncio.Event().wait()

        return wait


def run(name: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name, "uid": f"u-{name}", "generation": 1},
        "spec": {"workflowRef": {"name": "wf"}},
        "status": {"phase": "Running"},
    }


async def test_a_run_missing_from_the_list_is_dropped_only_when_a_read_confirms() -> None:
    supervisor = Supervisor(Api({"new"}), namespaces=[""])  # type: ignore[arg-type]
    supervisor.relist_jobs("", [])
    supervisor.relist_pods("", [])
    for name in ("kept", "gone", "new"):
        supervisor.on_run(None, run(name))
    assert set(supervisor.tasks) == {("ns", "kept"), ("ns", "gone"), ("ns", "new")}
    # "gone" was deleted while kopf was away; "new" was created after the list was taken
    await supervisor.resync_runs("", [run("kept"), run("listed-only")])
    assert set(supervisor.bodies) == {("ns", "kept"), ("ns", "new"), ("ns", "listed-only")}
    assert ("ns", "gone") not in supervisor.tasks
    assert "" in supervisor.listed  # schedules may act now
    await supervisor.stop()
