"""A tiny kopf operator runs against the emulator: the proof that kopf's list/watch, merge
patches, finalizers, status patches, timers and event posting all work on it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import kubernetes
import pytest
from tests.support.apiserver import ApiServer
from tests.support.apiserver_fixtures import WIDGET_GROUP, widget

Obj = dict[str, Any]


class TinyOperator:
    """Handlers for Widgets that record what kopf made them do."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.registry = kopf.OperatorRegistry()
        self.deleted: list[str] = []
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, name="kopf", daemon=True)
        self.error: BaseException | None = None
        reg = self.registry

        @kopf.on.login(registry=reg)
        def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
            return kopf.login_with_kubeconfig(**kwargs)  # reads the KUBECONFIG the fixture exported

        @kopf.on.startup(registry=reg)
        def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.peering.standalone = True
            settings.posting.level = 0
            settings.watching.reconnect_backoff = 0.1
            settings.networking.error_backoffs = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]

        @kopf.on.create(WIDGET_GROUP, "v1", "widgets", id="created", registry=reg)
        def created(spec: Obj, patch: kopf.Patch, body: Obj, **_: Any) -> Obj:
            kopf.info(body, reason="Created", message=f"widget with {spec['image']}")
            patch.status["phase"] = "Created"
            return {"image": spec["image"]}

        @kopf.on.update(WIDGET_GROUP, "v1", "widgets", field="spec.image", registry=reg)
        def updated(old: Any, new: Any, patch: kopf.Patch, **_: Any) -> None:
            patch.status["phase"] = f"Updated {old}->{new}"

        @kopf.on.delete(WIDGET_GROUP, "v1", "widgets", registry=reg)
        def deleted(name: str, **_: Any) -> None:
            self.deleted.append(name)

        @kopf.timer(WIDGET_GROUP, "v1", "widgets", interval=0.2, registry=reg)
        def tick(status: Obj, patch: kopf.Patch, **_: Any) -> None:
            patch.status["ticks"] = int(status.get("ticks") or 0) + 1

    def _run(self) -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=self.registry,
                    standalone=True,
                    namespaces=[self.namespace],
                    stop_flag=self.stop_flag,
                    ready_flag=self.ready_flag,
                )
            )
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            self.error = exc

    def start(self) -> None:
        self.thread.start()
        assert self.ready_flag.wait(15), f"kopf did not start: {self.error!r}"

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(15)
        assert not self.thread.is_alive(), "kopf did not stop"


@pytest.fixture
def operator(apiserver: ApiServer, kubeconfig: Path, namespace: str) -> Iterator[TinyOperator]:
    op = TinyOperator(namespace)
    try:
        op.start()
        yield op
    finally:
        op.stop()
    assert op.error is None, op.error


def phase(expected: str) -> Any:
    return lambda obj: bool(obj) and (obj.get("status") or {}).get("phase") == expected


def test_kopf_handlers_run_against_the_emulator(
    apiserver: ApiServer, api_client: Any, namespace: str, operator: TinyOperator
) -> None:
    custom = kubernetes.client.CustomObjectsApi(api_client)
    args = (WIDGET_GROUP, "v1", namespace, "widgets")
    custom.create_namespaced_custom_object(*args, widget("w", image="nginx:1"))

    obj = apiserver.wait_for("widgets.test.kopflow.dev", namespace, "w", phase("Created"))
    assert obj is not None
    assert "kopf.zalando.org/KopfFinalizerMarker" in obj["metadata"]["finalizers"]
    assert "kopf.zalando.org/last-handled-configuration" in obj["metadata"]["annotations"]
    assert obj["status"]["created"] == {"image": "nginx:1"}  # the handler's result

    def created_event(store: Any) -> list[Obj]:
        events = store.iter_objects(store.storage[("", "events")], namespace)
        return [
            e for e in events if e.get("reason") == "Created" and e["involvedObject"]["name"] == "w"
        ]

    event = apiserver.wait_until(created_event)[0]
    assert (event["message"], event["involvedObject"]["kind"]) == ("widget with nginx:1", "Widget")

    ticking = apiserver.wait_for(
        "widgets.test.kopflow.dev",
        namespace,
        "w",
        lambda o: int(((o or {}).get("status") or {}).get("ticks") or 0) >= 2,
    )
    assert ticking is not None

    custom.patch_namespaced_custom_object(*args, "w", {"spec": {"image": "nginx:2"}})
    apiserver.wait_for(
        "widgets.test.kopflow.dev", namespace, "w", phase("Updated nginx:1->nginx:2")
    )

    custom.delete_namespaced_custom_object(*args, "w")
    apiserver.wait_for("widgets.test.kopflow.dev", namespace, "w", lambda o: o is None)
    assert operator.deleted == ["w"]
    assert apiserver.requests.count("patch", "widgets.test.kopflow.dev") >= 4
    assert apiserver.requests.count("watch", "widgets.test.kopflow.dev") >= 1


def test_kopf_converges_through_injected_faults(
    apiserver: ApiServer, api_client: Any, kubeconfig: Path, namespace: str
) -> None:
    """500s, slow answers and cut watch streams on kopf's requests only: it retries, resumes
    its watches from the last resourceVersion, and the object goes through create, update and
    delete with every handler run."""
    apiserver.faults.configure(
        seed=3, error=0.2, slow=0.1, delay=0.1, drop_watch=0.6, drop_after=0.3, user_agent="kopf/"
    )
    op = TinyOperator(namespace)
    try:
        op.start()
        custom = kubernetes.client.CustomObjectsApi(api_client)
        args = (WIDGET_GROUP, "v1", namespace, "widgets")
        custom.create_namespaced_custom_object(*args, widget("w", image="a"))
        apiserver.wait_for("widgets.test.kopflow.dev", namespace, "w", phase("Created"), 20)
        custom.patch_namespaced_custom_object(*args, "w", {"spec": {"image": "b"}})
        apiserver.wait_for("widgets.test.kopflow.dev", namespace, "w", phase("Updated a->b"), 20)
        custom.delete_namespaced_custom_object(*args, "w")
        apiserver.wait_for("widgets.test.kopflow.dev", namespace, "w", lambda o: o is None, 20)
    finally:
        op.stop()
    assert op.error is None, op.error
    # Deletion handlers are at-least-once in kopf (handlers must be idempotent): when the PATCH
    # that removes the finalizer is retried after a 500 while a cut watch replays the object,
    # the replayed copy can run the handler a second time (seen under CPU load, before TLS too).
    assert op.deleted[:1] == ["w"] and set(op.deleted) == {"w"} and len(op.deleted) <= 2
    assert apiserver.faults.injected["error"] > 0 and apiserver.faults.injected["drop_watch"] > 0
