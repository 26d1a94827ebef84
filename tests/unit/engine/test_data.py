"""Data between tasks: outputs, `when` conditions, and the result cache."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.unit.engine.builders import T0, Outcome, Sim, at, decide, env, spec, task

from kopflow.api.workflow import Task, WorkflowSpec
from kopflow.engine import CacheEntry, OutputsError, cache_key, parse_outputs

# --- outputs -------------------------------------------------------------------------------


def test_outputs_keep_declared_keys_only_and_values_verbatim() -> None:
    text = "rows=12\nignored=1\nnot a pair\n url = a=b&c=d\r\nrows=13\n"
    assert parse_outputs(text, ["rows", "url", "missing"]) == {"rows": "13", "url": " a=b&c=d"}


def test_an_output_value_may_be_exactly_1_kib() -> None:
    assert parse_outputs("k=" + "x" * 1024, ["k"]) == {"k": "x" * 1024}
    with pytest.raises(OutputsError, match=r'output "k" is 1025 bytes'):
        parse_outputs("k=" + "x" * 1025, ["k"])


def test_outputs_over_4_kib_in_total_are_an_error() -> None:
    text = "\n".join(f"k{i}=" + "x" * 1000 for i in range(5))
    with pytest.raises(OutputsError, match=r"outputs total 5000 bytes, over the limit of 4096"):
        parse_outputs(text, [f"k{i}" for i in range(5)])


def test_outputs_flow_downstream(diamond: WorkflowSpec) -> None:
    sim = Sim(diamond, {"extract": Outcome(outputs="rows=42\n")})
    sim.run()
    assert sim.task("extract").outputs == {"rows": "42"}
    (clean,) = [launch for _, launch in sim.launches if launch.task == "clean"]
    assert clean.args == ("--rows", "42")


# --- when ----------------------------------------------------------------------------------


def when(value: str, operator: str, *values: str) -> list[dict[str, object]]:
    return [{"input": value, "operator": operator, "values": list(values)}]


def test_a_false_when_skips_the_task_but_its_dependents_run_with_empty_outputs() -> None:
    s = spec(
        task("gate", outputs=["n"], when=when("{{ params.mode }}", "in", "full")),
        task("after", "gate", args=["n={{ tasks.gate.outputs.n }}"]),
        parameters=[{"name": "mode"}],
    )
    sim = Sim(s, params={"mode": "incremental"})
    status = sim.run()
    gate = sim.task("gate")
    assert (gate.phase, gate.reason, gate.attempts) == ("Skipped", "WhenFalse", 0)
    assert gate.message == 'when: "incremental" in [full] is false'
    (after,) = [launch for _, launch in sim.launches]
    assert after.args == ("n=",)
    assert status.phase == "Succeeded" and status.progress == "2/2"


@pytest.mark.parametrize(
    ("operator", "mode", "runs"),
    [("in", "full", True), ("in", "other", False), ("notin", "full", False), ("notin", "x", True)],
)
def test_when_in_and_notin(operator: str, mode: str, runs: bool) -> None:
    s = spec(
        task("t", when=when("{{ params.mode }}", operator, "full")), parameters=[{"name": "mode"}]
    )
    decision = decide(s, parameters={"mode": mode})
    assert bool(decision.launches) == runs


def test_when_reads_upstream_outputs() -> None:
    s = spec(
        task("check", outputs=["changed"]),
        task("publish", "check", when=when("{{ tasks.check.outputs.changed }}", "in", "yes")),
    )
    no = Sim(s, {"check": Outcome(outputs="changed=no")})
    no.run()
    assert no.task("publish").reason == "WhenFalse"
    yes = Sim(s, {"check": Outcome(outputs="changed=yes")})
    yes.run()
    assert yes.task("publish").phase == "Succeeded"


# --- cache ---------------------------------------------------------------------------------


def cached_task(**fields: object) -> Task:
    doc = {"name": "t", "image": "python:3.12", "args": ["a"], "cache": {"key": "k"}}
    return Task.model_validate(doc | fields)


def test_the_cache_key_is_stable_and_covers_what_shapes_the_result() -> None:
    base = cache_key("data", cached_task(), {"p": "1"})
    assert base == cache_key("data", cached_task(), {"p": "1"})
    assert len(base) == 64 and int(base, 16) >= 0
    assert cache_key("data", cached_task(name="other-task"), {"p": "1"}) == base
    changed = [
        cache_key("other-namespace", cached_task(), {"p": "1"}),
        cache_key("data", cached_task(image="python:3.13"), {"p": "1"}),
        cache_key("data", cached_task(args=["b"]), {"p": "1"}),
        cache_key("data", cached_task(env=env(X="1")), {"p": "1"}),
        cache_key("data", cached_task(command=["python"]), {"p": "1"}),
        cache_key("data", cached_task(cache={"key": "k2"}), {"p": "1"}),
        cache_key("data", cached_task(), {"p": "2"}),
        cache_key("data", cached_task(script={"command": ["sh"], "source": "true"}), {"p": "1"}),
    ]
    assert len({base, *changed}) == len(changed) + 1


def cache_spec() -> WorkflowSpec:
    return spec(
        task(
            "extract",
            outputs=["rows"],
            args=["{{ params.date }}"],
            cache={"key": "{{ params.date }}", "ttlSeconds": 3600},
        ),
        task("load", "extract", args=["{{ tasks.extract.outputs.rows }}"]),
        parameters=[{"name": "date"}],
    )


def test_a_cached_task_is_looked_up_before_it_is_launched() -> None:
    decision = decide(cache_spec(), parameters={"date": "d1"})
    assert decision.launches == [] and len(decision.lookups) == 1
    assert decision.requeue_at == T0  # call again as soon as the answer is in
    assert (decision.status.tasks or {})["extract"].phase == "Pending"


def test_a_miss_launches_and_the_success_is_stored_until_its_ttl() -> None:
    sim = Sim(cache_spec(), {"extract": Outcome(outputs="rows=9")}, params={"date": "d1"})
    sim.run()
    assert sim.task("extract").attempts == 1 and not sim.task("extract").cached
    (entry,) = sim.store.values()
    assert entry.outputs == {"rows": "9"} and entry.expires_at == at(10) + timedelta(hours=1)


def test_a_live_entry_makes_the_task_succeed_from_cache_without_running() -> None:
    first = Sim(cache_spec(), {"extract": Outcome(outputs="rows=9")}, params={"date": "d1"})
    first.run()
    second = Sim(cache_spec(), params={"date": "d1"}, store=first.store, name="run2")
    status = second.run()
    extract = second.task("extract")
    assert (extract.phase, extract.cached, extract.attempts) == ("Succeeded", True, 0)
    assert extract.outputs == {"rows": "9"}
    assert second.order() == ["load"]
    assert second.launches[0][1].args == ("9",)
    assert "TaskCached" in second.reasons() and status.phase == "Succeeded"


def test_other_parameters_miss_the_cache() -> None:
    first = Sim(cache_spec(), params={"date": "d1"})
    first.run()
    second = Sim(cache_spec(), params={"date": "d2"}, store=first.store)
    second.run()
    assert second.order() == ["extract", "load"]


def test_an_expired_entry_is_a_miss() -> None:
    first = Sim(cache_spec(), params={"date": "d1"})
    first.run()
    later = Sim(cache_spec(), params={"date": "d1"}, store=first.store, now=at(7200))
    later.run()
    assert later.order() == ["extract", "load"]
    key = next(iter(first.store))
    expired = decide(
        cache_spec(),
        cache={key: CacheEntry({"rows": "1"}, T0 - timedelta(seconds=1))},
        parameters={"date": "d1"},
    )
    assert [a.task for a in expired.launches] == ["extract"]


def test_a_run_with_cache_off_ignores_hits_but_still_stores() -> None:
    first = Sim(cache_spec(), params={"date": "d1"})
    first.run()
    fresh = Sim(cache_spec(), params={"date": "d1"}, store={}, use_cache=False)
    fresh.store = dict(first.store)
    fresh.run()
    assert fresh.order() == ["extract", "load"]
    assert not any(d.lookups for d in fresh.decisions)
    assert fresh.decisions[1].stores  # the success is stored again
