"""Discovery: what kubectl, kopf and the official client read before any request."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from tests.support.apiserver import ApiServer
from tests.support.apiserver_fixtures import WIDGET_GROUP, Raw, crd_manifest


def test_version(raw: Raw) -> None:
    status, body, _ = raw("GET", "/version")
    assert status == 200
    assert (body["major"], body["minor"]) == ("1", "36") and body["gitVersion"].startswith("v1.36.")


@pytest.mark.parametrize("path", ["/api", "/api/"])
def test_core_versions(raw: Raw, path: str) -> None:
    status, body, _ = raw("GET", path)
    assert (status, body["kind"], body["versions"]) == (200, "APIVersions", ["v1"])


@pytest.mark.parametrize("path", ["/apis", "/apis/"])
def test_group_list_names_builtin_and_custom_groups(raw: Raw, path: str) -> None:
    status, body, _ = raw("GET", path)
    preferred = {g["name"]: g["preferredVersion"]["groupVersion"] for g in body["groups"]}
    assert status == 200 and body["kind"] == "APIGroupList"
    assert preferred["batch"] == "batch/v1"
    assert preferred["coordination.k8s.io"] == "coordination.k8s.io/v1"
    assert preferred[WIDGET_GROUP] == f"{WIDGET_GROUP}/v1"
    assert "" not in preferred


def resources(raw: Raw, path: str) -> dict[str, dict[str, Any]]:
    status, body, _ = raw("GET", path)
    assert status == 200 and body["kind"] == "APIResourceList"
    return {r["name"]: r for r in body["resources"]}


@pytest.mark.parametrize("suffix", ["", "/"])
def test_resource_lists(raw: Raw, suffix: str) -> None:
    core = resources(raw, "/api/v1" + suffix)
    for name in (
        "namespaces",
        "pods",
        "pods/status",
        "pods/log",
        "events",
        "configmaps",
        "serviceaccounts",
    ):
        assert name in core
    assert core["pods"]["shortNames"] == ["po"] and core["pods"]["namespaced"] is True
    assert (
        "deletecollection" not in core["namespaces"]["verbs"]
        and core["namespaces"]["namespaced"] is False
    )
    assert sorted(core["pods/status"]["verbs"]) == ["get", "patch", "update"]
    batch = resources(raw, "/apis/batch/v1" + suffix)
    assert batch["jobs"]["kind"] == "Job" and "jobs/status" in batch
    assert "leases" in resources(raw, "/apis/coordination.k8s.io/v1" + suffix)
    custom = resources(raw, f"/apis/{WIDGET_GROUP}/v1" + suffix)
    assert custom["widgets"]["kind"] == "Widget" and custom["widgets"]["shortNames"] == ["wdg"]
    assert "widgets/status" in custom


def test_unknown_group_version_and_resource(raw: Raw) -> None:
    assert raw("GET", "/apis/nonexistent.example.com/v1")[:2] == (404, "404 page not found\n")
    status, body, _ = raw("GET", "/apis/batch/v9")
    assert (status, body["kind"], body["reason"]) == (404, "Status", "NotFound")
    status, body, _ = raw("GET", "/api/v1/namespaces/default/foos")
    assert (status, body["reason"]) == (404, "NotFound")


def test_aggregated_discovery_for_kubectl(raw: Raw) -> None:
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    status, body, headers = raw("GET", "/apis", accept=accept)
    assert status == 200 and body["kind"] == "APIGroupDiscoveryList"
    assert headers["Content-Type"].startswith("application/json;g=apidiscovery.k8s.io")
    batch = next(g for g in body["items"] if g["metadata"]["name"] == "batch")
    jobs = next(r for r in batch["versions"][0]["resources"] if r["resource"] == "jobs")
    assert jobs["scope"] == "Namespaced" and "watch" in jobs["verbs"]


def test_official_client_reads_discovery(api_client: kubernetes.client.ApiClient) -> None:
    groups = kubernetes.client.ApisApi(api_client).get_api_versions()
    assert "batch" in [g.name for g in groups.groups]
    jobs = kubernetes.client.BatchV1Api(api_client).get_api_resources()
    assert "jobs" in [r.name for r in jobs.resources]


def test_crd_created_through_the_api_is_served(apiserver: ApiServer, raw: Raw) -> None:
    crd = crd_manifest("gadgets", "Gadget", scope="Cluster")
    status, body, _ = raw("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 201
    assert {c["type"]: c["status"] for c in body["status"]["conditions"]}["Established"] == "True"
    assert resources(raw, "/apis/example.com/v1")["gadgets"]["namespaced"] is False
    assert (
        raw("POST", "/apis/example.com/v1/gadgets", {"metadata": {"name": "g"}, "any": 1})[0] == 201
    )

    assert (
        raw(
            "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com"
        )[0]
        == 200
    )
    assert raw("GET", "/apis/example.com/v1")[0] == 404
    assert raw("GET", "/apis/example.com/v1/gadgets/g")[0] == 404
