"""podTemplate end to end without a cluster: manifest -> merged task -> Job, and the errors and
warnings `kopflow validate` gives with field paths."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from kopflow.engine.podchecks import document_warnings
from kopflow.engine.reconcile import reconcile
from kopflow.engine.state import RunState
from kopflow.engine.validation import parse_workflow, validate_document
from kopflow.executors.kubernetes import build_job

RUN = {"metadata": {"name": "r", "namespace": "data", "uid": "u-1"}}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def workflow(defaults: dict[str, Any] | None = None, **task: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"tasks": [{"name": "t", "command": ["true"], **task}]}
    spec["taskDefaults"] = {"image": "busybox", **(defaults or {})}
    return {
        "apiVersion": "kopflow.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "w"},
        "spec": spec,
    }


def job_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The Job the operator would create for the first task's first attempt."""
    wf, issues = parse_workflow(doc)
    assert wf is not None and not issues, issues
    state = RunState(name="r", namespace="data", spec=wf.spec, parameters={}, status=None)
    (launch,) = reconcile(state, {}, {}, NOW).launches
    return build_job(launch, RUN)


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return job_of(doc)["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def test_without_a_template_the_pod_keeps_the_safe_defaults() -> None:
    spec = pod_spec(workflow())
    assert spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert spec["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["automountServiceAccountToken"] is False
    assert "initContainers" not in spec


def test_task_template_merges_over_defaults_field_by_field() -> None:
    defaults = {
        "podTemplate": {
            "metadata": {"labels": {"team": "data", "tier": "x"}, "annotations": {"a": "1"}},
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 2000},
            "containerSecurityContext": {"readOnlyRootFilesystem": True},
            "priorityClassName": "batch-low",
            "imagePullSecrets": [{"name": "one"}, {"name": "two"}],
            "serviceAccountName": "default-runner",
        }
    }
    task = {
        "podTemplate": {
            "metadata": {"labels": {"tier": "gold"}},
            "securityContext": {"runAsUser": 65532},
            "containerSecurityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}},
            "imagePullSecrets": [{"name": "three"}],
            "serviceAccountName": "task-runner",
            "runtimeClassName": "gvisor",
            "jobTtlSecondsAfterFinished": 0,
        }
    }
    job = job_of(workflow(defaults, **task))
    template = job["spec"]["template"]
    spec = template["spec"]
    assert template["metadata"]["labels"]["team"] == "data"
    assert template["metadata"]["labels"]["tier"] == "gold"
    assert template["metadata"]["annotations"] == {"a": "1"}
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "fsGroup": 2000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["imagePullSecrets"] == [{"name": "three"}]  # lists are replaced whole
    assert spec["priorityClassName"] == "batch-low" and spec["runtimeClassName"] == "gvisor"
    assert spec["serviceAccountName"] == "task-runner"
    assert "automountServiceAccountToken" not in spec
    assert job["spec"]["ttlSecondsAfterFinished"] == 0


def test_kopflow_labels_win_and_reserved_keys_are_refused() -> None:
    job = job_of(workflow({"podTemplate": {"metadata": {"labels": {"app": "etl"}}}}))
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "etl" and labels["kopflow.dev/task"] == "t"
    bad = workflow({"podTemplate": {"metadata": {"labels": {"kopflow.dev/task": "other"}}}})
    (issue,) = validate_document(bad)
    assert issue.path == "spec.taskDefaults.podTemplate.metadata.labels"
    assert "kopflow.dev/task" in issue.message


def test_explicit_overrides_of_the_safe_defaults_are_honoured() -> None:
    template = {
        "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}},
        "containerSecurityContext": {"privileged": True, "capabilities": {"drop": []}},
    }
    spec = pod_spec(workflow({"podTemplate": template}))
    assert spec["securityContext"]["seccompProfile"] == {
        "type": "Localhost",
        "localhostProfile": "p.json",
    }
    # privileged without allowPrivilegeEscalation: the default false would make the API
    # server refuse the Job ("cannot set allowPrivilegeEscalation to false and privileged")
    assert spec["containers"][0]["securityContext"] == {
        "capabilities": {"drop": []},
        "privileged": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_sidecars_are_native_init_containers_with_safe_defaults() -> None:
    sidecar = {
        "name": "proxy",
        "image": "envoy:1",
        "args": ["--port", "9901"],
        "ports": [{"containerPort": 9901}],
        "securityContext": {"runAsUser": 1337},
    }
    template = {"sidecars": [sidecar], "containerSecurityContext": {"runAsNonRoot": True}}
    (init,) = pod_spec(workflow({"podTemplate": template}))["initContainers"]
    assert init["restartPolicy"] == "Always" and init["name"] == "proxy"
    assert init["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 1337,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_volumes_merge_by_name_and_mounts_by_path() -> None:
    defaults = {
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "shared"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    task = {
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "mine"}},
            {"name": "creds", "secret": {"secretName": "c", "items": [{"key": "k", "path": "t"}]}},
        ],
        "volumeMounts": [{"name": "creds", "mountPath": "/creds", "readOnly": True}],
    }
    spec = pod_spec(workflow(defaults, **task))
    assert spec["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "mine"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "creds", "secret": {"secretName": "c", "items": [{"key": "k", "path": "t"}]}},
    ]
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "data", "mountPath": "/data"},
        {"name": "creds", "mountPath": "/creds", "readOnly": True},
    ]


BAD = {
    "affinity operator": (
        {
            "podTemplate": {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "zone", "operator": "Equals"}]}
                            ]
                        }
                    }
                }
            }
        },
        "spec.taskDefaults.podTemplate.affinity.nodeAffinity."
        "requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]"
        ".operator",
    ),
    "negative user": (
        {"podTemplate": {"securityContext": {"runAsUser": -1}}},
        "spec.taskDefaults.podTemplate.securityContext.runAsUser",
    ),
    "two volume sources": (
        {"volumes": [{"name": "v", "emptyDir": {}, "secret": {"secretName": "s"}}]},
        "spec.taskDefaults.volumes[0]",
    ),
    "relative mount path": (
        {"volumeMounts": [{"name": "v", "mountPath": "data"}]},
        "spec.taskDefaults.volumeMounts[0].mountPath",
    ),
    "hostPath volume": (
        {"volumes": [{"name": "v", "hostPath": {"path": "/"}}]},
        "spec.taskDefaults.volumes[0].hostPath",
    ),
    "sidecar named main": (
        {"podTemplate": {"sidecars": [{"name": "main", "image": "x"}]}},
        "spec.taskDefaults.podTemplate.sidecars[0].name",
    ),
    "mount of an unknown volume": (
        {"volumeMounts": [{"name": "nope", "mountPath": "/x"}]},
        "spec.tasks[0].volumeMounts[0].name",
    ),
    "escalation contradiction": (
        {
            "podTemplate": {
                "containerSecurityContext": {
                    "privileged": True,
                    "allowPrivilegeEscalation": False,
                }
            }
        },
        "spec.taskDefaults.podTemplate.containerSecurityContext",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_validate_names_the_field_of_a_bad_pod_setting(case: str) -> None:
    defaults, path = BAD[case]
    issues = validate_document(workflow(copy.deepcopy(defaults)))
    assert [i.path for i in issues] == [path], issues


def test_validate_warns_about_what_pod_security_restricted_refuses() -> None:
    doc = workflow(
        {"podTemplate": {"securityContext": {"runAsUser": 0}}},
        podTemplate={"containerSecurityContext": {"privileged": True}},
    )
    assert validate_document(doc) == []  # valid: many namespaces do not enforce restricted
    warnings = document_warnings(doc)
    assert [w.path for w in warnings] == [
        "spec.taskDefaults.podTemplate.securityContext.runAsUser",
        "spec.tasks[0].podTemplate.containerSecurityContext.privileged",
    ]
    assert all("Pod Security restricted" in w.message for w in warnings)
    safe = workflow({"podTemplate": {"securityContext": {"runAsNonRoot": True, "runAsUser": 7}}})
    assert document_warnings(safe) == []
