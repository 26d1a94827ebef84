"""Watch: the event stream kopf and the operator's observers live on."""

from __future__ import annotations

import threading
import time
from typing import Any

import kubernetes
import pytest
from tests.support.apiserver import ApiServer
from tests.support.apiserver_fixtures import Raw, suspended_job


@pytest.fixture
def core(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client)


def brief(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


def list_rv(core: Any, namespace: str) -> str:
    return str(core.list_namespaced_config_map(namespace).metadata.resource_version)


def test_resume_replays_changes_after_the_resource_version(
    core: Any, raw: Raw, namespace: str
) -> None:
    since = list_rv(core, namespace)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "a"}, "data": {"k": "1"}})
    core.patch_namespaced_config_map("a", namespace, {"data": {"k": "2"}})
    core.patch_namespaced_config_map("a", namespace, {"data": {"k": "2"}})  # no change: no event
    core.delete_namespaced_config_map("a", namespace)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "b"}})

    events = raw.watch(
        f"/api/v1/namespaces/{namespace}/configmaps", {"resourceVersion": since}, count=4
    )

    assert brief(events) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a"), ("ADDED", "b")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(since)
    assert events[2]["object"]["data"] == {"k": "2"} and events[0]["object"]["kind"] == "ConfigMap"


def test_label_selector_sees_objects_enter_and_leave(core: Any, raw: Raw, namespace: str) -> None:
    since = list_rv(core, namespace)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "red", "labels": {"color": "red"}}}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "blue", "labels": {"color": "blue"}}}
    )
    core.patch_namespaced_config_map("red", namespace, {"metadata": {"labels": {"color": "blue"}}})
    core.patch_namespaced_config_map("blue", namespace, {"metadata": {"labels": {"color": "red"}}})

    events = raw.watch(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"resourceVersion": since, "labelSelector": "color=red", "timeoutSeconds": "1"},
        count=10,
    )

    assert brief(events) == [("ADDED", "red"), ("DELETED", "red"), ("ADDED", "blue")]


def test_watch_without_resource_version_lists_first(core: Any, raw: Raw, namespace: str) -> None:
    for name in ("a", "b"):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})
    events = raw.watch(
        f"/api/v1/namespaces/{namespace}/configmaps", {"timeoutSeconds": "1"}, count=10
    )
    assert brief(events) == [("ADDED", "a"), ("ADDED", "b")]


def test_initial_events_end_with_a_bookmark(core: Any, raw: Raw, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "a"}})
    events = raw.watch(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {
            "sendInitialEvents": "true",
            "resourceVersionMatch": "NotOlderThan",
            "allowWatchBookmarks": "true",
        },
        count=2,
    )
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_timeout_seconds_ends_the_stream(raw: Raw, namespace: str) -> None:
    started = time.monotonic()
    events = raw.watch(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"timeoutSeconds": "1", "labelSelector": "none=none"},
        count=1,
    )
    assert events == [] and time.monotonic() - started < 3


def test_bookmarks_only_once_the_store_moved_on(
    apiserver: ApiServer, core: Any, raw: Raw, namespace: str
) -> None:
    apiserver.bookmark_interval = 0.2
    path, since = f"/api/v1/namespaces/{namespace}/configmaps", list_rv(core, namespace)
    query = {
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "1",
        "resourceVersion": since,
        "labelSelector": "none=none",
    }
    assert raw.watch(path, query, count=1) == []  # idle: nothing to report

    core.create_namespace({"metadata": {"name": "elsewhere"}})
    events = raw.watch(path, query, count=1)
    assert [e["type"] for e in events] == ["BOOKMARK"]
    bookmark = events[0]["object"]
    assert bookmark["kind"] == "ConfigMap" and list(bookmark["metadata"]) == ["resourceVersion"]
    assert int(bookmark["metadata"]["resourceVersion"]) > int(since)


def test_resource_version_older_than_the_window_is_410_gone(raw: Raw) -> None:
    server = ApiServer(crd_dir=None, window=5).start()
    try:
        small = Raw(server.url)
        path = "/api/v1/namespaces/default/configmaps"
        since = str(small("GET", path)[1]["metadata"]["resourceVersion"])
        for i in range(8):
            assert small("POST", path, {"metadata": {"name": f"c{i}"}})[0] == 201
        for old in (since, "1"):
            events = small.watch(path, {"resourceVersion": old}, count=5)
            assert len(events) == 1 and events[0]["type"] == "ERROR"
            assert (events[0]["object"]["code"], events[0]["object"]["reason"]) == (410, "Expired")
        recent = str(int(small("GET", path)[1]["metadata"]["resourceVersion"]) - 2)
        assert brief(small.watch(path, {"resourceVersion": recent}, count=2)) == [
            ("ADDED", "c6"),
            ("ADDED", "c7"),
        ]
    finally:
        server.stop()


def test_invalid_selector_is_rejected_before_streaming(raw: Raw, namespace: str) -> None:
    events = raw.watch(
        f"/api/v1/namespaces/{namespace}/configmaps", {"labelSelector": "env in prod"}, count=1
    )
    assert (events[0]["kind"], events[0]["code"]) == ("Status", 400)


def test_live_events_reach_an_open_watch(api_client: Any, core: Any, namespace: str) -> None:
    batch = kubernetes.client.BatchV1Api(api_client)
    job = suspended_job("j")
    seen: list[tuple[str, int | None]] = []
    ready = threading.Event()

    def watch() -> None:
        stream = kubernetes.watch.Watch()
        since = batch.list_namespaced_job(namespace).metadata.resource_version
        ready.set()
        for event in stream.stream(
            batch.list_namespaced_job,
            namespace,
            resource_version=since,
            field_selector="metadata.name=j",
            timeout_seconds=5,
        ):
            seen.append((event["type"], event["object"].status.active))
            if event["type"] == "DELETED":
                stream.stop()

    thread = threading.Thread(target=watch)
    thread.start()
    assert ready.wait(5)
    batch.create_namespaced_job(namespace, job)
    batch.patch_namespaced_job_status("j", namespace, {"status": {"active": 1}})
    batch.patch_namespaced_job("j", namespace, {"status": {"active": 9}})  # main endpoint: ignored
    batch.delete_namespaced_job("j", namespace, propagation_policy="Background")
    thread.join(10)
    assert seen == [("ADDED", None), ("MODIFIED", 1), ("DELETED", 1)]
