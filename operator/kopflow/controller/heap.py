"""The operator's heap: start-up objects kept out of the cycle collector, and its pauses measured.

After start-up the operator holds ~100,000 objects that live as long as it does (kopf's
registry, kubernetes_asyncio's and pydantic's classes and schemas). Each full collection walked
all of them: 75-186 ms on the benchmark's 2 cores, a pause of every run at once, one of the
dependency latency's p99 stalls. `settle()` freezes them when start-up is done (`gc.freeze`:
the collector never walks a frozen object again); full collections then take 6-59 ms
(docs/design.md, "Issue 10, last round: the collector").

`kopflow_gc_pause_seconds{generation}` exports the pauses, so a stall in the operator can be
told from one in the API server. Python's client exports only how many collections ran (Go's
exports go_gc_duration_seconds).
"""

from __future__ import annotations

import bisect
import gc
import itertools
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GENERATIONS = 3


def settle() -> None:
    """Collect once, then freeze what is left: what exists when start-up is done stays."""
    gc.collect()
    gc.freeze()


class GcPauses(Collector):
    """Pause times of the cycle collector, per generation.

    The callback only adds to plain lists: it runs inside whatever allocation started the
    collection, which may be one made while a prometheus_client metric holds its (not
    reentrant) lock, so it must not observe a Histogram.
    """

    def __init__(self) -> None:
        self.counts = [[0] * (len(BUCKETS) + 1) for _ in range(GENERATIONS)]
        self.sums = [0.0] * GENERATIONS
        self._started = 0.0

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation = info["generation"]
        self.counts[generation][bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sums[generation] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "kopflow_gc_pause_seconds",
            "Pauses of the operator's cycle collector, by generation (2: full collections).",
            labels=["generation"],
        )
        for generation in range(GENERATIONS):
            totals = list(itertools.accumulate(self.counts[generation]))
            buckets = [(str(le), n) for le, n in zip(BUCKETS, totals, strict=False)]
            family.add_metric(
                [str(generation)], [*buckets, ("+Inf", totals[-1])], self.sums[generation]
            )
        yield family


_pauses: GcPauses | None = None


def measure() -> GcPauses:
    """Start timing the collector's pauses and export them (once per process)."""
    global _pauses
    if _pauses is None:
        _pauses = GcPauses()
        gc.callbacks.append(_pauses.callback)
        REGISTRY.register(_pauses)
    return _pauses
