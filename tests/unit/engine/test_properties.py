"""Properties over random DAGs and random outcomes, driven by the simulated executor.

Every step of every run also checks, inside Sim: idempotence (the same input again gives the
same status and no new Launch or Stop), no task launched before its dependencies succeeded,
parallelism never exceeded, attempts never above limit+1, job names valid and never reused.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.engine.builders import Outcome, Sim, at, spec, task

from kopflow.api.run import FINISHED_RUN_PHASES, FINISHED_TASK_PHASES
from kopflow.api.workflow import WorkflowSpec
from kopflow.engine import CacheEntry, job_name

KINDS = ["Failed", "Timeout", "Lost"]

outcomes = st.one_of(
    st.builds(Outcome, seconds=st.integers(1, 30), outputs=st.sampled_from([None, "o=1", "o=2"])),
    st.builds(Outcome, seconds=st.integers(1, 30)),
    st.builds(
        Outcome,
        st.just("failed"),
        seconds=st.integers(1, 30),
        exit_code=st.integers(1, 3),
        reason=st.sampled_from(["Error", "OOMKilled", "DeadlineExceeded"]),
    ),
    st.builds(Outcome, st.just("lost"), seconds=st.integers(1, 30), reason=st.just("Evicted")),
    st.builds(Outcome, st.just("hang")),
    st.builds(Outcome, seconds=st.just(1), outputs=st.just("o=" + "x" * 1500)),
)


@st.composite
def task_fields(draw: st.DrawFn, allow_when: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {"outputs": ["o"], "args": ["{{ params.mode }}"]}
    if draw(st.booleans()):
        fields["retry"] = {
            "limit": draw(st.integers(0, 3)),
            "backoff": {
                "seconds": draw(st.integers(0, 20)),
                "factor": draw(st.sampled_from([1, 2])),
            },
            "reasons": draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True)),
        }
        if draw(st.integers(0, 3)) == 0:
            fields["retry"]["exitCodes"] = [1, 2]
    if draw(st.integers(0, 2)) == 0:
        fields["timeoutSeconds"] = draw(st.integers(5, 40))
    if draw(st.integers(0, 4)) == 0:
        fields["allowFailure"] = True
    if allow_when and draw(st.integers(0, 3)) == 0:
        operator = draw(st.sampled_from(["in", "notin"]))
        fields["when"] = [{"input": "{{ params.mode }}", "operator": operator, "values": ["a"]}]
    if draw(st.integers(0, 3)) == 0:
        fields["cache"] = {"key": "{{ params.mode }}"}
    return fields


@st.composite
def workflows(draw: st.DrawFn) -> WorkflowSpec:
    """A random DAG (edges only to earlier-built tasks), declared in a random order."""
    n = draw(st.integers(1, 9))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    tasks = [
        task(f"t{i}", *(f"t{d}" for d in deps[i]), **draw(task_fields(True))) for i in range(n)
    ]
    handlers = [
        task(
            f"h{j}",
            *([f"h{j - 1}"] if j and draw(st.booleans()) else []),
            **draw(task_fields(False)),
        )
        for j in range(draw(st.integers(0, 2)))
    ]
    fields: dict[str, Any] = {
        "tasks": draw(st.permutations(tasks)),
        "parameters": [{"name": "mode"}],
        "parallelism": draw(st.one_of(st.none(), st.integers(1, 3))),
    }
    if handlers:
        fields["onFailure"] = handlers
    if draw(st.integers(0, 3)) == 0:
        fields["activeDeadlineSeconds"] = draw(st.integers(10, 300))
    if draw(st.booleans()):
        fields["taskDefaults"] = {
            "image": "busybox",
            "retry": {"limit": 1, "backoff": {"seconds": 3}},
        }
    return spec(**fields)


@st.composite
def simulations(draw: st.DrawFn) -> Sim:
    workflow = draw(workflows())
    table: dict[tuple[str, int], Outcome] = {}
    for t in [*workflow.tasks, *(workflow.on_failure or [])]:
        timeout = t.timeout_seconds is not None
        for attempt in range(1, 5):
            outcome = draw(outcomes)
            if outcome.state == "hang" and not timeout:
                outcome = Outcome(seconds=200)  # nothing would ever end it
            table[(t.name, attempt)] = outcome
    edits: list[tuple[Any, dict[str, Any]]] = []
    if draw(st.integers(0, 3)) == 0:
        start = draw(st.integers(0, 100))
        edits += [
            (at(start), {"suspend": True}),
            (at(start + draw(st.integers(1, 60))), {"suspend": False}),
        ]
    if draw(st.integers(0, 4)) == 0:
        edits.append((at(draw(st.integers(0, 200))), {"cancel": True}))
    edits.sort(key=lambda e: e[0])
    params = {"mode": draw(st.sampled_from(["a", "b"]))}
    store: dict[str, CacheEntry] = {}
    if draw(st.integers(0, 2)) == 0:  # an earlier, successful run left cache entries
        Sim(workflow, params=params, store=store, check=False).run(max_steps=500)
    return Sim(
        workflow,
        lambda name, attempt: table[(name, min(attempt, 4))],
        params=params,
        store=store,
        edits=edits,
    )


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sim=simulations())
def test_every_run_terminates_and_keeps_its_invariants(sim: Sim) -> None:
    status = sim.run(max_steps=500)
    assert status.phase in FINISHED_RUN_PHASES
    main = [t.name for t in sim.spec.tasks]
    tasks = status.tasks or {}
    assert all(tasks[name].phase in FINISHED_TASK_PHASES for name in main)
    assert status.progress == f"{len(main)}/{len(main)}"
    assert status.finished_at is not None and status.duration is not None
    handlers = [t.name for t in sim.spec.on_failure or []]
    if status.phase == "Succeeded":
        allowed = {t.name for t in sim.spec.tasks if t.allow_failure}
        assert all(tasks[n].phase != "Failed" or n in allowed for n in main)
        assert not set(handlers) & set(tasks)
    if status.phase == "Failed" and handlers:
        assert all(tasks[h].phase in FINISHED_TASK_PHASES for h in handlers)
    for _, launch in sim.launches:
        assert launch.job_name == job_name(sim.name, launch.task, launch.attempt)
    if sim.spec.parallelism is not None:
        assert sim.max_running <= sim.spec.parallelism


STEPS = st.sets(st.integers(1, 40), max_size=6)


@settings(max_examples=80, deadline=None)
@given(sim=simulations(), crashes=STEPS, restarts=STEPS)
def test_a_restarted_executor_launches_nothing_twice_and_loses_nothing(
    sim: Sim, crashes: set[int], restarts: set[int]
) -> None:
    """At some steps the executor dies after acting but before persisting; at others it
    restarts and forgets its cache answers. The run still ends exactly as an undisturbed one,
    and a relaunch only ever hits an existing job (a 409)."""
    reference = Sim(
        sim.spec,
        sim.outcomes,
        params=sim.params,
        store=dict(sim.store),
        edits=list(sim.edits),
        check=False,
    )
    expected = reference.run(max_steps=500)
    for step in range(1, 500):
        if step in crashes:
            sim.crash()  # restarts at once: same clock, same world, old status
            continue
        decision = sim.step()
        if decision.finished:
            break
        wake = sim.next_time(decision)
        assert wake is not None
        sim.now = wake
        if step in restarts:
            sim.answers.clear()
    assert sim.status.dump() == expected.dump()
    assert len(sim.jobs) == len(reference.jobs)
