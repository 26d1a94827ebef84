"""The scheduler's clock: the wall clock, or for tests and benchmarks a faster one.

`virtual(t) = anchor + (t - anchor) * rate`: equal to the wall clock at `anchor` (an epoch
second, e.g. when a test created its Workflow) and `rate` times faster after it. Several
operators given the same anchor and rate agree on the time, so races stay honest. Only the
scheduler reads it; runs and Jobs always use the wall clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Clock:
    anchor: float = 0.0
    rate: float = 1.0

    def now(self) -> datetime:
        real = time.time()
        return datetime.fromtimestamp(self.anchor + (real - self.anchor) * self.rate, UTC)

    def real_seconds(self, moment: datetime) -> float:
        """Wall-clock seconds from now until the clock shows moment (0 when passed)."""
        return max(0.0, (moment - self.now()).total_seconds() / self.rate)

    def to_real(self, moment: datetime) -> float:
        """The wall-clock epoch second at which the clock shows moment."""
        return self.anchor + (moment.timestamp() - self.anchor) / self.rate
