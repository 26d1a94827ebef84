"""Cron schedules on both backends: one run per slot, even with two operators or a restart.

Time: the operators run with a hidden fast clock (`--clock-anchor NOW --clock-rate 20`): the
scheduler's clock equals the wall clock when the Workflow is created and then runs 20 times
faster, so a per-minute schedule fires every 3 s of wall time. Operators given the same anchor
agree on the time, so races between them are real races. Runs and Jobs keep the wall clock.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.integration.operator.conftest import Cluster, Kube, Operator
from tests.integration.operator.test_metrics import value

RATE = 20
SLOT = 60 / RATE
"""Wall seconds between the slots of `* * * * *`."""


def scheduled(
    name: str,
    cron: str = "* * * * *",
    sleep: float = 0.2,
    spec: dict[str, Any] | None = None,
    **schedule: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "kopflow.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "schedule": {"cron": cron, **schedule},
            "parameters": [{"name": "when", "default": "{{ schedule.time }}"}],
            "taskDefaults": {"image": "python:3.12-slim"},
            **(spec or {}),
            "tasks": [
                {
                    "name": "a",
                    "args": ["{{ params.when }}"],
                    "command": ["python3", "-c", f"import time; time.sleep({sleep})"],
                }
            ],
        },
    }


@pytest.fixture
def fast(cluster: Cluster, tmp_path: Path) -> Iterator[list[Operator]]:
    """Operators factory state: every operator started by `start_fast` is stopped at the end."""
    started: list[Operator] = []
    yield started
    for op in started:
        op.stop()
        if op.log.exists():
            print(op.log.read_text()[-8000:])


def start_fast(cluster: Cluster, fast: list[Operator], anchor: float, tmp: Path) -> Operator:
    op = Operator(
        cluster,
        tmp / f"operator-{len(fast)}.log",
        "--clock-anchor",
        str(anchor),
        "--clock-rate",
        str(RATE),
    )
    op.start()
    fast.append(op)
    return op


def runs_of(kube: Kube, workflow: str) -> dict[str, dict[str, Any]]:
    return {
        r["metadata"]["name"]: r
        for r in kube.watched_runs()
        if (r["metadata"].get("labels") or {}).get("kopflow.dev/workflow") == workflow
    }


def created(kube: Kube, workflow: str) -> list[str]:
    """Names of the workflow's scheduled runs ever created (deleted ones included)."""
    return sorted(n for n in kube._runs.added if n.startswith(workflow + "-"))


def phase(run: dict[str, Any]) -> str | None:
    return (run.get("status") or {}).get("phase")


def assert_once_per_slot(kube: Kube, workflow: str) -> list[str]:
    """Every run of the workflow was created once, under its slot's name, slots one minute apart."""
    names = created(kube, workflow)
    assert names, "no scheduled run"
    assert all(kube._runs.added[n] == 1 for n in names), dict(kube._runs.added)
    slots = [datetime.strptime(n[-13:], "%Y%m%d-%H%M") for n in names]
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(slots)), names
    return names


def test_a_per_minute_schedule_creates_one_run_per_slot_and_keeps_its_history_limit(
    cluster: Cluster, kube: Kube, fast: list[Operator], tmp_path: Path
) -> None:
    start_fast(cluster, fast, time.time(), tmp_path)
    kube.create(scheduled("tick", spec={"successfulRunsHistoryLimit": 1}))
    kube.wait(lambda: len(created(kube, "tick")) >= 3, 8 * SLOT + 20, "three scheduled runs")
    names = assert_once_per_slot(kube, "tick")
    # the oldest succeeded runs are deleted once newer ones succeed
    kube.wait(lambda: not set(names[:2]) & set(runs_of(kube, "tick")), 30, "history limit")

    def succeeded() -> Any:
        done = [r for r in runs_of(kube, "tick").values() if phase(r) == "Succeeded"]
        return done[0] if done else None

    run = kube.wait(succeeded, 30, "a succeeded scheduled run")
    name, when = run["metadata"]["name"], run["spec"]["scheduledTime"]
    assert run["metadata"]["labels"]["kopflow.dev/slot"] == name[len("tick-") :]
    assert when.endswith(":00Z") and when[11:16].replace(":", "") == name[-4:]
    assert run["status"]["parameters"]["when"] == when  # the slot's time, not the wall clock

    def status() -> Any:
        wf = kube._workflows.items.get("tick") or {}
        s = wf.get("status") or {}
        return s if s.get("lastSuccessfulTime") and s.get("nextScheduleTime") else None

    s = kube.wait(status, 30, "schedule status")
    assert s["lastScheduleTime"] < s["nextScheduleTime"]
    assert s["lastRunName"].startswith("tick-")


def test_two_operators_racing_and_a_restart_never_create_a_slot_twice(
    cluster: Cluster, kube: Kube, fast: list[Operator], tmp_path: Path
) -> None:
    anchor = time.time()
    one = start_fast(cluster, fast, anchor, tmp_path)
    two = start_fast(cluster, fast, anchor, tmp_path)
    kube.create(scheduled("race"))
    kube.wait(lambda: len(created(kube, "race")) >= 2, 6 * SLOT + 20, "two scheduled runs")
    one.kill()  # mid-slot, as a crash; the other one goes on meanwhile
    one.start()
    kube.wait(lambda: len(created(kube, "race")) >= 3, 3 * SLOT + 20, "a third run")
    two.kill()  # from now on the restarted operator is alone
    seen = len(created(kube, "race"))
    kube.wait(lambda: len(created(kube, "race")) >= seen + 2, 6 * SLOT + 20, "two more runs")
    assert_once_per_slot(kube, "race")  # each slot once, and none missed


def test_forbid_skips_slots_while_a_scheduled_run_is_active(
    cluster: Cluster, kube: Kube, fast: list[Operator], tmp_path: Path
) -> None:
    start_fast(cluster, fast, time.time(), tmp_path)
    kube.create(scheduled("lone", sleep=1.5 * SLOT, concurrencyPolicy="Forbid"))

    def skipped() -> Any:
        s = (kube._workflows.items.get("lone") or {}).get("status") or {}
        return s if (s.get("skipped") or 0) >= 1 else None

    kube.wait(skipped, 6 * SLOT + 20, "a skipped slot")
    kube.wait_event("lone", "SlotSkipped")
    slots = {"namespace": kube.ns, "workflow": "lone"}
    text = fast[0].metrics()
    assert value(text, "kopflow_schedule_slots_total", outcome="skipped", **slots) >= 1
    assert value(text, "kopflow_schedule_next_timestamp_seconds", **slots) > 0
    runs = list(runs_of(kube, "lone").values())
    active = [
        r for r in runs if (r.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    ]
    assert len(active) <= 1


def test_replace_cancels_the_active_scheduled_run_and_starts_the_next(
    cluster: Cluster, kube: Kube, fast: list[Operator], tmp_path: Path
) -> None:
    start_fast(cluster, fast, time.time(), tmp_path)
    kube.create(scheduled("swap", sleep=30, concurrencyPolicy="Replace"))
    kube.wait(lambda: len(created(kube, "swap")) >= 2, 6 * SLOT + 20, "two scheduled runs")
    first, second = created(kube, "swap")[:2]
    kube.wait_run(first, "Cancelled", timeout=30)
    assert kube.run(second)["spec"]["scheduledTime"] > kube.run(first)["spec"]["scheduledTime"]
    kube.wait_event("swap", "Replaced")


@pytest.mark.emulator_only("counts the 409s of the operator that lost each race")
def test_racing_operators_both_try_each_slot_and_the_loser_gets_a_409(
    cluster: Cluster, kube: Kube, fast: list[Operator], tmp_path: Path
) -> None:
    anchor = time.time()
    start_fast(cluster, fast, anchor, tmp_path)
    start_fast(cluster, fast, anchor, tmp_path)
    kube.create(scheduled("duel"))
    kube.wait(lambda: len(created(kube, "duel")) >= 3, 8 * SLOT + 20, "three scheduled runs")
    names = assert_once_per_slot(kube, "duel")
    creates = [  # a create's record has no name (it is in the body): all are scheduled runs
        r
        for r in list(kube.server.requests.recent)
        if r.verb == "create" and r.resource == "workflowruns.kopflow.dev"
    ]
    assert {r.code for r in creates} <= {201, 409}, creates
    assert sum(r.code == 201 for r in creates) == len(names)
    assert sum(r.code == 409 for r in creates) >= 1  # the loser of a race learnt the slot was taken
    assert len({r.user_agent for r in creates}) == 2  # both operators tried


def test_after_downtime_all_catches_up_the_newest_max_catch_up_slots_and_counts_the_rest(
    cluster: Cluster, kube: Kube, fast: list[Operator], tmp_path: Path
) -> None:
    op = start_fast(cluster, fast, time.time(), tmp_path)
    kube.create(scheduled("late", catchUp="All", maxCatchUp=2))
    kube.wait(lambda: created(kube, "late"), 3 * SLOT + 20, "a first scheduled run")
    op.kill()
    before = created(kube, "late")
    # downtime: nothing to await, the clock must pass four slots
    time.sleep(4 * SLOT)
    op.start()
    kube.wait(lambda: len(created(kube, "late")) >= len(before) + 2, 20, "caught-up runs")
    after = created(kube, "late")[len(before) :]
    slots = [datetime.strptime(n[-13:], "%Y%m%d-%H%M") for n in [before[-1], *after]]
    assert slots[2] - slots[1] == timedelta(minutes=1)  # the two newest missed, caught up
    gap = (slots[1] - slots[0]) // timedelta(minutes=1) - 1
    assert gap >= 1  # older missed slots were not run

    def missed() -> Any:
        s = (kube._workflows.items.get("late") or {}).get("status") or {}
        return s.get("missed")

    assert kube.wait(missed, 20, "missed count") == gap
    kube.wait_event("late", "SlotMissed")
    slots = {"namespace": kube.ns, "workflow": "late"}
    text = op.metrics()  # the restarted process counts what it found after the downtime
    assert value(text, "kopflow_schedule_slots_total", outcome="missed", **slots) == gap
    assert value(text, "kopflow_schedule_slots_total", outcome="started", **slots) >= 2


def test_a_suspended_schedule_creates_nothing_and_resumes_without_missed_slots(
    cluster: Cluster, kube: Kube, fast: list[Operator], tmp_path: Path
) -> None:
    start_fast(cluster, fast, time.time(), tmp_path)
    kube.create(scheduled("held", suspend=True))

    def status() -> dict[str, Any]:
        return dict((kube._workflows.items.get("held") or {}).get("status") or {})

    first = kube.wait(lambda: status().get("lastSlotTime"), 3 * SLOT + 20, "a slot passed over")
    kube.wait(lambda: status().get("lastSlotTime", first) > first, 3 * SLOT + 20, "another one")
    assert not created(kube, "held") and "nextScheduleTime" not in status()
    kube.custom.patch_namespaced_custom_object(
        "kopflow.dev", "v1alpha1", kube.ns, "workflows", "held",
        {"spec": {"schedule": {"suspend": False}}},
    )  # fmt: skip
    kube.wait(lambda: created(kube, "held"), 3 * SLOT + 20, "a run once resumed")
    kube.wait(lambda: status().get("nextScheduleTime"), 20, "the next slot shown again")
    assert not status().get("missed")
