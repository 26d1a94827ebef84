"""What /healthz reports: watches failing, or workers stuck, for longer than a bound.

A liveness probe that only says "the process answers" never restarts a wedged operator. The
informers report each failed list or watch here (and each success), the supervisor reports
run workers busy in one step; /healthz fails when any of those has lasted over `bound`.

A watch that opens and is cut moments later (a flapping proxy or load balancer) is not healthy:
an open stream clears its failure only after it has stayed open for `settle` seconds, as
client-go's reflector resets its backoff only after a quiet period."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from kopflow.controller.options import DEFAULT_HEALTH_BOUND as DEFAULT_BOUND

Source = Callable[[], Iterable[tuple[str, float]]]
"""Things busy now: (what, since when, in monotonic seconds)."""


class Health:
    def __init__(self, bound: float = DEFAULT_BOUND, clock: Callable[[], float] = time.monotonic):
        self.bound, self.clock = bound, clock
        self.settle = min(5.0, bound / 2)
        self._failing: dict[str, tuple[float, str]] = {}
        self._opened: dict[str, float] = {}
        self.sources: list[Source] = []

    def failing(self, name: str, why: str) -> None:
        """`name` failed again: it counts from its first failure since the last success."""
        since = self._failing.get(name, (self.clock(), ""))[0]
        self._failing[name] = (since, why)
        self._opened.pop(name, None)

    def ok(self, name: str) -> None:
        self._failing.pop(name, None)
        self._opened.pop(name, None)

    def opened(self, name: str) -> None:
        """A stream of `name` is open: it clears a failure once open for `settle` seconds."""
        if name in self._failing:
            self._opened.setdefault(name, self.clock())

    def problems(self) -> list[str]:
        """What has been failing or stuck for longer than the bound (empty: healthy)."""
        now = self.clock()
        for name, at in list(self._opened.items()):
            if now - at >= self.settle:
                self.ok(name)
        out = [
            f"{name} failing for {now - since:.0f}s: {why}"
            for name, (since, why) in self._failing.items()
            if now - since > self.bound
        ]
        for source in self.sources:
            out += [
                f"{what} stuck for {now - since:.0f}s"
                for what, since in source()
                if now - since > self.bound
            ]
        return out
