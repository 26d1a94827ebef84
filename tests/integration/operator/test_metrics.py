"""The operator's /metrics: what a run did, counted once; gauges rebuilt after a restart; labels
bounded; and the shipped dashboard and alerts query only metrics it exports."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from tests.integration.operator.conftest import ROOT, Kube, Operator

DASHBOARD = ROOT / "helm" / "kopflow" / "files" / "dashboard.json"
ALERTS = ROOT / "helm" / "kopflow" / "files" / "alerts.yaml"


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    return sum(v for n, lab, v in samples(text) if n == name and labels.items() <= lab.items())


def scrape_until(operator: Operator, ready: Callable[[str], bool], timeout: float = 10) -> str:
    """/metrics once `ready` holds. A watcher may see a run's final status before the operator
    has read the answer to the write that set it (and counted it); nothing signals that moment,
    so scrape again, a bounded number of times."""
    deadline = time.monotonic() + timeout
    text = operator.metrics()
    while not ready(text) and time.monotonic() < deadline:
        time.sleep(0.1)
        text = operator.metrics()
    return text


SERIES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported_names(text: str) -> set[str]:
    """Every series name the exposition declares, by family type (samples or not yet)."""
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SERIES.get(family.type, ("",))
    }


def workflow(name: str, *tasks: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kopflow.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"taskDefaults": {"image": "busybox"}, "tasks": list(tasks)},
    }


FAILING = workflow(
    "etl",
    {"name": "extract", "command": ["python3", "-c", "pass"]},
    {
        "name": "load",
        "dependsOn": ["extract"],
        "command": ["python3", "-c", "raise SystemExit(3)"],
        "retry": {"limit": 1, "backoff": {"seconds": 0}},
    },
)
PASSING = workflow("report", {"name": "render", "command": ["python3", "-c", "pass"]})


def test_metrics_count_a_run_once_and_rebuild_gauges_after_a_restart(
    operator: Operator, kube: Kube
) -> None:
    ns = kube.ns
    kube.create(FAILING)
    kube.create(PASSING)
    kube.run_ref("etl-1", "etl")
    kube.run_ref("report-1", "report")
    assert kube.wait_run("etl-1")["status"]["phase"] == "Failed"
    done = kube.wait_run("report-1")["status"]
    assert done["phase"] == "Succeeded"
    text = scrape_until(operator, lambda t: value(t, "kopflow_runs_total", namespace=ns) == 2)

    runs = "kopflow_runs_total"
    assert value(text, runs, namespace=ns, workflow="etl", phase="Failed") == 1
    assert value(text, runs, namespace=ns, workflow="etl", phase="Succeeded") == 0
    assert value(text, runs, namespace=ns, workflow="report", phase="Succeeded") == 1
    assert value(text, "kopflow_run_duration_seconds_count", namespace=ns, workflow="etl") == 1
    attempts = "kopflow_task_attempts_total"
    assert value(text, attempts, namespace=ns, task="extract", result="succeeded") == 1
    assert value(text, attempts, namespace=ns, task="load", result="failed") == 2
    assert value(text, "kopflow_task_retries_total", namespace=ns, task="load") == 1
    assert value(text, "kopflow_task_duration_seconds_count", namespace=ns, task="load") == 2
    assert value(text, "kopflow_runs_active", namespace=ns) == 0
    success = value(text, "kopflow_workflow_last_success_timestamp_seconds", workflow="report")
    assert success > 0
    assert value(text, "kopflow_leader") == 1
    assert value(text, "kopflow_build_info") == 1
    # kopflow's client counts its requests (Job creation, reads) and its Job and Pod watches
    # (Workflows and runs are kopf's watches)
    assert value(text, "kopflow_api_requests_total", verb="POST", code="201") >= 3
    assert value(text, "kopflow_api_requests_total", verb="GET", code="200") >= 2
    assert value(text, "kopflow_api_requests_total", verb="WATCH", code="200") >= 2
    assert value(text, "kopflow_reconcile_duration_seconds_count") >= 3
    # the collector's pauses, from start-up on (its settling is one full collection)
    assert value(text, "kopflow_gc_pause_seconds_count", generation="2") >= 1
    label_values = {v for _, labels, _ in samples(text) for v in labels.values()}
    assert not {"etl-1", "report-1"} & label_values  # never a run name

    # the dashboard and the alerts ask only for metrics that exist
    names = exported_names(text)
    for source in (DASHBOARD, ALERTS):
        wanted = set(re.findall(r"\bkopflow_[a-z0-9_]+", source.read_text()))
        assert wanted, source
        missing = sorted(wanted - names)
        assert not missing, f"{source.name} queries metrics the operator does not export"

    operator.kill()
    operator.start()
    kube.run_ref("etl-2", "etl")
    assert kube.wait_run("etl-2")["status"]["phase"] == "Failed"
    text = scrape_until(operator, lambda t: value(t, "kopflow_runs_total", namespace=ns) >= 1)
    # the finished runs are not counted again; the gauges are rebuilt from the resources
    assert value(text, "kopflow_runs_total", namespace=ns, workflow="etl", phase="Failed") == 1
    assert value(text, "kopflow_runs_total", workflow="report", phase="Succeeded") == 0
    assert (
        value(text, "kopflow_workflow_last_success_timestamp_seconds", workflow="report") == success
    )
    assert value(text, "kopflow_leader") == 1
