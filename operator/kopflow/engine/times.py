"""Timestamps and durations as they appear in status: RFC 3339 UTC, whole seconds.

Status holds strings (`2026-11-28T08:00:00Z`) so that a persisted status compares equal to a
freshly computed one; the engine works on aware `datetime`s and converts at the boundary.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc(moment: datetime) -> datetime:
    """moment in UTC, truncated to whole seconds; a naive value is taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def format_time(moment: datetime) -> str:
    """The status form of a time: `2026-11-28T08:00:00Z`."""
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """A status time back as an aware UTC datetime (accepts any RFC 3339 offset)."""
    return utc(datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00")))


def ceil_seconds(moment: datetime) -> datetime:
    """Round up to a whole second, so a stored retry time is never earlier than computed."""
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def format_duration(seconds: float) -> str:
    """A short human duration like kubectl prints: `45s`, `1m23s`, `2h0m5s`."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
