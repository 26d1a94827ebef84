"""Which tasks start, in what order, how many at once, and with exactly what."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.engine.builders import OK, T0, Outcome, Sim, at, decide, env, spec, stamp, task

from kopflow.api.workflow import WorkflowSpec
from kopflow.engine import Observation, RunState, job_name, reconcile


def test_a_task_waits_for_its_dependencies(diamond: WorkflowSpec) -> None:
    sim = Sim(diamond, {"extract": Outcome(seconds=30, outputs="rows=7")})
    sim.run()
    assert sim.started("extract") == [T0]
    assert sim.started("clean") == sim.started("count") == [at(30)]
    assert sim.started("load") == [at(40)]
    assert sim.status.phase == "Succeeded"


def test_ready_tasks_start_in_topological_then_declaration_order() -> None:
    s = spec(
        task("report", "zeta", "alpha"),
        task("zeta"),
        task("mid", "zeta"),
        task("alpha"),
        parallelism=1,
    )
    sim = Sim(s)
    sim.run()
    assert sim.order() == ["zeta", "mid", "alpha", "report"]


def test_parallelism_caps_running_tasks_and_keeps_declaration_order() -> None:
    s = spec(*(task(f"t{i}") for i in range(6)), parallelism=2)
    sim = Sim(s, {f"t{i}": Outcome(seconds=10 + i) for i in range(6)})
    sim.run()
    assert sim.max_running == 2
    assert sim.order() == [f"t{i}" for i in range(6)]
    assert sim.started("t2") == [at(10)]  # the first slot freed by t0


def test_without_parallelism_every_ready_task_starts_at_once() -> None:
    sim = Sim(spec(*(task(f"t{i}") for i in range(5))))
    sim.step()
    assert len(sim.launches) == 5


def test_a_launch_is_recorded_in_status_in_the_same_decision() -> None:
    decision = decide(spec(task("hello")))
    hello = (decision.status.tasks or {})["hello"]
    assert (hello.phase, hello.attempts, hello.job_name) == (
        "Running",
        1,
        job_name("run", "hello", 1),
    )
    assert hello.started_at == hello.attempt_started_at == stamp(0)
    assert decision.status.phase == "Running" and decision.status.started_at == stamp(0)
    assert [a.job_name for a in decision.launches] == [job_name("run", "hello", 1)]


def test_the_same_input_twice_gives_the_same_status_and_no_new_actions() -> None:
    s = spec(task("a"), task("b", "a"))
    first = decide(s)
    state = RunState("run", "default", s, status=first.status)
    seen = {job_name("run", "a", 1): Observation("running")}
    again = reconcile(state, seen, {}, at(5))
    assert again.status == first.status
    assert again.actions == () and not again.changed and again.events == ()


def test_launch_carries_rendered_args_and_kopflow_env() -> None:
    s = spec(
        task(
            "load",
            args=["--date", "{{ params.date }}", "{{ run.name }}/{{ run.namespace }}"],
            env=[
                {"name": "MODE", "value": "{{ params.mode }}"},
                {"name": "KOPFLOW_TASK", "value": "x"},
            ],
            timeoutSeconds=60,
        ),
        parameters=[{"name": "date"}, {"name": "mode"}],
        serviceAccountName="etl",
    )
    decision = decide(s, parameters={"date": "2026-11-28", "mode": "full"}, name="r1")
    (launch,) = decision.launches
    assert launch.args == ("--date", "2026-11-28", "r1/default")
    variables = {e.name: e.value for e in launch.env}
    assert variables == {
        "KOPFLOW_RUN": "r1",
        "KOPFLOW_TASK": "load",
        "KOPFLOW_ATTEMPT": "1",
        "KOPFLOW_PARAM_DATE": "2026-11-28",
        "KOPFLOW_PARAM_MODE": "full",
        "MODE": "full",
    }
    assert launch.command == ("run", "load") and launch.image == "busybox"
    assert launch.timeout_seconds == 60 and launch.service_account_name == "etl"
    assert launch.labels == {
        "kopflow.dev/run": "r1",
        "kopflow.dev/task": "load",
        "kopflow.dev/attempt": "1",
    }


def test_a_parameter_value_stays_one_literal_argument() -> None:
    s = spec(task("t", args=["{{ params.p }}"]), parameters=[{"name": "p"}])
    evil = "x; rm -rf / {{ params.p }} $(id)"
    (launch,) = decide(s, parameters={"p": evil}).launches
    assert launch.args == (evil,)


def test_task_defaults_are_inherited_and_env_merged_by_name() -> None:
    s = spec(
        task(
            "own", image="alpine", env=[{"name": "B", "value": "task"}, {"name": "C", "value": "3"}]
        ),
        task("inherits"),
        taskDefaults={
            "image": "python:3.12",
            "env": env(A="1", B="default"),
            "resources": {"limits": {"cpu": "1"}},
            "timeoutSeconds": 30,
        },
    )
    own, inherits = decide(s).launches
    assert own.image == "alpine" and inherits.image == "python:3.12"
    user_env = [(e.name, e.value) for e in own.env if not e.name.startswith("KOPFLOW_")]
    assert user_env == [("A", "1"), ("B", "task"), ("C", "3")]
    assert inherits.pod.resources == {"limits": {"cpu": "1"}}
    assert inherits.timeout_seconds == 30


def test_script_tasks_pass_source_untouched() -> None:
    source = "print('{{ not a template }}')"
    s = spec({"name": "py", "script": {"command": ["python"], "source": source}})
    (launch,) = decide(s).launches
    assert launch.command is None
    assert launch.script is not None and launch.script.source == source


def test_on_failure_tasks_are_not_listed_while_the_run_succeeds() -> None:
    sim = Sim(spec(task("a"), onFailure=[task("page")]))
    sim.run()
    assert set(sim.status.tasks or {}) == {"a"}
    assert sim.status.phase == "Succeeded"


def test_suspended_runs_start_nothing_until_resumed() -> None:
    sim = Sim(spec(task("a"), task("b", "a")), {"a": OK})
    sim.step()
    sim.now = at(10)
    suspended = sim.step(suspend=True)
    assert sim.task("a").phase == "Succeeded" and sim.task("b").phase == "Pending"
    assert suspended.launches == []
    assert suspended.status.conditions is not None
    assert suspended.status.conditions[0].reason == "Suspended"
    sim.now = at(100)
    assert sim.step().launches == []
    resumed = sim.step(suspend=False)
    assert [a.task for a in resumed.launches] == ["b"]


def test_suspend_holds_retries_too() -> None:
    s = spec(task("a", retry={"limit": 1, "backoff": {"seconds": 5}}))
    sim = Sim(s, {"a": [Outcome("failed", exit_code=1), OK]})
    sim.step()
    sim.now = at(10)
    sim.step(suspend=True)
    sim.now = at(60)
    assert sim.step().launches == []
    assert sim.task("a").phase == "Retrying"
    sim.state = replace(sim.state, suspend=False)
    assert [a.attempt for a in sim.step().launches] == [2]


def test_invalid_spec_ends_the_run_as_invalid_without_launching() -> None:
    s = WorkflowSpec.model_validate(
        {"tasks": [{"name": "a", "dependsOn": ["b"]}, {"name": "b", "dependsOn": ["a"]}]}
    )
    decision = decide(s)
    assert decision.status.phase == "Invalid" and decision.actions == ()
    assert "cycle" in (decision.status.message or "")
