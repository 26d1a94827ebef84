"""kopflow.metrics: what a status change counts (once), bounded labels, API codes, and the
gauges a leader (and only a leader) derives from the runs it watches."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import REGISTRY

from kopflow import metrics


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def run(ns: str, ref: str | None = None, generate: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "r-abcde", "namespace": ns}
    if generate:
        meta["generateName"] = generate
    return {"metadata": meta, "spec": {"workflowRef": {"name": ref}} if ref else {}}


def status(phase: str, **tasks: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"phase": phase, "startedAt": "2026-11-28T08:00:00Z", "tasks": tasks}
    if phase in metrics.FINISHED:
        out["finishedAt"] = "2026-11-28T08:01:40Z"
    return out


def test_a_retried_task_and_its_run_are_counted_once() -> None:
    ns, body = "unit-a", run("unit-a", ref="etl")
    t0 = "2026-11-28T08:00:00Z"
    steps = [
        None,
        status("Running", load={"phase": "Running", "attempts": 1, "attemptStartedAt": t0}),
        status(
            "Running",
            load={"phase": "Retrying", "attempts": 1, "history": [
                {"attempt": 1, "reason": "Error", "finishedAt": "2026-11-28T08:00:10Z"}]},
        ),
        status(
            "Running",
            load={"phase": "Running", "attempts": 2, "attemptStartedAt": "2026-11-28T08:00:20Z"},
        ),
        status("Succeeded", load={"phase": "Succeeded", "attempts": 2,
                                  "finishedAt": "2026-11-28T08:00:50Z"}),
    ]  # fmt: skip
    assert sample("kopflow_runs_total", namespace=ns, workflow="etl", phase="Failed") == 0
    for old, new in itertools.pairwise(steps):
        metrics.run_status_written(ns, body, old, new)
    # the same status written again (a retried patch, a restart) counts nothing more
    metrics.run_status_written(ns, body, steps[-1], steps[-1])
    wf = {"namespace": ns, "workflow": "etl"}
    assert REGISTRY.get_sample_value("kopflow_runs_total", {**wf, "phase": "Failed"}) == 0
    assert sample("kopflow_runs_total", **wf, phase="Succeeded") == 1
    assert sample("kopflow_run_duration_seconds_sum", **wf, phase="Succeeded") == 100
    assert sample("kopflow_task_attempts_total", **wf, task="load", result="failed") == 1
    assert sample("kopflow_task_attempts_total", **wf, task="load", result="succeeded") == 1
    assert sample("kopflow_task_retries_total", **wf, task="load") == 1
    assert sample("kopflow_task_duration_seconds_sum", **wf, task="load") == 10 + 30


def test_task_labels_are_capped_per_workflow() -> None:
    ns = "unit-b"
    labels = {metrics.task_label(ns, "big", f"t{i}") for i in range(metrics.MAX_TASKS + 10)}
    assert len(labels) == metrics.MAX_TASKS + 1 and metrics.OTHER in labels
    assert metrics.task_label(ns, "big", "t0") == "t0"  # a labelled task keeps its label
    assert metrics.task_label(ns, "small", "t99") == "t99"  # the cap is per workflow


def test_workflow_label_is_never_the_run_name() -> None:
    assert metrics.workflow_of(run("unit-c", ref="etl")) == "etl"
    assert metrics.workflow_of(run("unit-c", generate="hello-")) == "hello"
    assert metrics.workflow_of(run("unit-c")) == "_inline"


class Status(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


@dataclass
class Rest:
    answers: list[Any]

    def request(self, method: str, url: str, **_: Any) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@dataclass
class Client:
    rest_client: Rest


@dataclass
class Response:
    status: int


def test_official_client_requests_are_counted_by_verb_and_code() -> None:
    codes = ("200", "403", "error")
    before = {c: sample("kopflow_api_requests_total", verb="PUT", code=c) for c in codes}
    client = metrics.instrument_client(
        Client(Rest([Response(200), Status(403), ConnectionError("reset")]))
    )
    metrics.instrument_client(client)  # idempotent: counted once
    assert client.rest_client.request("put", "/x").status == 200
    for err in (Status, ConnectionError):
        with pytest.raises(err):
            client.rest_client.request("put", "/x")
    for code in codes:
        assert sample("kopflow_api_requests_total", verb="PUT", code=code) == before[code] + 1


@dataclass
class Source:
    active: bool
    bodies: dict[Any, dict[str, Any]] = field(default_factory=dict)


def test_gauges_come_from_the_watched_runs_and_only_from_the_leader() -> None:
    ns = "unit-d"
    source = Source(active=False)
    start = "2026-11-28T08:00:00Z"
    source.bodies = {
        1: {**run(ns, ref="etl"), "status": {"phase": "Running", "startedAt": start}},
        2: {**run(ns, ref="etl"), "status": {}},
        3: {**run(ns, ref="etl"), "status": status("Succeeded")},
    }  # fmt: skip
    metrics.track(source)
    try:
        assert sample("kopflow_leader") == 0
        assert (
            REGISTRY.get_sample_value("kopflow_runs_active", {"namespace": ns, "workflow": "etl"})
            is None
        )
        source.active = True
        wf = {"namespace": ns, "workflow": "etl"}
        assert sample("kopflow_leader") == 1
        assert sample("kopflow_runs_active", **wf) == 2
        oldest = sample("kopflow_runs_oldest_start_timestamp_seconds", **wf)
        assert oldest == 1795852800  # 2026-11-28T08:00:00Z
        success = sample("kopflow_workflow_last_success_timestamp_seconds", **wf)
        assert success == oldest + 100
        del source.bodies[3]  # deleted by its history limit: the last success is remembered
        assert sample("kopflow_workflow_last_success_timestamp_seconds", **wf) == success
    finally:
        metrics.COLLECTOR.derived = None
