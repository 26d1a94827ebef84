"""Job names, label values, and the time formats status uses."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.engine.builders import DNS_LABEL

from kopflow.engine import format_duration, format_time, job_name, label_value, parse_time

NAME = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,120}[a-z0-9])?", fullmatch=True)
TASK = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)


def test_names_read_run_task_attempt_with_a_hash_of_the_run_uid() -> None:
    name = job_name("daily-etl-28469100", "extract", 3, "uid-1")
    assert re.fullmatch(r"daily-etl-28469100-extract-[0-9a-f]{8}-3", name)
    assert name == job_name("daily-etl-28469100", "extract", 3, "uid-1")
    # the same run name re-created (another uid) never meets the old run's Jobs
    assert name != job_name("daily-etl-28469100", "extract", 3, "uid-2")


def test_runs_whose_run_and_task_spell_the_same_get_different_jobs() -> None:
    """Run `a-b` task `c` and run `a` task `b-c`: once both `a-b-c-1`."""
    one, two = job_name("a-b", "c", 1, "uid-1"), job_name("a", "b-c", 1, "uid-2")
    assert one.startswith("a-b-c-") and two.startswith("a-b-c-") and one != two
    # and even with no uid at all (a local run) the hash covers the split
    assert job_name("a-b", "c", 1) != job_name("a", "b-c", 1)


def test_long_names_are_shortened_with_a_stable_hash() -> None:
    run, task = "r" * 60, "t" * 63
    name = job_name(run, task, 12)
    assert len(name) == 63 and DNS_LABEL.match(name) and name.endswith("-12")
    assert name.startswith("r" * 40)
    assert name == job_name(run, task, 12)
    assert len({name, job_name(run, task, 13), job_name(run, "t" * 62, 12)}) == 3


def test_names_that_are_not_labels_are_cleaned_and_hashed() -> None:
    name = job_name("etl.v2", "load", 1)
    assert DNS_LABEL.match(name) and name.startswith("etl-v2-load-") and name.endswith("-1")
    assert name != job_name("etl-v2", "load", 1)


@settings(max_examples=300, deadline=None)
@given(run=NAME, task=TASK, attempt=st.integers(1, 101))
def test_job_names_are_valid_labels_and_stable(run: str, task: str, attempt: int) -> None:
    name = job_name(run, task, attempt)
    assert len(name) <= 63 and DNS_LABEL.match(name)
    assert name == job_name(run, task, attempt)
    assert name.endswith(f"-{attempt}")


@settings(max_examples=100, deadline=None)
@given(run=NAME, tasks=st.sets(TASK, min_size=1, max_size=20), attempts=st.integers(1, 12))
def test_job_names_are_unique_per_task_and_attempt(
    run: str, tasks: set[str], attempts: int
) -> None:
    names = [job_name(run, t, n) for t in tasks for n in range(1, attempts + 1)]
    assert len(set(names)) == len(names)


@settings(max_examples=200, deadline=None)
@given(value=NAME)
def test_label_values_are_valid(value: str) -> None:
    label = label_value(value)
    assert len(label) <= 63 and DNS_LABEL.match(label)
    if len(value) <= 63 and "." not in value:
        assert label == value


def test_times_are_utc_seconds_with_z() -> None:
    berlin = timezone(timedelta(hours=1))
    moment = datetime(2026, 11, 28, 9, 0, 0, 999_999, tzinfo=berlin)
    assert format_time(moment) == "2026-11-28T08:00:00Z"
    assert parse_time("2026-11-28T08:00:00Z") == datetime(2026, 11, 28, 8, tzinfo=UTC)
    assert parse_time("2026-11-28T09:00:00+01:00") == datetime(2026, 11, 28, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (60, "1m0s"), (83, "1m23s"), (3605, "1h0m5s"), (90061, "25h1m1s")],
)
def test_durations_read_like_kubectl(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
