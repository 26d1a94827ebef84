"""Events wait their turn: a burst of them never fills the client with Event POSTs that a Job
create would queue behind (bench_operator.py: two Events per task attempt)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from kopflow import metrics
from kopflow.controller.kube import EVENTS_IN_FLIGHT, EVENTS_QUEUED, Kube


class SlowServer:
    """A client whose POSTs take a while; counts how many are in flight at once."""

    def __init__(self) -> None:
        self.in_flight = self.most = 0
        self.posted: list[str] = []

    async def request(self, method: str, path: str, body: Any = None, *_: Any) -> dict[str, Any]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        self.posted.append(body["reason"])
        return {}


async def drained(kube: Kube, seconds: float) -> None:
    """Until every Event sender has finished (within `seconds`)."""
    async with asyncio.timeout(seconds):
        while kube._background:
            await asyncio.wait(set(kube._background))


async def test_a_burst_of_events_is_sent_a_few_at_a_time_and_none_is_lost() -> None:
    server = SlowServer()
    kube = Kube(server)  # type: ignore[arg-type]
    run = {"metadata": {"name": "r", "namespace": "ns", "uid": "u"}}
    now = datetime.now(UTC)
    for i in range(50):
        kube.post_event_later(run, "Normal", f"E{i}", "message", now)
    await drained(kube, 10)
    assert sorted(server.posted) == sorted(f"E{i}" for i in range(50))
    assert server.most == EVENTS_IN_FLIGHT


async def test_events_beyond_the_queue_are_dropped_and_counted_and_none_holds_the_run() -> None:
    """An API server far behind must not grow the operator without bound: client-go's event
    broadcaster drops beyond 1,000 waiting too. A waiting Event keeps only the involved
    object's reference, not the run's body (which can be hundreds of KiB)."""
    server = SlowServer()
    kube = Kube(server)  # type: ignore[arg-type]
    run = {"metadata": {"name": "r", "namespace": "ns", "uid": "u"}, "status": {"big": "x" * 9}}
    dropped = metrics.EVENTS_DROPPED._value.get()
    now = datetime.now(UTC)
    for i in range(EVENTS_QUEUED + 10):
        kube.post_event_later(run, "Normal", f"E{i}", "message", now)
    assert metrics.EVENTS_DROPPED._value.get() - dropped == 10
    assert all("status" not in e and "big" not in str(e) for e in kube._events)
    await drained(kube, 60)
    assert sorted(server.posted) == sorted(f"E{i}" for i in range(EVENTS_QUEUED))
    kube.post_event_later(run, "Normal", "after", "message", now)  # the lane starts again
    await drained(kube, 10)
    assert server.posted[-1] == "after"


async def test_an_event_that_fails_unexpectedly_does_not_stop_the_ones_behind_it() -> None:
    class Failing(SlowServer):
        async def request(self, method: str, path: str, body: Any = None, *_: Any) -> Any:
            if int(body["reason"][1:]) < EVENTS_IN_FLIGHT:  # one for each sender
                raise RuntimeError("boom")
            return await super().request(method, path, body)

    server = Failing()
    kube = Kube(server)  # type: ignore[arg-type]
    run = {"metadata": {"name": "r", "namespace": "ns", "uid": "u"}}
    for i in range(EVENTS_IN_FLIGHT * 3):
        kube.post_event_later(run, "Normal", f"E{i}", "message", datetime.now(UTC))
    await drained(kube, 10)
    expected = [f"E{i}" for i in range(EVENTS_IN_FLIGHT, EVENTS_IN_FLIGHT * 3)]
    assert sorted(server.posted) == sorted(expected)
