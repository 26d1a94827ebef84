"""How runs end: failure and onFailure, allowFailure, the run deadline, cancel, success."""

from __future__ import annotations

from tests.unit.engine.builders import FAIL, HANG, T0, Outcome, Sim, at, spec, stamp, task

from kopflow.engine import RunState, job_name, reconcile


def test_a_failure_lets_running_tasks_finish_then_runs_on_failure_then_fails() -> None:
    s = spec(
        task("bad"),
        task("slow"),
        task("after-bad", "bad"),
        task("after-slow", "slow"),
        onFailure=[task("page"), task("cleanup", "page")],
    )
    sim = Sim(s, {"bad": Outcome("failed", seconds=5, exit_code=2), "slow": Outcome(seconds=50)})
    status = sim.run()
    assert sim.stops == []  # running attempts are not interrupted
    assert sim.task("slow").phase == "Succeeded"
    assert sim.task("after-bad").phase == "Skipped"
    assert sim.task("after-bad").reason == "UpstreamFailed"
    assert sim.task("after-slow").phase == "Skipped"  # nothing new starts once failing
    assert sim.task("after-slow").reason == "UpstreamFailed"
    assert sim.started("page") == [at(50)]  # only after slow finished
    assert sim.started("cleanup") == [at(60)]
    assert (status.phase, status.reason) == ("Failed", "TaskFailed")
    assert status.message == 'task "bad" failed: Error (exit code 2) (attempt 1 of 1)'
    assert status.finished_at == stamp(70)
    assert "RunFailing" in sim.reasons() and sim.reasons()[-1] == "RunFailed"


def test_while_on_failure_runs_the_run_says_why_it_is_failing() -> None:
    sim = Sim(spec(task("bad"), onFailure=[task("page")]), {"bad": FAIL, "page": HANG})
    sim.run(until=at(20))
    assert sim.status.phase == "Running"
    assert sim.status.message == 'task "bad" failed: Error (exit code 1) (attempt 1 of 1)'
    assert sim.task("page").phase == "Running"


def test_a_failing_on_failure_task_is_reported() -> None:
    sim = Sim(spec(task("bad"), onFailure=[task("page")]), {"bad": FAIL, "page": FAIL})
    status = sim.run()
    assert status.phase == "Failed"
    assert (status.message or "").endswith("; onFailure not successful: page")


def test_a_pending_retry_is_abandoned_when_another_task_fails_for_good() -> None:
    s = spec(task("bad"), task("flaky", retry={"limit": 3, "backoff": {"seconds": 60}}))
    sim = Sim(s, {"bad": Outcome("failed", seconds=20, exit_code=1), "flaky": FAIL})
    status = sim.run()
    flaky = sim.task("flaky")
    assert (flaky.phase, flaky.attempts) == ("Failed", 1)
    assert 'not retried: task "bad" failed' in (flaky.message or "")
    assert status.message is not None and status.message.startswith('task "bad" failed')


def test_allowed_failures_skip_their_dependents_but_the_run_succeeds() -> None:
    s = spec(
        task("optional", allowFailure=True),
        task("uses-optional", "optional"),
        task("then", "uses-optional"),
        task("independent"),
    )
    sim = Sim(s, {"optional": FAIL})
    status = sim.run()
    assert sim.task("optional").phase == "Failed"
    assert [sim.task(t).reason for t in ("uses-optional", "then")] == ["UpstreamFailed"] * 2
    assert sim.task("uses-optional").message == 'dependency "optional" failed'
    assert sim.task("independent").phase == "Succeeded"
    assert (status.phase, status.message) == ("Succeeded", "allowed failures: optional")


def test_the_run_deadline_stops_running_tasks_skips_the_rest_and_fails() -> None:
    s = spec(task("long"), task("next", "long"), activeDeadlineSeconds=100)
    sim = Sim(s, {"long": HANG})
    first = sim.step()
    assert first.requeue_at == at(30)
    sim.now = at(30)
    assert sim.step().requeue_at == at(100)
    status = sim.run()
    assert [(t, s.job_name, s.reason) for t, s in sim.stops] == [
        (at(100), job_name("run", "long", 1), "DeadlineExceeded")
    ]
    assert (sim.task("long").phase, sim.task("long").reason) == ("Failed", "DeadlineExceeded")
    assert (sim.task("next").phase, sim.task("next").reason) == ("Skipped", "DeadlineExceeded")
    assert (status.phase, status.reason) == ("Failed", "DeadlineExceeded")
    assert status.message == "the run exceeded activeDeadlineSeconds=100"
    assert status.conditions is not None
    assert (status.conditions[0].status, status.conditions[0].reason) == (
        "False",
        "DeadlineExceeded",
    )


def test_a_retry_due_after_the_deadline_does_not_happen() -> None:
    s = spec(task("t", retry={"limit": 2, "backoff": {"seconds": 100}}), activeDeadlineSeconds=60)
    sim = Sim(s, {"t": FAIL})
    status = sim.run()
    t = sim.task("t")
    assert (t.phase, t.reason, t.attempts) == ("Failed", "DeadlineExceeded", 1)
    assert t.message == "not retried: the run exceeded activeDeadlineSeconds=60"
    assert (status.reason, status.finished_at) == ("DeadlineExceeded", stamp(60))


def test_on_failure_still_runs_after_the_deadline() -> None:
    s = spec(task("long"), activeDeadlineSeconds=60, onFailure=[task("page")])
    sim = Sim(s, {"long": HANG})
    status = sim.run()
    assert sim.started("page") == [at(60)]
    assert (status.phase, status.reason) == ("Failed", "DeadlineExceeded")


def test_cancel_stops_running_tasks_and_cancels_the_rest() -> None:
    s = spec(task("a"), task("b", "a"), onFailure=[task("page")])
    sim = Sim(s, {"a": HANG})
    sim.step()
    sim.now = at(5)
    decision = sim.step(cancel=True)
    assert [(s.job_name, s.reason) for s in decision.stops] == [
        (job_name("run", "a", 1), "Cancelled")
    ]
    assert decision.launches == []
    assert sim.phases() == {"a": "Cancelled", "b": "Cancelled"}
    assert sim.task("a").finished_at == stamp(5)
    status = decision.status
    assert (status.phase, status.reason, status.finished_at) == ("Cancelled", "Cancelled", stamp(5))
    assert decision.finished and decision.requeue_at is None
    assert [e.reason for e in decision.events] == ["RunCancelled"]


def test_a_finished_run_is_left_alone() -> None:
    sim = Sim(spec(task("a")))
    status = sim.run()
    later = reconcile(RunState("run", "default", sim.spec, status=status), {}, {}, at(999))
    assert later.status == status and later.actions == () and not later.changed


def test_success_sets_progress_duration_and_the_succeeded_condition() -> None:
    sim = Sim(spec(task("a"), task("b", "a")), {"a": Outcome(seconds=60), "b": Outcome(seconds=23)})
    sim.step()
    assert sim.status.progress == "0/2" and sim.status.duration == "0s"
    status = sim.run()
    assert (status.phase, status.progress, status.duration) == ("Succeeded", "2/2", "1m23s")
    assert (status.started_at, status.finished_at) == (stamp(0), stamp(83))
    (cond,) = status.conditions or []
    assert (cond.type, cond.status, cond.reason) == ("Succeeded", "True", "Succeeded")
    assert cond.last_transition_time == stamp(83)
    assert sim.events[-1].reason == "RunSucceeded"


def test_the_condition_only_transitions_when_its_status_changes() -> None:
    sim = Sim(spec(task("a"), task("b", "a")))
    sim.step()
    sim.now = at(10)
    sim.step()
    (cond,) = sim.status.conditions or []
    assert (cond.status, cond.reason, cond.last_transition_time) == ("Unknown", "Running", stamp(0))


def test_observed_generation_is_reported() -> None:
    s = spec(task("a"))
    first = reconcile(RunState("run", "default", s, generation=3), {}, {}, T0)
    assert first.status.observed_generation == 3
    assert (first.status.conditions or [])[0].observed_generation == 3
    again = reconcile(RunState("run", "default", s, status=first.status, generation=4), {}, {}, T0)
    assert again.changed and again.status.observed_generation == 4
    assert again.actions == ()
