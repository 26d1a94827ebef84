"""Retries, backoff, attempt history, task timeouts and lost attempts."""

from __future__ import annotations

import pytest
from tests.unit.engine.builders import FAIL, HANG, OK, T0, Outcome, Sim, at, spec, stamp, task

from kopflow.api.workflow import Backoff, Retry
from kopflow.engine import Observation, backoff_seconds, job_name
from kopflow.engine.retry import failure_kind, should_retry


@pytest.mark.parametrize(
    ("attempt", "delay"), [(1, 10), (2, 20), (3, 40), (5, 160), (6, 300), (60, 300)]
)
def test_backoff_is_seconds_times_factor_to_the_n_minus_1_capped(
    attempt: int, delay: float
) -> None:
    assert backoff_seconds(Backoff(seconds=10, factor=2, max_seconds=300), attempt) == delay


def test_huge_factors_do_not_overflow() -> None:
    assert backoff_seconds(Backoff(seconds=86400, factor=100, max_seconds=7), 100) == 7


def test_limit_counts_retries_and_on_and_exit_codes_filter_them() -> None:
    retry = Retry(limit=2, reasons=["Failed", "Lost"], exit_codes=[3])
    assert should_retry(retry, "Failed", 3, attempts=1)
    assert should_retry(retry, "Failed", 3, attempts=2)
    assert not should_retry(retry, "Failed", 3, attempts=3)  # 3 attempts = limit + 1
    assert not should_retry(retry, "Failed", 1, attempts=1)  # exit code not listed
    assert should_retry(retry, "Lost", None, attempts=1)  # exitCodes only filter Failed
    assert not should_retry(retry, "Timeout", None, attempts=1)
    assert not should_retry(None, "Failed", 1, attempts=1)


@pytest.mark.parametrize(
    ("observation", "kind"),
    [
        (Observation("failed", 1, "Error"), "Failed"),
        (Observation("failed", 137, "OOMKilled"), "Failed"),
        (Observation("failed", None, "DeadlineExceeded"), "Timeout"),
        (Observation("failed", None, "Evicted"), "Lost"),
        (Observation("lost"), "Lost"),
    ],
)
def test_failure_kinds(observation: Observation, kind: str) -> None:
    assert failure_kind(observation) == kind


def test_a_flaky_task_is_retried_after_its_backoff_and_succeeds() -> None:
    s = spec(task("flaky", retry={"limit": 3, "backoff": {"seconds": 5, "factor": 3}}))
    sim = Sim(s, {"flaky": [FAIL, FAIL, OK]})
    status = sim.run()
    # attempt 1 ends at 10, +5; attempt 2 ends at 25, +15
    assert sim.started("flaky") == [T0, at(15), at(40)]
    flaky = sim.task("flaky")
    assert (status.phase, flaky.phase, flaky.attempts) == ("Succeeded", "Succeeded", 3)
    assert [(a.attempt, a.exit_code, a.reason) for a in flaky.history or []] == [
        (1, 1, "Error"),
        (2, 1, "Error"),
        (3, 0, "Completed"),
    ]
    assert flaky.history is not None and flaky.history[1].started_at == stamp(15)
    assert sim.reasons().count("TaskRetrying") == 2


def test_a_retrying_task_shows_when_it_runs_next_and_wakes_the_executor_then() -> None:
    sim = Sim(spec(task("t", retry={"limit": 1})), {"t": [FAIL, OK]})
    sim.step()
    sim.now = at(10)
    decision = sim.step()
    t = sim.task("t")
    assert (t.phase, t.next_retry_at, t.exit_code, t.reason) == ("Retrying", stamp(20), 1, "Error")
    assert "retrying at" in (t.message or "")
    assert decision.requeue_at == at(20)
    sim.now = at(19)
    assert sim.step().launches == []
    sim.now = at(20)
    assert [a.job_name for a in sim.step().launches] == [job_name("run", "t", 2)]


def test_fractional_backoff_rounds_the_retry_time_up() -> None:
    s = spec(task("t", retry={"limit": 1, "backoff": {"seconds": 1.5}}))
    sim = Sim(s, {"t": [FAIL, OK]})
    sim.run()
    assert sim.started("t")[1] == at(12)


def test_attempts_never_exceed_limit_plus_one() -> None:
    sim = Sim(spec(task("t", retry={"limit": 2, "backoff": {"seconds": 1}})), {"t": FAIL})
    status = sim.run()
    t = sim.task("t")
    assert (status.phase, t.phase, t.attempts) == ("Failed", "Failed", 3)
    assert t.message == "Error (exit code 1) (attempt 3 of 3)"
    assert status.reason == "TaskFailed"


def test_an_exit_code_outside_exit_codes_is_not_retried() -> None:
    s = spec(task("t", retry={"limit": 5, "exitCodes": [75]}))
    sim = Sim(s, {"t": Outcome("failed", exit_code=2)})
    sim.run()
    assert sim.task("t").attempts == 1 and sim.task("t").phase == "Failed"


def test_only_failure_kinds_in_on_are_retried() -> None:
    s = spec(task("t", retry={"limit": 5, "reasons": ["Failed"]}))
    sim = Sim(s, {"t": Outcome("lost", reason="Evicted", message="node low on memory")})
    sim.run()
    t = sim.task("t")
    assert (t.phase, t.attempts, t.reason) == ("Failed", 1, "Lost")
    assert "Evicted: node low on memory" in (t.message or "")


def test_history_keeps_the_last_ten_attempts() -> None:
    s = spec(task("t", retry={"limit": 14, "backoff": {"seconds": 0}}))
    sim = Sim(s, {"t": FAIL})
    sim.run()
    t = sim.task("t")
    assert t.attempts == 15
    assert [a.attempt for a in t.history or []] == list(range(6, 16))


def test_a_single_attempt_is_described_by_the_task_itself() -> None:
    sim = Sim(spec(task("t")))
    sim.run()
    t = sim.task("t")
    assert t.history is None
    assert (t.attempts, t.exit_code, t.started_at, t.finished_at) == (1, 0, stamp(0), stamp(10))


def test_a_task_past_its_timeout_is_stopped_and_counts_as_timeout() -> None:
    s = spec(task("slow", timeoutSeconds=60, retry={"limit": 1, "reasons": ["Timeout"]}))
    sim = Sim(s, {"slow": [HANG, OK]})
    first = sim.step()
    assert first.requeue_at == at(30)  # the missing-job grace comes first
    sim.now = at(30)
    assert sim.step().requeue_at == at(60)
    sim.now = at(60)
    decision = sim.step()
    assert [(s.job_name, s.reason) for s in decision.stops] == [
        (job_name("run", "slow", 1), "Timeout")
    ]
    slow = sim.task("slow")
    assert (slow.phase, slow.reason) == ("Retrying", "Timeout")
    assert "exceeded timeoutSeconds=60" in (slow.message or "")
    sim.run()
    assert sim.task("slow").phase == "Succeeded" and sim.task("slow").attempts == 2


def test_a_kubernetes_deadline_counts_as_timeout() -> None:
    s = spec(task("t", retry={"limit": 1, "reasons": ["Timeout"]}))
    sim = Sim(s, {"t": [Outcome("failed", reason="DeadlineExceeded"), OK]})
    sim.run()
    assert [a.reason for a in sim.task("t").history or []] == ["Timeout", "Completed"]


def test_a_job_not_visible_yet_is_given_a_grace_period_then_counts_as_lost() -> None:
    s = spec(task("t", retry={"limit": 1}))
    sim = Sim(s)
    sim.step()
    sim.jobs.clear()  # the executor cannot see the job it created
    sim.now = at(29)
    decision = sim.step()
    assert sim.task("t").phase == "Running" and decision.requeue_at == at(30)
    sim.now = at(30)
    sim.step()
    t = sim.task("t")
    assert (t.phase, t.reason) == ("Retrying", "Lost")
    assert "not found 30s after its launch" in (t.message or "")


def test_outputs_over_the_limit_fail_the_attempt_with_a_clear_message() -> None:
    s = spec(task("big", outputs=["blob"]), task("next", "big"))
    sim = Sim(s, {"big": Outcome(outputs="blob=" + "x" * 2000)})
    status = sim.run()
    big = sim.task("big")
    assert (big.phase, big.reason, big.outputs) == ("Failed", "OutputsTooLarge", None)
    assert 'output "blob" is 2000 bytes, over the limit of 1024 bytes' in (big.message or "")
    assert sim.task("next").phase == "Skipped" and status.phase == "Failed"
