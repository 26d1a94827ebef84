"""Which expired cache entries to delete now, within a per-minute budget (pure: no I/O, no clock).

Cache entries are ConfigMaps with `data.expiresAt`; a lookup already ignores an expired one, but
nothing removed them, so they piled up for good. The operator deletes them a few at a time: the
budget bounds its API writes however many expire at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from kopflow.engine.times import parse_time

WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class CacheItem:
    """One listed entry: where it is, its raw `data.expiresAt`, the version to delete."""

    namespace: str
    name: str
    expires_at: str | None
    resource_version: str | None = None


def _expiry(item: CacheItem) -> datetime:
    """When it expired; a missing or unreadable time counts as long expired (no lookup can
    use such an entry: get_cache reads it as a miss)."""
    try:
        return parse_time(item.expires_at) if item.expires_at else datetime.min.replace(tzinfo=UTC)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def expired(items: list[CacheItem], now: datetime, limit: int) -> list[CacheItem]:
    """The entries expired at `now`, the longest expired first, at most `limit`."""
    if limit <= 0:
        return []
    due = sorted((i for i in items if _expiry(i) <= now), key=_expiry)
    return due[:limit]


@dataclass
class Budget:
    """At most `per_minute` deletions in any minute (a sliding window of their times)."""

    per_minute: int
    spent: deque[datetime] = field(default_factory=deque)

    def left(self, now: datetime) -> int:
        while self.spent and self.spent[0] <= now - WINDOW:
            self.spent.popleft()
        return max(0, self.per_minute - len(self.spent))

    def spend(self, now: datetime) -> None:
        self.spent.append(now)
