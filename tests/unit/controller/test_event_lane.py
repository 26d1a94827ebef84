"""Events wait their turn: a burst of them never fills the client with Event POSTs that a Job
create would queue behind (bench_operator.py: two Events per task attempt)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from kopflow.controller.kube import EVENTS_IN_FLIGHT, Kube


class SlowServer:
    """A client whose POSTs take a while; counts how many are in flight at once."""

    def __init__(self) -> None:
        self.in_flight = self.most = 0
        self.posted: list[str] = []

    async def request(self, method: str, path: str, body: Any = None, *_: Any) -> dict[str, Any]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        self.posted.append(body["reason"])
        return {}


async def test_a_burst_of_events_is_sent_a_few_at_a_time_and_none_is_lost() -> None:
    server = SlowServer()
    kube = Kube(server)  # type: ignore[arg-type]
    run = {"metadata": {"name": "r", "namespace": "ns", "uid": "u"}}
    now = datetime.now(UTC)
    for i in range(50):
        kube.post_event_later(run, "Normal", f"E{i}", "message", now)
    async with asyncio.timeout(10):
        while kube._background:
            await asyncio.wait(set(kube._background))
    assert sorted(server.posted) == sorted(f"E{i}" for i in range(50))
    assert server.most == EVENTS_IN_FLIGHT
