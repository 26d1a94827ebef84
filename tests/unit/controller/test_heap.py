"""The operator's heap: what start-up built is out of the full collections that follow, and
every collection's pause is exported (the operator's p99 stalls, docs/design.md)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kopflow.controller import heap


class Garbage:
    """A cycle: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()  # the test process's objects back into the collector's care


def test_settle_freezes_what_start_up_built_and_frees_its_garbage_first(unfreeze: None) -> None:
    kept = [[i] for i in range(1000)]  # start-up's long-lived objects
    cycle = Garbage()
    gone = weakref.ref(cycle)
    del cycle
    heap.settle()
    assert gone() is None, "garbage left at start-up was frozen instead of freed"
    walked = gc.get_objects(generation=2)  # what a full collection walks
    assert not any(obj is kept or obj is kept[0] for obj in walked)
    assert gc.get_freeze_count() >= len(kept)


def test_each_collection_pause_is_exported_by_generation() -> None:
    pauses = heap.GcPauses()
    registry = CollectorRegistry()
    registry.register(pauses)
    gc.callbacks.append(pauses.callback)
    try:
        gc.collect(2)
        gc.collect(2)
    finally:
        gc.callbacks.remove(pauses.callback)

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, {"generation": "2", **labels}) or 0.0

    assert value("kopflow_gc_pause_seconds_count") == 2
    assert value("kopflow_gc_pause_seconds_sum") > 0
    assert value("kopflow_gc_pause_seconds_bucket", le="+Inf") == 2
    bounds = [value("kopflow_gc_pause_seconds_bucket", le=str(le)) for le in heap.BUCKETS]
    assert bounds == sorted(bounds) and bounds[-1] <= 2  # cumulative, as Prometheus reads them
    assert registry.get_sample_value("kopflow_gc_pause_seconds_count", {"generation": "0"}) == 0
    assert b'kopflow_gc_pause_seconds_bucket{generation="2",le="+Inf"} 2.0' in generate_latest(
        registry
    )


def test_the_pauses_are_exported_once_however_often_measured() -> None:
    first = heap.measure()
    assert heap.measure() is first
    assert gc.callbacks.count(first.callback) == 1
