"""Outputs over a run's inline budget go to shards; every output reads back the same."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from kopflow.api.run import TaskStatus, WorkflowRunStatus
from kopflow.engine.spill import (
    Budget,
    MissingOutputs,
    entry_size,
    hydrate,
    needed_shards,
    plan_spill,
    shard_name,
    stored,
)

RUN = "big-run"
values = st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
task_outputs = st.dictionaries(st.sampled_from(["a", "b", "rows", "uri"]), values, max_size=4)
runs = st.lists(task_outputs, min_size=1, max_size=40)
budgets = st.builds(
    Budget,
    inline=st.integers(0, 4000),
    per_task=st.integers(0, 1500),
    shard=st.integers(1300, 5000),  # at least one task's outputs (4 x 300 B + keys) fit
)


def finish(status: WorkflowRunStatus, name: str, outputs: dict[str, str]) -> WorkflowRunStatus:
    tasks = dict(status.tasks or {})
    tasks[name] = TaskStatus(phase="Succeeded", attempts=1, outputs=outputs or None)
    return status.model_copy(update={"tasks": tasks})


@settings(max_examples=60, deadline=None)
@given(runs, budgets, st.integers(1, 5))
def test_every_output_reads_back_and_nothing_breaks_its_budget(
    outputs: list[dict[str, str]], budget: Budget, batch: int
) -> None:
    """Tasks finish a few at a time; after each status write (shards first), a restarted
    operator reading the stored status and the shards sees every output it saw before."""
    names = [f"t{i}" for i in range(len(outputs))]
    status = WorkflowRunStatus(tasks={n: TaskStatus(phase="Running") for n in names})
    written: WorkflowRunStatus | None = None
    shards: dict[str, dict[str, str]] = {}
    placed: dict[str, int | None] = {}
    for start in range(0, len(names), batch):
        for name, out in zip(names[start : start + batch], outputs[start:], strict=False):
            status = finish(status, name, out)
        spill = plan_spill(RUN, status, written, budget, len(names))
        for n, entries in spill.writes.items():
            shards.setdefault(shard_name(RUN, n), {}).update(entries)
        status = written = spill.status
        for name, task in (status.tasks or {}).items():
            if task.outputs:  # placement never changes once made
                assert placed.setdefault(name, task.outputs_shard) == task.outputs_shard
        wire = WorkflowRunStatus.model_validate(stored(status).dump())
        assert hydrate(RUN, wire, shards) == status
        assert needed_shards(RUN, status) == []  # in memory, every output is at hand
    inline = sum(
        entry_size(n, t.outputs or {})
        for n, t in (status.tasks or {}).items()
        if t.outputs and t.outputs_shard is None
    )
    assert inline <= budget.for_tasks(len(names))
    for data in shards.values():
        assert sum(len(k.encode()) + len(v.encode()) for k, v in data.items()) <= budget.shard
    assert (status.output_shards or []) == [shard_name(RUN, i) for i in range(len(shards))]


def test_5000_tasks_of_4_kib_need_no_inline_outputs_and_22_shards() -> None:
    out = {f"k{i}": "x" * 1000 for i in range(4)}
    names = [f"task-{i:04d}" for i in range(5000)]
    status = WorkflowRunStatus(
        tasks={n: TaskStatus(phase="Succeeded", attempts=1, outputs=out) for n in names}
    )
    spill = plan_spill(RUN, status, None, Budget(), len(names))
    assert Budget().for_tasks(5000) == 0  # the task statuses alone take the room
    assert len(spill.writes) == len(spill.status.output_shards or []) == 22
    slim = stored(spill.status).dump()
    assert all("outputs" not in t for t in slim["tasks"].values())
    assert slim["tasks"]["task-4999"]["outputsShard"] == 21
    assert len(json.dumps(slim, separators=(",", ":"))) < 400 * 1024


def test_a_small_run_keeps_small_outputs_inline_and_spills_large_ones() -> None:
    status = WorkflowRunStatus(
        tasks={
            "small": TaskStatus(phase="Succeeded", outputs={"rows": "12"}),
            "large": TaskStatus(phase="Succeeded", outputs={"blob": "y" * 2000}),
        }
    )
    spill = plan_spill(RUN, status, None, Budget(), 2)
    tasks = spill.status.tasks or {}
    assert tasks["small"].outputs_shard is None
    assert tasks["large"].outputs_shard == 0
    assert spill.writes == {0: {"large": json.dumps({"blob": "y" * 2000}, separators=(",", ":"))}}
    assert spill.status.output_shards == ["big-run-outputs-0"]


def test_a_deleted_shard_is_named_when_its_outputs_are_read() -> None:
    status = WorkflowRunStatus(tasks={"t": TaskStatus(phase="Succeeded", outputs_shard=3)})
    try:
        hydrate(RUN, status, {})
    except MissingOutputs as err:
        assert "big-run-outputs-3" in str(err) and '"t"' in str(err)
    else:
        raise AssertionError("no error")


def test_shard_names_of_a_long_run_name_stay_valid() -> None:
    name = shard_name("r" * 253, 12)
    assert len(name) == 253 and name.endswith("-outputs-12")


def test_the_operator_writes_succeeded_tasks_without_job_name_and_exit_code_0() -> None:
    """Both are known (labels on the Jobs; Succeeded means exit 0); a failed task keeps its."""
    ok = TaskStatus(phase="Succeeded", attempts=1, job_name="r-a-1234-1", exit_code=0)
    bad = TaskStatus(phase="Failed", attempts=1, job_name="r-b-5678-1", exit_code=2)
    wire = stored(WorkflowRunStatus(tasks={"a": ok, "b": bad})).dump()["tasks"]
    assert wire["a"] == {"phase": "Succeeded", "attempts": 1}
    assert wire["b"]["jobName"] == "r-b-5678-1" and wire["b"]["exitCode"] == 2
