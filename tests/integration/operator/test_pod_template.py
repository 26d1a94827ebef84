"""podTemplate, volumes and Secrets under the operator: what reaches the pod, and what a real
server with Pod Security admission and the chart's RBAC makes of it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from tests.integration.operator.conftest import OPERATOR_SA, ROOT, Kube, Operator

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
NON_ROOT = {"runAsNonRoot": True, "runAsUser": 65532}


def _restrict(kube: Kube) -> None:
    kube.core.patch_namespace(kube.ns, {"metadata": {"labels": RESTRICTED}})


def _with_template(doc: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The document with `template` as its taskDefaults.podTemplate (inline workflows too)."""
    doc = copy.deepcopy(doc)
    spec = doc["spec"]["workflow"] if doc["kind"] == "WorkflowRun" else doc["spec"]
    spec.setdefault("taskDefaults", {})["podTemplate"] = template
    return doc


def _example(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "examples" / name).read_text()) if d]


def _pod_of(kube: Kube, run: str, task: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        for pod in kube.watched_pods():
            labels = pod["metadata"].get("labels") or {}
            if labels.get("kopflow.dev/run") == run and labels.get("kopflow.dev/task") == task:
                return pod
        return None

    pod: dict[str, Any] = kube.wait(found, 30, f"pod of {run}/{task}")
    return pod


def test_pod_template_reaches_the_pod_and_the_server_accepts_it(
    operator: Operator, kube: Kube
) -> None:
    kube.core.create_namespaced_service_account(kube.ns, {"metadata": {"name": "task-runner"}})
    template = {
        "metadata": {"labels": {"team": "data"}, "annotations": {"example.com/inject": "yes"}},
        "serviceAccountName": "task-runner",
        "securityContext": {**NON_ROOT, "fsGroup": 65532},
        "containerSecurityContext": {"readOnlyRootFilesystem": True},
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 10,
                        "preference": {
                            "matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "Exists"}
                            ]
                        },
                    }
                ]
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"team": "data"}},
            }
        ],
        "imagePullSecrets": [{"name": "registry"}],
        "sidecars": [{"name": "proxy", "image": "busybox:1.36", "command": ["sleep", "3600"]}],
        "jobTtlSecondsAfterFinished": 600,
    }
    (doc,) = _example("hello.yaml")
    doc = _with_template(doc, template)
    doc["spec"]["workflow"]["tasks"][0]["podTemplate"] = {
        "metadata": {"labels": {"tier": "batch"}},
        "containerSecurityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}},
    }
    created = kube.create(doc)
    name = created["metadata"]["name"]
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    pod = _pod_of(kube, name, "greet")
    labels = pod["metadata"]["labels"]
    assert labels["team"] == "data" and labels["tier"] == "batch"  # merged by key
    assert pod["metadata"]["annotations"]["example.com/inject"] == "yes"
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "task-runner"
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (main,) = spec["containers"]
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (sidecar,) = spec["initContainers"]
    assert sidecar["name"] == "proxy" and sidecar["restartPolicy"] == "Always"
    assert sidecar["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert "nodeAffinity" in spec["affinity"]
    (job,) = kube.jobs()
    assert job["spec"]["ttlSecondsAfterFinished"] == 600


def _report_storage(kube: Kube, folder: Path) -> str:
    """A hostPath PersistentVolume at `folder`, pre-bound to the claim report-data (what a
    one-node cluster's local provisioner gives); returns the PV's name."""
    pv = f"report-{kube.ns}"
    kube.core.create_persistent_volume(
        {
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": kube.ns,
                "hostPath": {"path": str(folder), "type": "DirectoryOrCreate"},
                "claimRef": {"namespace": kube.ns, "name": "report-data"},
            },
        }
    )
    kube.core.create_namespaced_persistent_volume_claim(
        kube.ns,
        {
            "metadata": {"name": "report-data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": kube.ns,
                "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    return pv


def _can(kube: Kube, verb: str, resource: str) -> bool:
    """Whether the operator's ServiceAccount may `verb` `resource` in the namespace."""
    review = kubernetes.client.AuthorizationV1Api(kube.cluster.client).create_subject_access_review(
        {
            "spec": {
                "user": f"system:serviceaccount:{kube.ns}:{OPERATOR_SA}",
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{kube.ns}"],
                "resourceAttributes": {"namespace": kube.ns, "verb": verb, "resource": resource},
            }
        }
    )
    return bool(review.status.allowed)


@pytest.mark.real_only("Pod Security admission, PersistentVolume binding and RBAC reviews")
def test_volumes_example_reads_a_secret_it_cannot_see_under_restricted(
    operator: Operator, kube: Kube, tmp_path: Path
) -> None:
    assert not any(_can(kube, verb, "secrets") for verb in ("get", "list", "watch"))
    _restrict(kube)
    kube.core.create_namespaced_secret(
        kube.ns, {"metadata": {"name": "report-creds"}, "stringData": {"token": "s3cret"}}
    )
    kube.core.create_namespaced_config_map(
        kube.ns, {"metadata": {"name": "report-config"}, "data": {"greeting": "hello"}}
    )
    folder = tmp_path / "pv"
    pv = _report_storage(kube, folder)
    try:
        kube.create_file("volumes.yaml")
        kube.run_ref("report-1", "report")
        run = kube.wait_run("report-1")
        assert run["status"]["phase"] == "Succeeded", run["status"]
        line = "hello from report-1; token as env and file agree: yes"
        assert run["status"]["tasks"]["read"]["outputs"] == {"line": line}
        assert (folder / "report.txt").read_text() == line + "\n"
        assert _pod_of(kube, "report-1", "write")["metadata"]["labels"]["team"] == "data"
    finally:
        kube.core.delete_persistent_volume(pv)


@pytest.mark.real_only("Pod Security admission")
def test_examples_run_in_a_restricted_namespace_as_non_root(operator: Operator, kube: Kube) -> None:
    _restrict(kube)
    names = []
    for file in ("hello.yaml", "etl.yaml", "etl-run.yaml", "flaky.yaml"):
        for doc in _example(file):
            if doc["kind"] == "Workflow" or "workflow" in doc["spec"]:
                doc = _with_template(doc, {"securityContext": NON_ROOT})
            created = kube.create(doc)
            if doc["kind"] == "WorkflowRun":
                names.append(created["metadata"]["name"])
    names.append(kube.run_ref("flaky-1", "flaky")["metadata"]["name"])
    for name in names:
        run = kube.wait_run(name, timeout=90)
        assert run["status"]["phase"] == "Succeeded", (name, run["status"])


@pytest.mark.real_only("Pod Security admission")
def test_a_template_breaking_restricted_fails_the_attempt_with_the_admission_message(
    operator: Operator, kube: Kube
) -> None:
    _restrict(kube)
    template = {"securityContext": NON_ROOT, "containerSecurityContext": {"privileged": True}}
    (doc,) = _example("hello.yaml")
    doc = _with_template(doc, template)
    doc["spec"]["workflow"]["taskDefaults"]["podPendingTimeoutSeconds"] = 2
    name = kube.create(doc)["metadata"]["name"]
    run = kube.wait_run(name, timeout=30)
    assert run["status"]["phase"] == "Failed"
    assert "violates PodSecurity" in run["status"]["tasks"]["greet"]["message"]


def test_a_bad_affinity_the_crd_keeps_makes_the_run_invalid_naming_the_field(
    operator: Operator, kube: Kube
) -> None:
    """The CRD keeps affinity as written (see api/crd.py); the operator's validation types it."""
    affinity = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{}]}}
    (doc,) = _example("hello.yaml")
    name = kube.create(_with_template(doc, {"affinity": affinity}))["metadata"]["name"]
    run = kube.wait_run(name, "Invalid", timeout=30)
    field = (
        "spec.workflow.taskDefaults.podTemplate.affinity.podAntiAffinity."
        "requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey"
    )
    assert field in run["status"]["message"], run["status"]
    assert not kube.jobs()
