"""`kopflow run` of a scheduled Workflow runs it once now; --schedule-time sets the slot."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.integration.local.test_kopflow_run import EXAMPLES, kopflow_run, status_of


def test_a_scheduled_workflow_runs_once_with_schedule_date_of_now(tmp_path: Path) -> None:
    before = datetime.now(UTC).strftime("%Y-%m-%d")
    result = kopflow_run(tmp_path, str(EXAMPLES / "cron.yaml"))
    assert result.returncode == 0, result.stderr
    status = status_of(result)
    assert status["phase"] == "Succeeded" and status["progress"] == "1/1"
    assert status["parameters"]["day"] in (before, datetime.now(UTC).strftime("%Y-%m-%d"))


def test_schedule_time_is_the_given_slot_in_its_own_offset(tmp_path: Path) -> None:
    result = kopflow_run(
        tmp_path, str(EXAMPLES / "cron.yaml"), "--schedule-time", "2026-11-28T00:30:00+01:00"
    )
    assert result.returncode == 0, result.stderr
    assert status_of(result)["parameters"]["day"] == "2026-11-28"  # not the UTC date 11-27


def test_a_bad_schedule_time_names_the_flag(tmp_path: Path) -> None:
    result = kopflow_run(tmp_path, str(EXAMPLES / "cron.yaml"), "--schedule-time", "yesterday")
    assert result.returncode == 2
    assert "--schedule-time" in result.stderr and "RFC 3339" in result.stderr
