"""What /healthz reports: watches failing, or workers stuck, for longer than a bound.

A liveness probe that only says "the process answers" never restarts a wedged operator. The
informers report each failed list or watch here (and each success), the supervisor reports
run workers busy in one step; /healthz fails when any of those has lasted over `bound`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from kopflow.controller.options import DEFAULT_HEALTH_BOUND as DEFAULT_BOUND

Source = Callable[[], Iterable[tuple[str, float]]]
"""Things busy now: (what, since when, in monotonic seconds)."""


class Health:
    def __init__(self, bound: float = DEFAULT_BOUND, clock: Callable[[], float] = time.monotonic):
        self.bound, self.clock = bound, clock
        self._failing: dict[str, tuple[float, str]] = {}
        self.sources: list[Source] = []

    def failing(self, name: str, why: str) -> None:
        """`name` failed again: it counts from its first failure since the last success."""
        since = self._failing.get(name, (self.clock(), ""))[0]
        self._failing[name] = (since, why)

    def ok(self, name: str) -> None:
        self._failing.pop(name, None)

    def problems(self) -> list[str]:
        """What has been failing or stuck for longer than the bound (empty: healthy)."""
        now = self.clock()
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
