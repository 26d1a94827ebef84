"""Custom resources are validated, defaulted and pruned by their CRD's schema, and the
kopflow CRDs generated into crds/ are served exactly as written."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.rest import ApiException
from tests.support.apiserver import DEFAULT_CRD_DIR, ApiServer
from tests.support.apiserver_fixtures import WIDGET_GROUP, Raw, crd_manifest, widget

ARGS = (WIDGET_GROUP, "v1")


@pytest.fixture
def custom(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api_client)


def rejected(custom: Any, namespace: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(*ARGS, namespace, "widgets", body)
    status = json.loads(err.value.body)
    assert (err.value.status, status["reason"], status["details"]["kind"]) == (
        422,
        "Invalid",
        "Widget",
    )
    return sorted((c["field"], c["reason"]) for c in status["details"]["causes"])


NOT_CHECKED = ("<nil>", "FieldValueInvalid")  # a blocking schema error skipped the CEL rules


@pytest.mark.parametrize(
    ("spec", "causes"),
    [
        ({"image": None, "minReplicas": 2}, [NOT_CHECKED, ("spec.image", "FieldValueRequired")]),
        ({"minReplicas": 0}, [("spec.minReplicas", "FieldValueInvalid")]),
        ({"minReplicas": "two"}, [NOT_CHECKED, ("spec.minReplicas", "FieldValueTypeInvalid")]),
        ({"mode": "reckless"}, [NOT_CHECKED, ("spec.mode", "FieldValueNotSupported")]),
        (
            {"tags": "notalist", "image": ""},
            [
                NOT_CHECKED,
                ("spec.image", "FieldValueInvalid"),
                ("spec.tags", "FieldValueTypeInvalid"),
            ],
        ),
        ({"labels": {"a": 1}}, [NOT_CHECKED, ("spec.labels.a", "FieldValueTypeInvalid")]),
        ({"minReplicas": 5, "maxReplicas": 2}, [("spec", "FieldValueInvalid")]),  # the CEL rule
    ],
)
def test_schema_violations_are_422_with_field_paths(
    custom: Any, namespace: str, spec: dict[str, Any], causes: list[tuple[str, str]]
) -> None:
    body = widget("bad", **spec)
    if spec.get("image", "") is None:
        del body["spec"]["image"]
    assert rejected(custom, namespace, body) == causes


def test_defaults_int_or_string_nullable_and_pruning(custom: Any, raw: Raw, namespace: str) -> None:
    body = widget("w", port="http", note=None, extra={"anything": {"goes": [1]}}, bogus=1)
    body["unknownTopLevel"] = True
    status, created, headers = raw(
        "POST", f"/apis/{WIDGET_GROUP}/v1/namespaces/{namespace}/widgets", body
    )
    assert status == 201
    assert created["spec"] == {
        "image": "busybox",
        "minReplicas": 1,
        "maxReplicas": 10,
        "port": "http",
        "note": None,
        "extra": {"anything": {"goes": [1]}},
    }
    assert "unknownTopLevel" not in created
    assert 'unknown field \\"spec.bogus\\"' in headers["Warning"]
    other = custom.create_namespaced_custom_object(
        *ARGS, namespace, "widgets", widget("w2", port=8080)
    )
    assert other["spec"]["port"] == 8080


def test_defaults_apply_on_patch_as_on_a_cluster(custom: Any, namespace: str) -> None:
    custom.create_namespaced_custom_object(*ARGS, namespace, "widgets", widget("w", minReplicas=3))
    patched = custom.patch_namespaced_custom_object(
        *ARGS, namespace, "widgets", "w", {"spec": {"minReplicas": None}}
    )
    assert patched["spec"]["minReplicas"] == 1


def test_list_types_reject_duplicates(apiserver: ApiServer, raw: Raw, namespace: str) -> None:
    schema = yaml.safe_load("""
type: object
properties:
  spec:
    type: object
    properties:
      tasks:
        type: array
        x-kubernetes-list-type: map
        x-kubernetes-list-map-keys: [name]
        items: {type: object, properties: {name: {type: string}}}
      tags: {type: array, x-kubernetes-list-type: set, items: {type: string}}
""")
    crd = crd_manifest("lists", "List", schema=schema)
    apiserver.install_crd(crd)
    body = {
        "metadata": {"name": "l"},
        "spec": {"tasks": [{"name": "a"}, {"name": "a"}], "tags": ["x", "x"]},
    }
    status, result, _ = raw("POST", f"/apis/example.com/v1/namespaces/{namespace}/lists", body)
    assert status == 422
    assert sorted(c["field"] for c in result["details"]["causes"]) == [
        "spec.tags[1]",
        "spec.tasks[1]",
    ]


def test_invalid_crds_are_refused(raw: Raw) -> None:
    untyped = {"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}
    crd = crd_manifest("things", "Thing", schema=untyped)
    crd["metadata"]["name"] = "wrong.example.com"
    status, body, _ = raw("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 422
    fields = {c["field"] for c in body["details"]["causes"]}
    assert "metadata.name" in fields
    # One schema for all versions is checked as the internal form's spec.validation.
    assert "spec.validation.openAPIV3Schema.properties[spec].type" in fields


def test_table_output_uses_printer_columns(custom: Any, raw: Raw, namespace: str) -> None:
    custom.create_namespaced_custom_object(*ARGS, namespace, "widgets", widget("w", image="nginx"))
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    status, table, _ = raw(
        "GET", f"/apis/{WIDGET_GROUP}/v1/namespaces/{namespace}/widgets", accept=accept
    )
    assert status == 200 and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Image", "Phase", "Age"]
    assert table["rows"][0]["cells"][:3] == ["w", "nginx", None]


KOPFLOW_CRDS = sorted(DEFAULT_CRD_DIR.glob("*.yaml"))


def crd_docs() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in KOPFLOW_CRDS]


@pytest.mark.skipif(not KOPFLOW_CRDS, reason="crds/ has not been generated yet")
def test_kopflow_crds_are_served_as_generated(raw: Raw) -> None:
    for crd in crd_docs():
        spec = crd["spec"]
        version = next(v["name"] for v in spec["versions"] if v.get("storage"))
        status, body, _ = raw("GET", f"/apis/{spec['group']}/{version}")
        assert status == 200
        served = {r["name"]: r for r in body["resources"]}
        names = spec["names"]
        assert served[names["plural"]]["kind"] == names["kind"]
        assert served[names["plural"]].get("shortNames", []) == names.get("shortNames", [])
        assert (f"{names['plural']}/status" in served) == (
            "status"
            in next(v for v in spec["versions"] if v["name"] == version).get("subresources", {})
        )


def example_run(crds: list[dict[str, Any]]) -> tuple[str, str, dict[str, Any]]:
    """A minimal WorkflowRun with an inline workflow, built only from the CRD's schema knowledge."""
    run_crd = next(c for c in crds if c["spec"]["names"]["kind"] == "WorkflowRun")
    group = run_crd["spec"]["group"]
    version = next(v["name"] for v in run_crd["spec"]["versions"] if v.get("storage"))
    task = {
        "name": "hello",
        "image": "python:3.12-slim",
        "command": ["python", "-c", "print('hi')"],
    }
    body = {
        "apiVersion": f"{group}/{version}",
        "kind": "WorkflowRun",
        "metadata": {"name": "run-1"},
        "spec": {"workflow": {"tasks": [task]}},
    }
    return group, version, body


@pytest.mark.skipif(not KOPFLOW_CRDS, reason="crds/ has not been generated yet")
def test_a_workflowrun_can_be_created_and_status_patched(custom: Any, namespace: str) -> None:
    group, version, body = example_run(crd_docs())
    created = custom.create_namespaced_custom_object(
        group, version, namespace, "workflowruns", body
    )
    assert created["spec"]["workflow"]["tasks"][0]["name"] == "hello"
    patched = custom.patch_namespaced_custom_object_status(
        group,
        version,
        namespace,
        "workflowruns",
        "run-1",
        {"status": {"phase": "Running", "progress": "0/1"}},
    )
    assert (patched["status"]["phase"], patched["status"]["progress"]) == ("Running", "0/1")
    assert patched["metadata"]["generation"] == 1
    body["metadata"]["name"] = "run-2"
    body["spec"]["workflow"]["tasks"].append(dict(body["spec"]["workflow"]["tasks"][0]))
    with pytest.raises(ApiException) as err:  # two tasks with one name: the list-map key clashes
        custom.create_namespaced_custom_object(group, version, namespace, "workflowruns", body)
    assert err.value.status == 422
