"""Fault injection, the request log and speed with thousands of objects."""

from __future__ import annotations

import time
from typing import Any

import kubernetes
import pytest
import urllib3
from kubernetes.client.rest import ApiException
from tests.support.apiserver import ApiServer
from tests.support.apiserver_fixtures import Raw


def outcomes(raw: Raw, n: int) -> list[int]:
    """Codes of n writes (a 409 Conflict is only ever the answer to a write)."""
    body = {"metadata": {"generateName": "f-"}}
    return [raw("POST", "/api/v1/namespaces/default/configmaps", body)[0] for _ in range(n)]


def test_seeded_faults_are_reproducible(apiserver: ApiServer, raw: Raw) -> None:
    apiserver.faults.configure(seed=7, conflict=0.2, error=0.2, throttle=0.2)
    first = outcomes(raw, 40)
    apiserver.faults.configure(seed=7, conflict=0.2, error=0.2, throttle=0.2)
    assert outcomes(raw, 40) == first
    assert {409, 500, 429, 201} == set(first)
    reads = [raw("GET", "/api/v1/namespaces/default/configmaps")[0] for _ in range(40)]
    assert 409 not in reads and {500, 429, 200} <= set(reads)
    apiserver.faults.clear()
    assert set(outcomes(raw, 10)) == {201}


def test_injected_errors_are_status_objects_the_client_raises(
    apiserver: ApiServer, api_client: Any
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    for kind, code, reason in (
        ("conflict", 409, "Conflict"),
        ("error", 500, "InternalError"),
        ("throttle", 429, "TooManyRequests"),
    ):
        apiserver.faults.configure(**{kind: 1.0}, verbs={"create"}, resources={"configmaps"})
        with pytest.raises(ApiException) as err:
            core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
        assert err.value.status == code and f'"reason":"{reason}"' in err.value.body
        assert core.list_namespaced_config_map("default").items == []  # other verbs unaffected
    assert err.value.headers["Retry-After"] == "1"
    assert apiserver.faults.injected == {"conflict": 1, "error": 1, "throttle": 1}


def test_slow_responses(apiserver: ApiServer, raw: Raw) -> None:
    apiserver.faults.configure(slow=1.0, delay=0.6, user_agent="slow-client")
    started = time.monotonic()
    assert raw("GET", "/api/v1/namespaces")[0] == 200
    fast = time.monotonic() - started
    slow = Raw(apiserver.url)
    slow.headers["User-Agent"] = "slow-client/1"
    started = time.monotonic()
    assert slow("GET", "/api/v1/namespaces")[0] == 200
    assert time.monotonic() - started >= 0.6 > fast  # only the matching client is slowed


def test_a_webhook_denial_holds_for_writes_that_are_also_slowed(
    apiserver: ApiServer, raw: Raw
) -> None:
    """deny=1.0 refuses every matching write, whatever transient fault it also drew: a slowed
    write still reaches admission (test_restarts' doomed Jobs were once stored and ran)."""
    apiserver.faults.configure(seed=5, slow=0.5, delay=0.01, deny=1.0, deny_match='"team":"red"')
    path = "/api/v1/namespaces/default/configmaps"
    codes = [
        raw("POST", path, {"metadata": {"name": f"red{i}", "labels": {"team": "red"}}})[0]
        for i in range(20)
    ]
    assert apiserver.faults.injected["slow"] > 0, "no write was slowed: the test proves nothing"
    assert codes == [403] * 20
    assert apiserver.faults.injected["deny"] == 20
    assert raw("POST", path, {"metadata": {"name": "blue", "labels": {"team": "blue"}}})[0] == 201
    names = [i["metadata"]["name"] for i in raw("GET", path)[1]["items"]]
    assert names == ["blue"]


def test_dropped_watch_stream_is_cut_early(apiserver: ApiServer, raw: Raw) -> None:
    apiserver.faults.configure(drop_watch=1.0, drop_after=0.2)
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ProtocolError):  # broken mid-stream, not a clean end
        raw.watch("/api/v1/namespaces/default/configmaps", {"timeoutSeconds": "5"}, count=1)
    assert time.monotonic() - started < 2
    assert apiserver.faults.injected["drop_watch"] == 1


def test_request_log_counts_by_verb_and_resource(apiserver: ApiServer, raw: Raw) -> None:
    apiserver.requests.reset()
    raw("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "a"}})
    for _ in range(3):
        raw(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/a",
            {"data": {"x": "1"}},
            content_type="application/merge-patch+json",
        )
    raw("GET", "/api/v1/namespaces/default/configmaps")
    raw("GET", "/apis/batch/v1/namespaces/default/jobs/missing")
    assert apiserver.requests.count("patch", "configmaps") == 3
    assert apiserver.requests.count("create") == 1
    assert apiserver.requests.count(resource="jobs.batch") == 1
    assert apiserver.requests.by_verb() == {"create": 1, "patch": 3, "list": 1, "get": 1}
    assert apiserver.requests.codes[404] == 1
    assert [r.verb for r in apiserver.requests.recent][-1] == "get"


def test_request_log_stays_bounded(apiserver: ApiServer, raw: Raw) -> None:
    apiserver.requests.recent = type(apiserver.requests.recent)(maxlen=10)
    outcomes(raw, 25)
    assert len(apiserver.requests.recent) == 10 and apiserver.requests.count("create") >= 25


def test_thousands_of_objects_keep_requests_fast(apiserver: ApiServer, raw: Raw) -> None:
    """Per-request cost must not grow with the number of stored objects (indexes, no scans)."""
    rt = apiserver.storage_type("configmaps")

    def timed(n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            raw("GET", f"/api/v1/namespaces/default/configmaps/c{i}")
            raw(
                "PATCH",
                f"/api/v1/namespaces/default/configmaps/c{i}",
                {"data": {"n": str(i)}},
                content_type="application/merge-patch+json",
            )
        return time.perf_counter() - started

    def fill(start: int, stop: int, namespace: str) -> None:
        for i in range(start, stop):
            apiserver.store.create(
                rt, namespace, {"metadata": {"name": f"c{i}", "labels": {"i": str(i)}}}
            )

    apiserver.call(fill, 0, 100, "default")
    small = timed(100)
    apiserver.call(fill, 100, 3000, "default")
    apiserver.call(fill, 0, 2000, "kube-system")
    large = timed(100)
    assert large < small * 3 + 0.5, (small, large)
    started = time.perf_counter()
    status, body, _ = raw(
        "GET", "/api/v1/namespaces/default/configmaps", query={"labelSelector": "i=2999"}
    )
    assert status == 200 and [i["metadata"]["name"] for i in body["items"]] == ["c2999"]
    assert time.perf_counter() - started < 1.0
