"""Least privilege, measured: every rule of the chart (helm/kopflow/files/rbac-rules.yaml) is
used by the operator in a representative set of scenarios, rare paths included.

A missing rule already fails every operator test (the operator runs under exactly these rules
and any 403 fails the test); this is the other direction: a rule nobody exercises is listed, so
it is either justified by a scenario here or removed from the chart.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration.operator.conftest import OPERATOR_SA, RBAC_RULES, Cluster, Kube, Operator
from tests.integration.operator.test_cache import entry_exists, expired_entry
from tests.integration.operator.test_schedules import RATE, SLOT, created, scheduled
from tests.integration.operator.test_semantics import PY, run_doc, sleeper

from kopflow.controller.kube import CACHE_LABEL
from kopflow.engine.naming import job_name


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(verb, resource) pairs the rules allow, resources named as the request log names them
    ("pods", "jobs.batch", "workflowruns.kopflow.dev/status")."""
    out = set()
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                plural, _, sub = resource.partition("/")
                name = f"{plural}.{group}" if group else plural
                for verb in rule["verbs"]:
                    out.add((verb, f"{name}/{sub}" if sub else name))
    return out


def premade_job(run: dict[str, Any], task: str) -> dict[str, Any]:
    """The Job the operator will create for the task's first attempt, owned by the run (as a
    crashed operator would have left it)."""
    meta = run["metadata"]
    name = job_name(meta["name"], task, 1, meta["uid"])
    pod = {"restartPolicy": "Never", "containers": [{"name": "task", "image": "python:3.12-slim",
           "command": [PY, "-c", "pass"]}]}  # fmt: skip
    owner = {"apiVersion": "kopflow.dev/v1alpha1", "kind": "WorkflowRun", "name": meta["name"],
             "uid": meta["uid"], "controller": True}  # fmt: skip
    return {
        "metadata": {"name": name, "ownerReferences": [owner],
                     "labels": {"kopflow.dev/run": meta["name"], "kopflow.dev/task": task}},
        "spec": {"backoffLimit": 0, "template": {"spec": pod}},
    }  # fmt: skip


@pytest.mark.emulator_only("reads the request log by user")
def test_every_rule_is_used_by_some_scenario(cluster: Cluster, kube: Kube, tmp_path: Path) -> None:
    # Leader election (leases) and a fast schedule clock (a schedule's runs) in one operator.
    op = Operator(
        cluster, tmp_path / "operator.log", "--leader-elect", "--lease-seconds", "5",
        "--clock-anchor", str(time.time()), "--clock-rate", str(RATE),
    )  # fmt: skip
    op.start()
    try:
        kube.create_file("hello.yaml")  # Jobs, pods, Events, run status
        kube.run_ref("early", "not-yet")  # a Workflow the watch has not shown: read (get)
        kube.create_file("etl.yaml")  # a Workflow: its status; cached results (ConfigMaps)
        kube.run_ref("first", "etl", date="2026-03-01")
        kube.create_file("flaky.yaml")  # retries delete the failed attempt's Job
        kube.run_ref("flaky-1", "flaky")
        kube.create(run_doc("ttl", {"ttlSecondsAfterFinished": 1, "tasks": [sleeper("a", 0)]}))
        spec = {"serviceAccountName": "ghost",
                "tasks": [sleeper("t", 0, podPendingTimeoutSeconds=2)]}  # fmt: skip
        kube.create(run_doc("nosa", spec))  # FailedCreate, read from Events by field selector
        kube.create(scheduled("swap", sleep=30, concurrencyPolicy="Replace"))  # create, cancel
        # A relaunch finds its Job already there (409): it reads the Job and adopts it.
        adopt = kube.create(run_doc("adopt", {"tasks": [sleeper("a", 1), sleeper("b", 0,
                                                        dependsOn=["a"])]}))  # fmt: skip
        kube.batch.create_namespaced_job(kube.ns, premade_job(adopt, "b"))
        # A status write that conflicts (409) re-reads the run.
        kube.server.faults.configure(seed=3, conflict=1.0, verbs={"patch"},
                                     resources={"workflowruns.kopflow.dev"})  # fmt: skip
        kube.create(run_doc("fenced", {"tasks": [sleeper("a", 0)]}))
        kube.wait(lambda: kube.server.faults.injected["conflict"] >= 1, 30, "a conflict")
        kube.server.faults.clear()

        kube.wait_run("first", "Succeeded")
        second = kube.run_ref("second", "etl", date="2026-03-01")  # the cache hit
        kube.wait_run(second["metadata"]["name"], "Succeeded")
        # An expired cache entry is overwritten (patch) by the next run that computes it.
        for cm in kube.core.list_namespaced_config_map(kube.ns, label_selector=CACHE_LABEL).items:
            data = {"expiresAt": "2000-01-01T00:00:00Z"}
            kube.core.patch_namespaced_config_map(cm.metadata.name, kube.ns, {"data": data})
        kube.wait_run(kube.run_ref("third", "etl", date="2026-03-01")["metadata"]["name"])
        kube.wait_run("adopt", "Succeeded")
        kube.wait_run("fenced", "Succeeded")
        kube.wait_run("flaky-1", "Succeeded")
        kube.wait_run_gone("ttl")
        kube.wait_run("nosa", "Failed", timeout=30)
        kube.wait(lambda: len(created(kube, "swap")) >= 2, 6 * SLOT + 20, "two scheduled runs")
        first = created(kube, "swap")[0]
        # Deleted or not: every 3 s slot cancels the run before it, and failedRunsHistoryLimit
        # (5) deletes the first one ~18 s after its cancel, maybe before this line runs.
        try:
            kube.wait_run_ended(first, "Cancelled", timeout=30)
        except TimeoutError:
            # say whether the schedule asked (spec.cancel) and what the run's worker made of it
            body = kube.run_record(first) or {}
            print(
                f"{first}: spec.cancel={body.get('spec', {}).get('cancel')!r} generation="
                f"{body.get('metadata', {}).get('generation')} status={body.get('status')!r}"
            )
            raise
    finally:
        op.stop()
        if op.log.exists():
            print(op.log.read_text()[-8000:])
    # Expired cache entries are listed by label and deleted (an operator collecting each second).
    collector = Operator(cluster, tmp_path / "gc.log", "--cache-gc-interval", "1")
    collector.start()
    try:
        stale = expired_entry(kube, "0" * 64)
        kube.wait(lambda: not entry_exists(kube, stale), 30, "the expired entry deleted")
    finally:
        collector.stop()

    account = f"system:serviceaccount:{cluster.namespace}:{OPERATOR_SA}"
    used = {(v, r) for (u, v, r) in kube.server.requests.by_user if u == account}
    rules = granted(yaml.safe_load(RBAC_RULES.read_text()))
    unused = sorted(rules - used)
    assert not unused, f"rules of rbac-rules.yaml no scenario used: {unused}"
    resources = {(v, r) for v, r in used if not r.startswith("/")}  # not discovery URLs
    assert resources <= rules  # else the fixture would have failed the test on a 403
