"""Retries that reuse results (spec.retryOf): reused tasks are Succeeded without running."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.engine.builders import Sim, spec, task

from kopflow.api.run import RetryOf
from kopflow.engine.reuse import reuse_issues

PIPE = spec(
    task("extract", outputs=["rows"], cache={"key": "x"}),
    task("load", "extract", args=["--rows", "{{ tasks.extract.outputs.rows }}"]),
    task("report", "load"),
)


def test_reused_tasks_start_succeeded_with_their_outputs_and_never_launch() -> None:
    sim = Sim(PIPE)
    origin = RetryOf(name="first", uid="u1", reused={"extract": {"rows": "42", "stale": "x"}})
    sim.state = replace(sim.state, retry_of=origin)
    status = sim.run()
    assert status.phase == "Succeeded"
    extract = sim.task("extract")
    assert extract.phase == "Succeeded" and extract.reused is True and extract.attempts == 0
    assert extract.outputs == {"rows": "42"}  # only declared outputs are kept
    assert extract.message == "reused the result of run first; nothing ran"
    assert [launch.task for _, launch in sim.launches] == ["load", "report"]
    (load,) = [launch for _, launch in sim.launches if launch.task == "load"]
    assert load.args == ("--rows", "42")
    assert not any(d.lookups for d in sim.decisions)  # no cache look-up for a reused task
    assert [e.reason for e in sim.events if e.task == "extract"] == ["TaskReused"]


def test_without_retry_of_every_task_runs() -> None:
    sim = Sim(PIPE)
    sim.run()
    assert [launch.task for _, launch in sim.launches] == ["extract", "load", "report"]
    assert sim.task("extract").reused is None


def test_a_reused_task_the_workflow_does_not_have_is_named() -> None:
    origin = RetryOf(name="first", reused={"extract": {}, "gone": {}})
    (issue,) = reuse_issues(PIPE, origin)
    assert issue.path == "spec.retryOf.reused.gone"
    assert "no task 'gone' in the workflow (tasks: extract, load, report)" in issue.message
    assert reuse_issues(PIPE, None) == []
