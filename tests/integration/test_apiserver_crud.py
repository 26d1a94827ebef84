"""Create, read, list, replace and patch, through the official client as the operator will."""

from __future__ import annotations

import re
from typing import Any

import kubernetes
import pytest
from kubernetes.client.rest import ApiException
from tests.support.apiserver_fixtures import WIDGET_GROUP, Raw, widget

UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@pytest.fixture
def core(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client)


@pytest.fixture
def custom(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api_client)


def status_of(err: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    import json

    return dict(json.loads(err.value.body))


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}


def test_create_fills_server_fields(core: Any, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, cm("a"))
    meta = created.metadata
    assert UID.match(meta.uid) and meta.resource_version.isdigit() and meta.creation_timestamp
    assert meta.namespace == namespace and meta.generation is None  # ConfigMaps have no generation

    job = kubernetes.client.BatchV1Api(core.api_client).create_namespaced_job(
        namespace,
        {
            "metadata": {"generateName": "run-"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox"}],
                    }
                }
            },
        },
    )
    assert re.fullmatch(r"run-[a-z0-9]{5}", job.metadata.name) and job.metadata.generation == 1
    assert job.spec.selector.match_labels == {
        "batch.kubernetes.io/controller-uid": job.metadata.uid
    }
    assert job.spec.template.metadata.labels["job-name"] == job.metadata.name
    assert job.spec.backoff_limit == 6


def test_duplicate_create_is_409_already_exists(core: Any, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, cm("a"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(namespace, cm("a"))
    body = status_of(err)
    assert err.value.status == 409
    assert (body["kind"], body["reason"], body["details"]) == (
        "Status",
        "AlreadyExists",
        {"name": "a", "kind": "configmaps"},
    )


def test_missing_objects_and_namespaces_are_404(core: Any, namespace: str) -> None:
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("nope", namespace)
    assert (err.value.status, status_of(err)["reason"]) == (404, "NotFound")
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("no-such-namespace", cm("a"))
    assert status_of(err)["details"] == {"name": "no-such-namespace", "kind": "namespaces"}


def test_invalid_names_and_labels_are_422_with_the_field(core: Any, namespace: str) -> None:
    for body, field in (
        (cm("Bad_Name"), "metadata.name"),
        (cm("ok", a="not ok!"), "metadata.labels"),
        ({"metadata": {}}, "metadata.name"),
    ):
        with pytest.raises(ApiException) as err:
            core.create_namespaced_config_map(namespace, body)
        assert err.value.status == 422
        assert [c["field"] for c in status_of(err)["details"]["causes"]] == [field]


def test_list_with_label_and_field_selectors(core: Any, namespace: str) -> None:
    last = None
    for name, labels in (
        ("a", {"env": "prod", "tier": "web"}),
        ("b", {"env": "dev", "tier": "web"}),
        ("c", {"env": "prod"}),
        ("d", {"tier": "db"}),
    ):
        last = core.create_namespaced_config_map(namespace, cm(name, **labels))

    def names(**kw: Any) -> list[str]:
        return [i.metadata.name for i in core.list_namespaced_config_map(namespace, **kw).items]

    assert names() == ["a", "b", "c", "d"]
    assert names(label_selector="env=prod") == ["a", "c"]
    assert names(label_selector="env!=prod") == ["b", "d"]
    assert names(label_selector="env in (prod,dev),tier") == ["a", "b"]
    assert names(label_selector="!env") == ["d"]
    assert names(label_selector="tier notin (web)") == ["c", "d"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b", label_selector="env") == ["a", "c"]
    listed = core.list_namespaced_config_map(namespace)
    assert listed.metadata.resource_version == last.metadata.resource_version
    with pytest.raises(ApiException) as err:
        names(label_selector="env in prod")
    assert err.value.status == 400
    with pytest.raises(ApiException) as err:
        names(field_selector="data.k=v")
    assert err.value.status == 400


def test_pod_field_selectors_and_pagination(core: Any, raw: Raw, namespace: str) -> None:
    for i in range(5):
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": f"p{i}"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        )
    core.patch_namespaced_pod_status("p1", namespace, {"status": {"phase": "Running"}})
    running = core.list_namespaced_pod(namespace, field_selector="status.phase=Running").items
    assert [p.metadata.name for p in running] == ["p1"]
    page = core.list_namespaced_pod(namespace, limit=2)
    assert [p.metadata.name for p in page.items] == [
        "p0",
        "p1",
    ] and page.metadata.remaining_item_count == 3
    rest = core.list_namespaced_pod(namespace, limit=10, _continue=page.metadata._continue)
    assert [p.metadata.name for p in rest.items] == [
        "p2",
        "p3",
        "p4",
    ] and not rest.metadata._continue
    everywhere = core.list_pod_for_all_namespaces(field_selector=f"metadata.namespace={namespace}")
    assert len(everywhere.items) == 5


def test_put_uses_optimistic_concurrency(core: Any, namespace: str) -> None:
    first = core.create_namespaced_config_map(namespace, cm("a"))
    first.data = {"k": "v2"}
    updated = core.replace_namespaced_config_map("a", namespace, first)
    assert int(updated.metadata.resource_version) > int(first.metadata.resource_version)
    first.data = {"k": "stale"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("a", namespace, first)  # still the first resourceVersion
    assert (err.value.status, status_of(err)["reason"]) == (409, "Conflict")
    same = core.replace_namespaced_config_map("a", namespace, updated)
    assert (
        same.metadata.resource_version == updated.metadata.resource_version
    )  # a no-op writes nothing


def test_custom_resources_need_a_resource_version_on_put(custom: Any, namespace: str) -> None:
    created = custom.create_namespaced_custom_object(
        WIDGET_GROUP, "v1", namespace, "widgets", widget("w")
    )
    del created["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as err:
        custom.replace_namespaced_custom_object(
            WIDGET_GROUP, "v1", namespace, "widgets", "w", created
        )
    assert err.value.status == 422


def test_merge_patch_deletes_with_null(raw: Raw, core: Any, namespace: str) -> None:
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {"name": "a", "labels": {"x": "1", "y": "2"}},
            "data": {"k1": "v1", "k2": "v2"},
        },
    )
    path = f"/api/v1/namespaces/{namespace}/configmaps/a"
    status, body, _ = raw(
        "PATCH",
        path,
        {"metadata": {"labels": {"x": None}}, "data": {"k1": None, "k3": "v3"}},
        content_type=MERGE,
    )
    assert status == 200
    assert (body["metadata"]["labels"], body["data"]) == ({"y": "2"}, {"k2": "v2", "k3": "v3"})
    stale = {"metadata": {"resourceVersion": "1"}, "data": {"k": "x"}}
    assert raw("PATCH", path, stale, content_type=MERGE)[0] == 409
    assert raw("PATCH", path, {"data": {"k": "x"}}, content_type="application/json")[0] == 415


def test_json_patch_test_failure_is_422_and_changes_nothing(
    raw: Raw, core: Any, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, cm("a"))
    path = f"/api/v1/namespaces/{namespace}/configmaps/a"
    ops = [
        {"op": "test", "path": "/data/k", "value": "other"},
        {"op": "replace", "path": "/data/k", "value": "x"},
    ]
    status, body, _ = raw("PATCH", path, ops, content_type=JSON_PATCH)
    assert (status, body["reason"]) == (422, "Invalid")
    ops[0]["value"] = "v"
    status, body, _ = raw(
        "PATCH",
        path,
        [*ops, {"op": "add", "path": "/metadata/labels/a~1b", "value": "c"}],
        content_type=JSON_PATCH,
    )
    assert (
        status == 200 and body["data"] == {"k": "x"} and body["metadata"]["labels"] == {"a/b": "c"}
    )


def test_strategic_merge_patch_merges_keyed_lists(core: Any, namespace: str) -> None:
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "p", "finalizers": ["example.com/a"]},
            "spec": {
                "containers": [
                    {"name": "c1", "image": "busybox:1"},
                    {"name": "c2", "image": "busybox:2"},
                ]
            },
        },
    )
    # The official client sends strategic merge patches for dict bodies on built-in kinds.
    pod = core.patch_namespaced_pod(
        "p",
        namespace,
        {
            "metadata": {"finalizers": ["example.com/b"]},
            "spec": {"containers": [{"name": "c2", "image": "busybox:3"}]},
        },
    )
    assert [(c.name, c.image) for c in pod.spec.containers] == [
        ("c1", "busybox:1"),
        ("c2", "busybox:3"),
    ]
    assert pod.metadata.finalizers == ["example.com/b", "example.com/a"]
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod(
            "p", namespace, {"spec": {"containers": [{"name": "c1", "$patch": "delete"}]}}
        )
    assert status_of(err)["details"]["causes"][0]["field"] == "spec.containers"


def test_status_subresource_and_generation_on_jobs(api_client: Any, namespace: str) -> None:
    batch = kubernetes.client.BatchV1Api(api_client)
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "j"},
            "spec": {
                "parallelism": 1,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox"}],
                    }
                },
            },
            "status": {"active": 5},
        },
    )
    job = batch.read_namespaced_job("j", namespace)
    assert job.status.active is None  # status is never taken from a create
    job = batch.patch_namespaced_job(
        "j", namespace, {"status": {"active": 1}, "metadata": {"labels": {"l": "1"}}}
    )
    assert (job.status.active, job.metadata.generation, job.metadata.labels["l"]) == (None, 1, "1")
    job = batch.patch_namespaced_job_status(
        "j", namespace, {"status": {"active": 2}, "spec": {"parallelism": 3}}
    )
    assert (job.status.active, job.spec.parallelism, job.metadata.generation) == (2, 1, 1)
    job = batch.patch_namespaced_job("j", namespace, {"spec": {"parallelism": 2}})
    assert (job.spec.parallelism, job.metadata.generation) == (2, 2)
    with pytest.raises(ApiException) as err:
        batch.patch_namespaced_job("j", namespace, {"spec": {"completions": 4}})
    assert status_of(err)["details"]["causes"][0]["field"] == "spec.completions"


def test_status_subresource_and_generation_on_custom_resources(custom: Any, namespace: str) -> None:
    args = (WIDGET_GROUP, "v1", namespace, "widgets")
    created = custom.create_namespaced_custom_object(
        *args, {**widget("w"), "status": {"phase": "Preset"}}
    )
    assert "status" not in created and created["metadata"]["generation"] == 1
    patched = custom.patch_namespaced_custom_object(*args, "w", {"status": {"phase": "Ignored"}})
    assert (
        "status" not in patched
        and patched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    )
    patched = custom.patch_namespaced_custom_object_status(
        *args,
        "w",
        {
            "status": {"phase": "Running"},
            "spec": {"image": "ignored"},
            "metadata": {"labels": {"x": "y"}},
        },
    )
    assert (patched["status"], patched["spec"]["image"], patched["metadata"].get("labels")) == (
        {"phase": "Running"},
        "busybox",
        None,
    )
    assert patched["metadata"]["generation"] == 1
    patched = custom.patch_namespaced_custom_object(
        *args, "w", {"metadata": {"labels": {"a": "b"}}}
    )
    assert patched["metadata"]["generation"] == 1
    patched = custom.patch_namespaced_custom_object(*args, "w", {"spec": {"maxReplicas": 5}})
    assert patched["metadata"]["generation"] == 2 and patched["status"] == {"phase": "Running"}


def test_strategic_merge_patch_is_refused_for_custom_resources(
    raw: Raw, custom: Any, namespace: str
) -> None:
    custom.create_namespaced_custom_object(WIDGET_GROUP, "v1", namespace, "widgets", widget("w"))
    path = f"/apis/{WIDGET_GROUP}/v1/namespaces/{namespace}/widgets/w"
    status, body, _ = raw(
        "PATCH",
        path,
        {"spec": {"image": "x"}},
        content_type="application/strategic-merge-patch+json",
    )
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


def test_put_to_a_collection_and_post_to_an_object_are_405(raw: Raw, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    assert raw("PUT", path, cm("a"))[0] == 405
    assert raw("POST", path + "/a", cm("a"))[0] == 405


def test_events_are_created_and_selected_by_involved_object(core: Any, namespace: str) -> None:
    for i, kind in enumerate(("ConfigMap", "Pod")):
        core.create_namespaced_event(
            namespace,
            {
                "metadata": {"name": f"e{i}"},
                "reason": "Tested",
                "message": "m",
                "type": "Normal",
                "involvedObject": {"kind": kind, "name": "x", "namespace": namespace},
            },
        )
    found = core.list_namespaced_event(
        namespace, field_selector="involvedObject.kind=Pod,involvedObject.name=x"
    )
    assert [e.metadata.name for e in found.items] == ["e1"]
    with pytest.raises(ApiException) as err:
        core.create_namespaced_event(
            namespace,
            {
                "metadata": {"name": "bad"},
                "reason": "r",
                "message": "m",
                "involvedObject": {"kind": "Pod", "name": "x", "namespace": "other"},
            },
        )
    assert status_of(err)["details"]["causes"][0]["field"] == "involvedObject.namespace"


def test_unknown_fields_warn_or_fail_when_strict(raw: Raw, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    status, body, headers = raw("POST", path, {**cm("a"), "bogus": 1})
    assert (
        status == 201 and "bogus" not in body and 'unknown field \\"bogus\\"' in headers["Warning"]
    )
    assert raw("POST", path, {**cm("b"), "bogus": 1}, query={"fieldValidation": "Strict"})[0] == 400


def test_objects_over_etcds_limit_and_bodies_over_3_mib_are_refused_as_on_a_real_server(
    custom: Any, namespace: str
) -> None:
    """kube-apiserver v1.36 with etcd's default --max-request-bytes (1.5 MiB), as measured
    with a WorkflowRun's status: a 1.6 MB object is a bare 500 "etcdserver: request is too
    large", a 3.2 MB body a 413; 1.2 MB is stored."""
    custom.create_namespaced_custom_object(WIDGET_GROUP, "v1", namespace, "widgets", widget("w"))
    for size, code, words in (
        (1_600_000, 500, "etcdserver: request is too large"),
        (3_200_000, 413, "Request entity too large: limit is 3145728"),
    ):
        with pytest.raises(ApiException) as err:
            custom.patch_namespaced_custom_object(
                WIDGET_GROUP,
                "v1",
                namespace,
                "widgets",
                "w",
                {"spec": {"extra": {"a": "x" * size}}},
            )
        assert err.value.status == code and status_of(err)["message"] == words
    big = {"spec": {"extra": {"a": "x" * 1_200_000}}}
    custom.patch_namespaced_custom_object(WIDGET_GROUP, "v1", namespace, "widgets", "w", big)
