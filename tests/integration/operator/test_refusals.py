"""Every refusal becomes a visible failure: Jobs the API refuses, pods that never start.

A refused Job ends its attempt Failed (JobRejected, the API's words, an Event), then the
task's retry policy applies; a pod refused at admission or stuck waiting fails after the
task's podPendingTimeoutSeconds, and its Job is deleted.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from tests.integration.operator.conftest import Kube, Operator
from tests.integration.operator.test_semantics import run_doc, sleeper

RETRY_ONCE = {"limit": 1, "backoff": {"seconds": 1}}


def task_of(run: dict[str, Any], task: str = "t") -> dict[str, Any]:
    status: dict[str, Any] = run["status"]["tasks"][task]
    return status


@pytest.mark.emulator_only("webhook-style denials are injected by the emulator")
def test_a_job_a_webhook_denies_fails_its_attempt_visibly_then_is_retried(
    operator: Operator, kube: Kube
) -> None:
    kube.server.faults.configure(
        deny=1.0, deny_message="team policy", verbs={"create"}, resources={"jobs.batch"}
    )
    kube.create(run_doc("denied", {"tasks": [sleeper("t", 0, retry=RETRY_ONCE)]}))
    retrying = task_of(kube.wait_task("denied", "t", "Retrying", timeout=30))
    assert retrying["reason"] == "JobRejected"
    assert (
        'admission webhook "deny.kopflow.test" denied the request: team policy'
        in (retrying["message"])
    )
    kube.wait_event("denied", "JobRejected")
    kube.server.faults.clear()
    run = kube.wait_run("denied", timeout=30)
    t = task_of(run)
    assert (run["status"]["phase"], t["attempts"]) == ("Succeeded", 2)
    assert [a["reason"] for a in t["history"]] == ["JobRejected", "Completed"]


@pytest.mark.real_only("the emulator validates no pod spec and enforces no ResourceQuota")
def test_jobs_the_api_refuses_fail_the_run_and_only_a_quota_is_retried(
    operator: Operator, kube: Kube
) -> None:
    bad = [{"key": "a", "operator": "Sometimes", "effect": "NoSchedule"}]
    tasks = [sleeper("t", 0, retry={"limit": 3}, tolerations=bad)]
    kube.create(run_doc("invalid", {"tasks": tasks}))
    run = kube.wait_run("invalid", timeout=30)
    t = task_of(run)
    assert (run["status"]["phase"], t["reason"], t["attempts"]) == ("Failed", "JobRejected", 1)
    assert "(422)" in t["message"] and "Unsupported value" in t["message"]
    kube.wait_event("invalid", "JobRejected")

    quota = {"metadata": {"name": "no-jobs"}, "spec": {"hard": {"count/jobs.batch": "0"}}}
    kube.core.create_namespaced_resource_quota(kube.ns, quota)
    deadline = time.monotonic() + 30
    while not (kube.core.read_namespaced_resource_quota("no-jobs", kube.ns).status.hard or {}):
        assert time.monotonic() < deadline, "the quota controller never filled in the quota"
        time.sleep(0.2)  # nothing to watch: the Cache fixture watches no quotas
    kube.create(run_doc("quota", {"tasks": [sleeper("t", 0, retry=RETRY_ONCE)]}))
    run = kube.wait_run("quota", timeout=30)
    t = task_of(run)
    assert (run["status"]["phase"], t["reason"], t["attempts"]) == ("Failed", "JobRejected", 2)
    assert "(403)" in t["message"] and "exceeded quota" in t["message"]
    assert [a["reason"] for a in t["history"]] == ["JobRejected", "JobRejected"]
    assert kube.jobs() == []


def test_a_pod_that_is_refused_fails_after_its_pending_timeout_and_its_job_goes(
    operator: Operator, kube: Kube
) -> None:
    """The Job controller cannot create the pod (no such ServiceAccount): FailedCreate."""
    spec = {"serviceAccountName": "ghost", "tasks": [sleeper("t", 0, podPendingTimeoutSeconds=3)]}
    kube.create(run_doc("nosa", spec))
    run = kube.wait_run("nosa", timeout=30)
    t = task_of(run)
    assert (run["status"]["phase"], t["reason"]) == ("Failed", "FailedCreate")
    assert "podPendingTimeoutSeconds=3" in t["message"]
    assert 'serviceaccount "ghost" not found' in t["message"]
    kube.wait(lambda: not kube.watched_jobs(), 30, "the refused attempt's Job deleted")


def test_a_missing_secret_waits_for_it_instead_of_failing_at_once(
    operator: Operator, kube: Kube
) -> None:
    env_from = [{"secretRef": {"name": "late"}}]
    tasks = [sleeper("t", 0, envFrom=env_from, podPendingTimeoutSeconds=60)]
    kube.create(run_doc("patient", {"tasks": tasks}))

    def waiting() -> bool:
        for pod in kube.watched_pods():
            for c in (pod.get("status") or {}).get("containerStatuses") or ():
                if ((c.get("state") or {}).get("waiting") or {}).get(
                    "reason"
                ) == "CreateContainerConfigError":
                    return True
        return False

    kube.wait(waiting, 30, "the pod waiting for its Secret")
    assert task_of(kube.run("patient"))["phase"] == "Running"
    kube.core.create_namespaced_secret(
        kube.ns, {"metadata": {"name": "late"}, "stringData": {"K": "v"}}
    )
    run = kube.wait_run("patient", timeout=60)
    assert run["status"]["phase"] == "Succeeded", run["status"].get("message")

    tasks = [sleeper("t", 0, envFrom=[{"secretRef": {"name": "never"}}])]
    kube.create(
        run_doc(
            "stuck",
            {"tasks": tasks, "taskDefaults": {"podPendingTimeoutSeconds": 2, "image": "busybox"}},
        )
    )
    run = kube.wait_run("stuck", timeout=30)
    t = task_of(run)
    assert (run["status"]["phase"], t["reason"]) == ("Failed", "CreateContainerConfigError")
    assert '"never" not found' in t["message"]


@pytest.mark.real_only("Pod Security admission")
def test_a_pod_pod_security_refuses_fails_with_the_admission_message(
    operator: Operator, kube: Kube
) -> None:
    kube.core.patch_namespace(
        kube.ns, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    kube.create(run_doc("psa", {"tasks": [sleeper("t", 0, podPendingTimeoutSeconds=3)]}))
    run = kube.wait_run("psa", timeout=30)
    t = task_of(run)
    assert (run["status"]["phase"], t["reason"]) == ("Failed", "FailedCreate")
    assert 'violates PodSecurity "restricted:latest"' in t["message"]
    kube.wait(lambda: not kube.watched_jobs(), 30, "the refused attempt's Job deleted")


def test_a_status_write_from_a_stale_view_is_refused_and_recomputed(
    operator: Operator, kube: Kube
) -> None:
    """Another writer changed the status while a task ran: the operator's next merge patch
    (fenced by resourceVersion) is refused, and it recomputes from what the server holds."""
    kube.create(run_doc("fenced", {"tasks": [sleeper("t", 1)]}))
    kube.wait_task("fenced", "t", "Running", timeout=30)
    kube.custom.patch_namespaced_custom_object_status(
        "kopflow.dev", "v1alpha1", kube.ns, "workflowruns", "fenced", {"status": {"message": "x"}}
    )
    run = kube.wait_run("fenced", timeout=30)
    assert run["status"]["phase"] == "Succeeded"
    # recomputed from the server's status: an unfenced patch against the operator's own last
    # write would have left the other writer's message in place
    assert "message" not in run["status"]


@pytest.mark.real_only("the scheduler (the emulator puts every pod on its one node)")
def test_an_unschedulable_pod_fails_after_its_pending_timeout_with_the_schedulers_words(
    operator: Operator, kube: Kube
) -> None:
    tasks = [sleeper("t", 0, nodeSelector={"kopflow.test/nowhere": "x"})]
    kube.create(
        run_doc(
            "nowhere",
            {"tasks": tasks, "taskDefaults": {"image": "busybox", "podPendingTimeoutSeconds": 3}},
        )
    )
    run = kube.wait_run("nowhere", timeout=30)
    t = task_of(run)
    assert (run["status"]["phase"], t["reason"]) == ("Failed", "Unschedulable")
    assert "didn't match Pod's node affinity/selector" in t["message"]
    kube.wait(lambda: not kube.watched_jobs(), 30, "the unschedulable attempt's Job deleted")
