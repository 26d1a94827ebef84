"""Deletion: finalizers and deletionTimestamp, owner-reference garbage collection with each
propagation policy, deletecollection and namespace termination."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
from kubernetes.client.rest import ApiException
from tests.support.apiserver import ApiServer
from tests.support.apiserver_fixtures import Raw, suspended_job


@pytest.fixture
def core(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client)


def cm(
    name: str,
    *,
    finalizers: list[str] | None = None,
    owners: list[Any] | None = None,
    **labels: str,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if finalizers:
        meta["finalizers"] = finalizers
    if owners:
        meta["ownerReferences"] = owners
    return {"metadata": meta}


def owner_ref(obj: Any, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": obj.metadata.name,
        "uid": obj.metadata.uid,
        **extra,
    }


def gone(obj: Any) -> bool:
    return obj is None


def as_dict(response: Any) -> dict[str, Any]:
    """A delete answers the object (finalizers pending) or a Status; the client returns a dict
    for the former and a typed V1Status for the latter."""
    if isinstance(response, dict):
        return response
    return dict(kubernetes.client.ApiClient().sanitize_for_serialization(response))


def test_finalizers_hold_deletion_until_removed(
    apiserver: ApiServer, core: Any, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, cm("a", finalizers=["example.com/hold"]))
    returned = as_dict(core.delete_namespaced_config_map("a", namespace))
    assert (
        returned["kind"] == "ConfigMap" and returned["metadata"]["deletionTimestamp"]
    )  # not a Status
    held = core.read_namespaced_config_map("a", namespace)
    assert held.metadata.finalizers == ["example.com/hold"] and held.metadata.deletion_timestamp
    again = as_dict(core.delete_namespaced_config_map("a", namespace))
    assert again["metadata"]["resourceVersion"] == held.metadata.resource_version
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map(
            "a", namespace, {"metadata": {"finalizers": ["example.com/hold", "new"]}}
        )
    assert err.value.status == 422
    core.patch_namespaced_config_map(
        "a", namespace, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/hold"]}}
    )
    assert apiserver.get("configmaps", namespace, "a") is None


def test_delete_preconditions(core: Any, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, cm("a"))
    for pre in ({"uid": "00000000-0000-4000-8000-000000000001"}, {"resourceVersion": "1"}):
        with pytest.raises(ApiException) as err:
            core.delete_namespaced_config_map("a", namespace, body={"preconditions": pre})
        assert err.value.status == 409
    status = as_dict(
        core.delete_namespaced_config_map(
            "a", namespace, body={"preconditions": {"uid": created.metadata.uid}}
        )
    )
    assert (status["kind"], status["status"], status["details"]["name"]) == (
        "Status",
        "Success",
        "a",
    )


@pytest.mark.parametrize("policy", ["Background", None])
def test_background_deletion_collects_dependents(
    apiserver: ApiServer, core: Any, namespace: str, policy: str | None
) -> None:
    owner = core.create_namespaced_config_map(namespace, cm("owner"))
    core.create_namespaced_config_map(
        namespace, cm("dep", owners=[owner_ref(owner, controller=True)])
    )
    core.delete_namespaced_config_map("owner", namespace, propagation_policy=policy)
    assert apiserver.get("configmaps", namespace, "owner") is None
    apiserver.wait_for("configmaps", namespace, "dep", gone)


def test_foreground_deletion_waits_for_blocking_dependents(
    apiserver: ApiServer, core: Any, namespace: str
) -> None:
    owner = core.create_namespaced_config_map(namespace, cm("owner"))
    block = owner_ref(owner, blockOwnerDeletion=True)
    core.create_namespaced_config_map(
        namespace, cm("held", finalizers=["example.com/hold"], owners=[block])
    )
    core.create_namespaced_config_map(namespace, cm("free", owners=[block]))
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Foreground")

    apiserver.wait_for("configmaps", namespace, "free", gone)
    held = apiserver.wait_for(
        "configmaps",
        namespace,
        "held",
        lambda o: bool(o and o["metadata"].get("deletionTimestamp")),
    )
    assert held is not None
    waiting = core.read_namespaced_config_map("owner", namespace)
    assert (
        waiting.metadata.finalizers == ["foregroundDeletion"]
        and waiting.metadata.deletion_timestamp
    )
    core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    apiserver.wait_for("configmaps", namespace, "owner", gone)


def test_orphan_deletion_keeps_dependents_without_the_reference(
    apiserver: ApiServer, core: Any, namespace: str
) -> None:
    owner = core.create_namespaced_config_map(namespace, cm("owner"))
    core.create_namespaced_config_map(namespace, cm("dep", owners=[owner_ref(owner)]))
    returned = as_dict(
        core.delete_namespaced_config_map("owner", namespace, propagation_policy="Orphan")
    )
    assert returned["metadata"]["finalizers"] == ["orphan"]
    apiserver.wait_for("configmaps", namespace, "owner", gone)
    dep = apiserver.wait_for(
        "configmaps",
        namespace,
        "dep",
        lambda o: bool(o) and not o["metadata"].get("ownerReferences"),
    )
    assert dep is not None


def test_dangling_owner_reference_gets_the_dependent_collected(
    apiserver: ApiServer, core: Any, namespace: str
) -> None:
    ghost = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "ghost",
        "uid": "00000000-0000-4000-8000-000000000001",
    }
    real = core.create_namespaced_config_map(namespace, cm("real"))
    core.create_namespaced_config_map(namespace, cm("half", owners=[ghost, owner_ref(real)]))
    core.create_namespaced_config_map(namespace, cm("dep", owners=[ghost]))
    apiserver.wait_for("configmaps", namespace, "dep", gone)
    half = apiserver.wait_for(
        "configmaps",
        namespace,
        "half",
        lambda o: bool(o) and len(o["metadata"]["ownerReferences"]) == 1,
    )
    assert half is not None and half["metadata"]["ownerReferences"][0]["name"] == "real"


def test_custom_resource_owner_collects_its_jobs(
    apiserver: ApiServer, api_client: Any, namespace: str
) -> None:
    custom = kubernetes.client.CustomObjectsApi(api_client)
    run = custom.create_namespaced_custom_object(
        "test.kopflow.dev",
        "v1",
        namespace,
        "widgets",
        {"metadata": {"name": "w"}, "spec": {"image": "x"}},
    )
    ref = {
        "apiVersion": "test.kopflow.dev/v1",
        "kind": "Widget",
        "name": "w",
        "uid": run["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    kubernetes.client.BatchV1Api(api_client).create_namespaced_job(
        namespace,
        suspended_job("j", ownerReferences=[ref]),
    )
    custom.delete_namespaced_custom_object("test.kopflow.dev", "v1", namespace, "widgets", "w")
    apiserver.wait_for("jobs.batch", namespace, "j", gone)


def test_deletecollection_by_selector(
    apiserver: ApiServer, core: Any, raw: Raw, namespace: str
) -> None:
    for name in ("a", "b"):
        core.create_namespaced_config_map(namespace, cm(name, grp="x"))
    core.create_namespaced_config_map(namespace, cm("c", finalizers=["example.com/hold"], grp="x"))
    core.create_namespaced_config_map(namespace, cm("d", grp="y"))
    status, body, _ = raw(
        "DELETE", f"/api/v1/namespaces/{namespace}/configmaps", query={"labelSelector": "grp=x"}
    )
    assert status == 200 and body["kind"] == "ConfigMapList"
    assert sorted(i["metadata"]["name"] for i in body["items"]) == ["a", "b", "c"]
    left = {
        o["metadata"]["name"]: bool(o["metadata"].get("deletionTimestamp"))
        for o in apiserver.list("configmaps", namespace)
    }
    assert left == {"c": True, "d": False}


def test_pods_on_a_node_delete_gracefully(core: Any, namespace: str) -> None:
    spec = {"containers": [{"name": "c", "image": "busybox"}]}
    core.create_namespaced_pod(namespace, {"metadata": {"name": "unscheduled"}, "spec": spec})
    core.create_namespaced_pod(
        namespace, {"metadata": {"name": "bound"}, "spec": {**spec, "nodeName": "n1"}}
    )
    core.delete_namespaced_pod("unscheduled", namespace)
    with pytest.raises(ApiException):
        core.read_namespaced_pod("unscheduled", namespace)  # never scheduled: gone at once
    pending = as_dict(core.delete_namespaced_pod("bound", namespace))
    assert pending["metadata"]["deletionGracePeriodSeconds"] == 30  # waits for its kubelet
    core.delete_namespaced_pod("bound", namespace, grace_period_seconds=0)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("bound", namespace)
    assert err.value.status == 404


def test_jobs_default_to_orphaning_their_pods(raw: Raw, namespace: str) -> None:
    job = suspended_job("j")
    path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    assert raw("POST", path, job)[0] == 201
    status, body, headers = raw("DELETE", path + "/j")
    assert status == 200 and body["metadata"]["finalizers"] == ["orphan"]
    assert "child pods are preserved by default" in headers["Warning"]


def test_invalid_propagation_policy(core: Any, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, cm("a"))
    with pytest.raises(ApiException) as err:
        core.delete_namespaced_config_map("a", namespace, propagation_policy="Sideways")
    assert json.loads(err.value.body)["details"]["causes"][0]["field"] == "propagationPolicy"


def test_namespace_termination_removes_content(
    apiserver: ApiServer, core: Any, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, cm("held", finalizers=["example.com/hold"]))
    deleted = as_dict(core.delete_namespace(namespace))
    assert deleted["status"]["phase"] == "Terminating"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(namespace, cm("late"))
    assert (err.value.status, json.loads(err.value.body)["reason"]) == (403, "Forbidden")
    core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    apiserver.wait_for("namespaces", "", namespace, gone)
    assert apiserver.list("serviceaccounts", namespace) == []
