"""Cron slots across DST, exactly-once names, and what a schedule decides after downtime."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kopflow.api.workflow import Schedule, WorkflowSpec
from kopflow.engine.schedule import (
    ScheduledRun,
    plan,
    run_name,
    slot_id,
    slot_time,
    slots_after,
    slots_until,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sched(cron: str, tz: str = "UTC", **kw: Any) -> Schedule:
    return Schedule(cron=cron, timezone=tz, **kw)


def wf(cron: str, tz: str = "UTC", **kw: Any) -> WorkflowSpec:
    limits = {k: kw.pop(k) for k in list(kw) if k.endswith("history_limit")}
    return WorkflowSpec.model_validate(
        {"tasks": [{"name": "a", "command": ["true"]}], "schedule": sched(cron, tz, **kw), **limits}
    )


def local(schedule: Schedule, slots: list[datetime]) -> list[str]:
    return [slot_id(schedule, s) for s in slots]


# Europe/Berlin: forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z); back 2026-10-25 03:00 CEST
# -> 02:00 CET (01:00Z). America/New_York: forward 2026-03-08 02:00 -> 03:00 EDT (07:00Z); back
# 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z).
DST = [
    ("Europe/Berlin", "2026-03-28T12:00", "2026-03-29T01:00", "2026-10-24T12:00", "02:30", "00:30"),
    ("America/New_York", "2026-03-07T12:00", "2026-03-08T07:00", "2026-10-31T12:00", "01:30",
     "05:30"),
]  # fmt: skip


@pytest.mark.parametrize(("tz", "before_spring", "spring_at", "before_fall", "hm", "_"), DST)
def test_a_slot_skipped_by_spring_forward_fires_at_the_first_valid_minute(
    tz: str, before_spring: str, spring_at: str, before_fall: str, hm: str, _: str
) -> None:
    s = sched("30 2 * * *", tz)
    first, second = islice(slots_after(s, utc(before_spring)), 2)
    assert first == utc(spring_at)  # 02:30 does not exist: 03:00 local, the gap's end
    assert slot_id(s, first).endswith("-0300")
    assert second - first == timedelta(hours=23, minutes=30)  # back to 02:30 the next day


@pytest.mark.parametrize(("tz", "before_spring", "spring_at", "before_fall", "hm", "first"), DST)
def test_a_wall_time_repeated_by_fall_back_fires_once(
    tz: str, before_spring: str, spring_at: str, before_fall: str, hm: str, first: str
) -> None:
    h, m = hm.split(":")
    s = sched(f"{int(m)} {int(h)} * * *", tz)
    day = list(islice(slots_after(s, utc(before_fall)), 2))
    fall_day = day[0]
    assert local(s, day).count(slot_id(s, fall_day)) == 1
    assert fall_day.strftime("%H:%M") == first  # the first occurrence (summer time)
    assert day[1] - day[0] == timedelta(hours=25)  # the repeated hour is not run again


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York"])
def test_an_every_15_minutes_schedule_across_both_transitions(tz: str) -> None:
    s = sched("*/15 * * * *", tz)
    for start, hours in ((utc("2026-03-07T00:00"), 72), (utc("2026-10-24T00:00"), 24 * 10)):
        slots = list(islice(slots_after(s, start), hours * 4))
        ids = local(s, slots)
        assert len(set(ids)) == len(ids)  # every wall slot at most once
        assert all(b > a for a, b in itertools.pairwise(slots))


def test_aliases_and_timezones() -> None:
    hourly = list(islice(slots_after(sched("@hourly"), utc("2026-01-01T00:10")), 2))
    assert hourly == [utc("2026-01-01T01:00"), utc("2026-01-01T02:00")]
    daily = next(slots_after(sched("@daily", "Europe/Berlin"), utc("2026-01-01T00:10")))
    assert daily == utc("2026-01-01T23:00")
    assert slot_time(sched("@daily", "Europe/Berlin"), daily) == "2026-01-02T00:00:00+01:00"
    assert slot_time(sched("@daily"), utc("2026-01-01T00:00")) == "2026-01-01T00:00:00Z"


def test_run_names_are_the_slot_and_stay_valid_when_long() -> None:
    s = sched("0 3 * * *", "Europe/Berlin")
    assert run_name("nightly-report", s, utc("2026-11-28T02:00")) == "nightly-report-20261128-0300"
    a, b = (
        run_name("x" * 80, s, utc("2026-11-28T02:00")),
        run_name("x" * 81, s, utc("2026-11-28T02:00")),
    )
    assert len(a) <= 63 and a.endswith("-20261128-0300") and a != b


NOW = utc("2026-06-01T12:00:30")


def test_none_runs_only_the_latest_slot_and_only_when_on_time() -> None:
    spec = wf("* * * * *")
    p = plan(spec, NOW, after=NOW - timedelta(minutes=10))
    assert p.create == [utc("2026-06-01T12:00")]
    assert p.missed_count == 9 and p.decided == utc("2026-06-01T12:00")
    assert p.next == utc("2026-06-01T12:01")
    late = plan(wf("*/10 * * * *"), NOW + timedelta(minutes=5), after=utc("2026-06-01T11:59"))
    assert late.create == [] and late.missed == [utc("2026-06-01T12:00")]  # 5 min late


def test_latest_and_all_with_deadline_and_bound() -> None:
    after = NOW - timedelta(hours=2)
    latest = plan(wf("*/10 * * * *", catch_up="Latest"), NOW + timedelta(minutes=5), after)
    assert latest.create == [utc("2026-06-01T12:00")] and latest.missed_count == 11
    all_ = plan(wf("*/10 * * * *", catch_up="All", max_catch_up=3), NOW, after)
    assert all_.create == [
        utc("2026-06-01T11:40"),
        utc("2026-06-01T11:50"),
        utc("2026-06-01T12:00"),
    ]
    deadline = plan(wf("*/10 * * * *", catch_up="All", starting_deadline_seconds=1500), NOW, after)
    assert deadline.create == [
        utc("2026-06-01T11:40"),
        utc("2026-06-01T11:50"),
        utc("2026-06-01T12:00"),
    ]
    assert deadline.missed_count == 9


def test_concurrency_policies() -> None:
    after = utc("2026-06-01T11:59")
    active = [ScheduledRun("r-1159", after, "Running")]
    forbid = plan(wf("* * * * *", concurrency_policy="Forbid"), NOW, after, active)
    assert forbid.create == [] and forbid.skipped == [utc("2026-06-01T12:00")]
    replace = plan(wf("* * * * *", concurrency_policy="Replace"), NOW, after, active)
    assert replace.create == [utc("2026-06-01T12:00")] and replace.cancel == ["r-1159"]
    allow = plan(wf("* * * * *"), NOW, after, active)
    assert allow.create == [utc("2026-06-01T12:00")] and not allow.cancel


def test_suspend_creates_nothing_and_history_limits_delete_the_oldest() -> None:
    runs = [
        ScheduledRun(f"r{i}", utc("2026-06-01T10:00") + timedelta(minutes=i), phase)
        for i, phase in enumerate(["Succeeded", "Failed", "Succeeded", "Failed", "Succeeded"])
    ]
    p = plan(
        wf("* * * * *", suspend=True, successful_runs_history_limit=1, failed_runs_history_limit=1),
        NOW,
        NOW - timedelta(minutes=5),
        runs,
    )
    assert p.create == [] and p.next is None and p.missed_count == 0
    assert p.decided == utc("2026-06-01T12:00")  # resuming later does not count these as missed
    assert p.recheck == utc("2026-06-01T12:01")
    assert p.delete == ["r0", "r1", "r2"]


crons = st.sampled_from(
    ["* * * * *", "*/7 * * * *", "30 2 * * *", "0 */3 * * *", "@hourly", "15 1,2,3 * * 0"]
)
zones = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
moments = st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@settings(max_examples=60, deadline=None)
@given(crons, zones, moments, st.integers(0, 90), st.sampled_from(["None", "Latest", "All"]))
def test_slots_of_successive_decisions_are_increasing_unique_past_and_bounded(
    cron: str, tz: str, start: datetime, step: int, catch_up: str
) -> None:
    """Deciding again and again as time goes by: every slot is decided once, never early."""
    spec = wf(cron, tz, catch_up=catch_up, max_catch_up=3)
    assert spec.schedule is not None
    after, now, created, decided = start, start, [], []
    for i in range(12):
        now += timedelta(minutes=step * (i % 4))
        p = plan(spec, now, after)
        assert all(after < s <= now for s in p.create + p.missed + p.skipped)
        assert len(p.create) <= (3 if catch_up == "All" else 1)
        assert p.next is not None and p.next > now
        created += p.create
        decided += p.create + p.missed
        after = p.decided or after
    assert created == sorted(set(created))
    expected = list(itertools.takewhile(lambda s: s <= now, slots_after(spec.schedule, start)))
    assert sorted(decided) == expected  # nothing lost, nothing twice


@settings(max_examples=60, deadline=None)
@given(crons, zones, moments)
def test_backward_and_forward_iteration_agree(cron: str, tz: str, start: datetime) -> None:
    s = sched(cron, tz)
    forward = list(islice(slots_after(s, start), 20))
    backward = list(islice(slots_until(s, forward[-1]), 20))
    assert backward[::-1] == forward


@pytest.mark.parametrize(
    ("tz", "transition"),
    [
        ("Europe/Berlin", "2026-10-25T01:00"),
        ("Europe/Berlin", "2026-03-29T01:00"),
        ("America/New_York", "2026-11-01T06:00"),
        ("America/New_York", "2026-03-08T07:00"),
        ("Australia/Lord_Howe", "2026-04-04T15:00"),
    ],
)
@pytest.mark.parametrize("cron", ["*/15 * * * *", "30 1,2 * * *", "* * * * *"])
def test_the_newest_slots_before_any_moment_around_a_transition(
    tz: str, transition: str, cron: str
) -> None:
    """What a decision sees as due equals the forward listing, even during a repeated hour."""
    s = sched(cron, tz)
    middle = utc(transition)
    forward = list(
        itertools.takewhile(
            lambda x: x <= middle + timedelta(hours=3), slots_after(s, middle - timedelta(days=5))
        )
    )
    for minutes in range(-150, 150, 7):
        until = middle + timedelta(minutes=minutes, seconds=13)
        expected = [x for x in forward if x <= until][-5:][::-1]
        assert list(islice(slots_until(s, until), 5)) == expected, until
