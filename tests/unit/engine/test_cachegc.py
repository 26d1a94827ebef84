"""The cache collector deletes expired entries only, longest expired first, within its budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kopflow.engine.cachegc import Budget, CacheItem, expired

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def item(name: str, expires: str | None) -> CacheItem:
    return CacheItem("ns", name, expires)


def test_only_expired_entries_are_chosen_longest_expired_first() -> None:
    items = [
        item("fresh", "2026-11-29T12:00:01Z"),
        item("just", "2026-11-29T12:00:00Z"),
        item("old", "2026-11-28T12:00:00Z"),
        item("offset", "2026-11-29T13:30:00+02:00"),  # 11:30 UTC
    ]
    assert [i.name for i in expired(items, NOW, 10)] == ["old", "offset", "just"]


def test_the_limit_bounds_the_choice() -> None:
    items = [item(f"e{i}", f"2026-11-29T11:{i:02d}:00Z") for i in range(30)]
    assert [i.name for i in expired(items, NOW, 3)] == ["e0", "e1", "e2"]
    assert expired(items, NOW, 0) == []


def test_an_entry_without_a_readable_expiry_is_expired() -> None:
    items = [item("none", None), item("bad", "yesterday"), item("fresh", "2027-01-01T00:00:00Z")]
    assert {i.name for i in expired(items, NOW, 10)} == {"none", "bad"}


def test_the_budget_allows_per_minute_deletions_in_any_minute() -> None:
    budget = Budget(per_minute=3)
    assert budget.left(NOW) == 3
    for _ in range(3):
        budget.spend(NOW)
    assert budget.left(NOW) == 0
    assert budget.left(NOW + timedelta(seconds=59)) == 0
    assert budget.left(NOW + timedelta(seconds=60)) == 3
