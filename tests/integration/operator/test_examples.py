"""Every example runs to its expected end under the operator, with the status users read."""

from __future__ import annotations

from typing import Any

import pytest
from tests.integration.operator.conftest import Kube, Operator
from tests.support import kubectl

from kopflow.engine.naming import job_name


def _tasks(run: dict[str, Any]) -> dict[str, Any]:
    return run["status"]["tasks"]  # type: ignore[no-any-return]


def test_hello_runs_and_reports_status_conditions_and_events(
    operator: Operator, kube: Kube
) -> None:
    (created,) = kube.create_file("hello.yaml")
    name = created["metadata"]["name"]
    run = kube.wait_run(name)
    status = run["status"]
    assert status["phase"] == "Succeeded" and status["progress"] == "1/1"
    assert status["parameters"] == {"who": "world"}
    assert "workflow" not in status and "workflowSnapshot" not in status  # stored once: spec
    (cond,) = status["conditions"]
    assert cond["type"] == "Succeeded" and cond["status"] == "True"
    assert cond["observedGeneration"] == run["metadata"]["generation"]
    assert status["duration"].endswith("s")
    kube.wait_event(name, "RunSucceeded")
    reasons = [reason for _, reason, _ in kube.events(name)]
    assert "TaskSucceeded" in reasons and "RunSucceeded" in reasons


def test_etl_diamond_passes_outputs_and_skips_by_when(operator: Operator, kube: Kube) -> None:
    kube.create_file("etl.yaml")
    (created,) = kube.create_file("etl-run.yaml")
    run = kube.wait_run(created["metadata"]["name"])
    assert run["status"]["phase"] == "Succeeded"
    tasks = _tasks(run)
    rows = int(tasks["extract"]["outputs"]["rows"])
    assert tasks["clean"]["outputs"] == {"rows": str(rows * 9 // 10)}
    assert tasks["enrich"]["outputs"] == {"columns": "12"}
    assert tasks["vacuum"]["phase"] == "Skipped" and tasks["vacuum"]["reason"] == "WhenFalse"
    assert run["status"]["parameters"] == {"date": "2026-02-14", "mode": "incremental"}


def test_flaky_succeeds_on_the_third_attempt(operator: Operator, kube: Kube) -> None:
    kube.create_file("flaky.yaml")
    run = kube.run_ref("flaky-1", "flaky")
    done = kube.wait_run(run["metadata"]["name"])
    task = _tasks(done)["unreliable"]
    assert done["status"]["phase"] == "Succeeded"
    assert task["attempts"] == 3
    assert [a["exitCode"] for a in task["history"]] == [3, 3, 0]
    assert "nextRetryAt" not in task  # cleared on the server, not left behind by the merge
    uid = done["metadata"]["uid"]
    attempts = [job_name("flaky-1", "unreliable", n, uid) for n in (1, 2, 3)]
    assert set(attempts) <= set(kube.created_jobs)
    # a failed attempt's Job stays (its pod log is `kopflow logs --attempt N`), so every
    # attempt's Job is there, once
    names = sorted(j["metadata"]["name"] for j in kube.jobs())
    assert names == sorted([job_name("flaky-1", "after", 1, uid), *attempts])


def test_the_job_is_what_the_cluster_needs(operator: Operator, kube: Kube) -> None:
    (created,) = kube.create_file("hello.yaml")
    name = created["metadata"]["name"]
    kube.wait_run(name)
    (job,) = kube.jobs()
    meta, spec = job["metadata"], job["spec"]
    assert meta["name"] == job_name(name, "greet", 1, created["metadata"]["uid"])
    assert meta["name"].startswith(f"{name}-greet-")
    assert meta["labels"]["kopflow.dev/run"] == name
    assert meta["labels"]["kopflow.dev/task"] == "greet"
    assert meta["labels"]["kopflow.dev/attempt"] == "1"
    (owner,) = meta["ownerReferences"]
    assert owner["kind"] == "WorkflowRun" and owner["uid"] == created["metadata"]["uid"]
    assert owner["controller"] is True
    assert spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "python:3.12-slim"
    assert container["args"] == ["world"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KOPFLOW_PARAM_WHO"] == "world" and env["KOPFLOW_RUN"] == name


def test_kubectl_get_wfr_shows_phase_progress_duration(operator: Operator, kube: Kube) -> None:
    kube.create_file("etl.yaml")
    (created,) = kube.create_file("etl-run.yaml")
    name = created["metadata"]["name"]
    kube.wait_run(name)
    out = kubectl.lines(kube.cluster.admin_kubeconfig, "get", "wfr", "-n", kube.ns)
    assert out[0].split() == ["NAME", "PHASE", "PROGRESS", "DURATION", "AGE"]
    row = out[1].split()
    assert row[:3] == [name, "Succeeded", "5/5"] and row[3].endswith("s")
    wf = kubectl.lines(kube.cluster.admin_kubeconfig, "get", "wf", "-n", kube.ns)
    assert wf[0].split()[:3] == ["NAME", "SCHEDULE", "SUSPENDED"]


@pytest.mark.emulator_only("reads the request log; on the real server RBAC grants neither")
def test_the_operator_never_reads_secrets_or_logs(operator: Operator, kube: Kube) -> None:
    kube.create_file("etl.yaml")
    (created,) = kube.create_file("etl-run.yaml")
    kube.wait_run(created["metadata"]["name"])
    touched = {resource for (_, resource) in kube.server.requests.counts}
    assert not {r for r in touched if r.startswith("secrets") or r.endswith("/log")}
    configmaps = {
        verb for (verb, resource) in kube.server.requests.counts if resource == "configmaps"
    }
    # its own cache entries: by name, and listed by their label to delete the expired ones
    assert configmaps <= {"get", "create", "patch", "list", "delete"}


def test_editing_a_workflow_never_changes_a_started_run(operator: Operator, kube: Kube) -> None:
    kube.create_file("flaky.yaml")
    kube.run_ref("pinned", "flaky")
    kube.wait_task("pinned", "unreliable", "Retrying")
    kube.custom.patch_namespaced_custom_object(
        "kopflow.dev",
        "v1alpha1",
        kube.ns,
        "workflows",
        "flaky",
        {"spec": {"tasks": [{"name": "other", "command": ["true"]}]}},
    )
    run = kube.wait_run("pinned")
    assert run["status"]["phase"] == "Succeeded"
    assert set(run["status"]["tasks"]) == {"unreliable", "after"}


def test_a_scheduled_workflow_can_also_be_run_by_hand(operator: Operator, kube: Kube) -> None:
    kube.create_file("cron.yaml")
    kube.run_ref("manual", "nightly-report")
    run = kube.wait_run("manual")
    assert run["status"]["phase"] == "Succeeded"
    # {{ schedule.date }} of a run by hand is the day it started
    assert run["status"]["parameters"]["day"] == run["status"]["startedAt"][:10]


def test_a_second_run_with_the_same_inputs_reuses_the_cached_result(
    operator: Operator, kube: Kube
) -> None:
    kube.create_file("etl.yaml")
    first = kube.wait_run(kube.run_ref("first", "etl", date="2026-03-01")["metadata"]["name"])
    assert first["status"]["phase"] == "Succeeded"
    assert not first["status"]["tasks"]["extract"].get("cached")
    second = kube.wait_run(kube.run_ref("second", "etl", date="2026-03-01")["metadata"]["name"])
    extract = second["status"]["tasks"]["extract"]
    assert second["status"]["phase"] == "Succeeded"
    assert extract["cached"] is True and extract["phase"] == "Succeeded"
    assert extract["outputs"] == first["status"]["tasks"]["extract"]["outputs"]
    assert not [n for n in kube.created_jobs if n.startswith("second-extract")]  # nothing ran
    assert (
        second["status"]["tasks"]["clean"]["outputs"]
        == first["status"]["tasks"]["clean"]["outputs"]
    )
    other = kube.wait_run(kube.run_ref("other", "etl", date="2026-03-02")["metadata"]["name"])
    assert not other["status"]["tasks"]["extract"].get("cached")  # another key: it ran
