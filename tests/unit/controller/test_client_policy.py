"""The client's policies: the token bucket behind --qps/--burst, the retry rule for 429/5xx,
and the liveness bound of /healthz."""

from __future__ import annotations

import pytest

from kopflow.controller.client import ApiError, RetryPolicy, TokenBucket, _retry_after
from kopflow.controller.health import Health


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_lets_a_burst_through_then_paces_at_qps() -> None:
    clock = Clock()
    bucket = TokenBucket(qps=10, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    # the 4th and 5th request wait one and two tenths of a second
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)


def test_the_bucket_refills_over_time_but_saves_at_most_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(qps=10, burst=2, clock=clock)
    bucket.reserve(), bucket.reserve()
    clock.now += 60  # a long quiet minute saves only `burst` tokens
    assert [bucket.reserve() for _ in range(2)] == [0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)


async def test_acquire_sleeps_for_the_reserved_time() -> None:
    clock, slept = Clock(), []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    bucket = TokenBucket(qps=2, burst=1, clock=clock, sleep=sleep)
    for _ in range(3):
        await bucket.acquire()
    assert slept == [pytest.approx(0.5), pytest.approx(0.5)]
    assert bucket.waited == pytest.approx(1.0)


def test_a_bucket_without_capacity_is_refused_with_the_flags_named() -> None:
    with pytest.raises(ValueError, match="--qps"):
        TokenBucket(qps=0, burst=1)


def error(status: int, retry_after: float | None = None) -> ApiError:
    return ApiError(status, {"reason": "x"}, retry_after)


def test_429_waits_retry_after_plus_bounded_jitter() -> None:
    policy = RetryPolicy(max_retries=3, jitter=0.2)
    assert policy.delay(error(429, 2.0), 0, rand=lambda: 0.0) == 2.0
    assert policy.delay(error(429, 2.0), 0, rand=lambda: 1.0) == pytest.approx(2.4)
    assert policy.delay(error(429), 0, rand=lambda: 0.0) == 1.0  # no header: one second


def test_retries_are_bounded_in_count_and_in_wait() -> None:
    policy = RetryPolicy(max_retries=2, max_delay=5.0)
    assert policy.delay(error(429, 60.0), 0) == 5.0
    assert policy.delay(error(429, 1.0), 2) == -1.0  # the third retry is not made


def test_only_throttling_and_overload_answers_are_retried() -> None:
    policy = RetryPolicy()
    assert policy.delay(error(503, 1.0), 0, rand=lambda: 0.0) == 1.0
    assert policy.delay(error(500), 0) == -1.0  # a 5xx without Retry-After: the caller decides
    for status in (400, 403, 404, 409, 422):
        assert policy.delay(error(status, 1.0), 0) == -1.0


def test_retry_after_headers_are_read_leniently() -> None:
    assert _retry_after("3") == 3.0
    assert _retry_after(None) is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None


def test_health_fails_only_after_the_bound_and_recovers_at_once() -> None:
    clock = Clock()
    health = Health(bound=60, clock=clock)
    health.failing("watch pods", "connection refused")
    clock.now += 59
    health.failing("watch pods", "connection refused")  # still counted from the first failure
    assert health.problems() == []
    clock.now += 2
    assert health.problems() == ["watch pods failing for 61s: connection refused"]
    health.ok("watch pods")
    assert health.problems() == []


def test_health_reports_work_stuck_longer_than_the_bound() -> None:
    clock = Clock()
    health = Health(bound=10, clock=clock)
    busy = {"run ns/a": clock.now}
    health.sources.append(lambda: busy.items())
    clock.now += 5
    assert health.problems() == []
    clock.now += 6
    assert health.problems() == ["run ns/a stuck for 11s"]


def test_a_watch_cut_moments_after_each_open_stays_failing() -> None:
    """A stream that opens and is cut 0.2 s later, again and again, is a failing watch: each
    open must not reset the clock, or /healthz only fails in the gaps between backoffs."""
    clock = Clock()
    health = Health(bound=3, clock=clock)
    for delay in (0.2, 0.5, 1.0, 2.0, 5.0):
        health.failing("watch pods", "cut")
        clock.now += delay
        health.opened("watch pods")
        clock.now += 0.2
    assert health.problems() == ["watch pods failing for 10s: cut"]


def test_a_watch_that_stays_open_recovers_after_settling() -> None:
    clock = Clock()
    health = Health(bound=3, clock=clock)
    health.failing("watch pods", "cut")
    clock.now += 4
    health.opened("watch pods")
    assert health.problems() == ["watch pods failing for 4s: cut"]
    clock.now += health.settle
    assert health.problems() == []
    health.failing("watch pods", "cut again")  # counted afresh from here
    clock.now += 1
    assert health.problems() == []
