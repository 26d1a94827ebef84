"""A test-side informer: list, then watch one resource of one namespace, keeping a local copy.

Tests wait on what the API says, on either backend (the emulator or a real API server), without
polling: every change notifies one shared Condition, and `Cache.wait(predicate)` wakes on it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

Obj = dict[str, Any]
T = TypeVar("T")
WATCH_SECONDS = 20
"""Each watch request's server-side timeout; the watch resumes from its last resourceVersion."""


class Informer(threading.Thread):
    """Keeps `items` (name -> object) equal to the server's; counts ADDED events per name."""

    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        list_fn: Callable[..., Any],
        args: tuple[Any, ...],
        changed: threading.Condition,
        stopping: threading.Event,
    ) -> None:
        super().__init__(daemon=True, name=f"informer {getattr(list_fn, '__name__', '')}")
        self.client, self.list_fn, self.args = client, list_fn, args
        self.changed, self.stopping = changed, stopping
        self.items: dict[str, Obj] = {}
        self.added: Counter[str] = Counter()
        self.last: dict[str, Obj] = {}
        """uid -> the latest version seen, kept after deletion: the API's record of objects."""
        self.synced = threading.Event()

    def _dict(self, obj: Any) -> Obj:
        return obj if isinstance(obj, dict) else self.client.sanitize_for_serialization(obj)  # type: ignore[no-any-return]

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._list_and_watch()
            except Exception:  # a dropped connection, 410 Gone, a stopped server: list again
                self.stopping.wait(0.2)

    def _list_and_watch(self) -> None:
        listing = self._dict(self.list_fn(*self.args, _request_timeout=30))
        fresh = {i["metadata"]["name"]: self._dict(i) for i in listing.get("items") or []}
        with self.changed:
            for name in fresh.keys() - self.items.keys():
                self.added[name] += 1
            for obj in fresh.values():
                self.last[obj["metadata"].get("uid", "")] = obj
            self.items = fresh
            self.changed.notify_all()
        self.synced.set()
        version = listing["metadata"]["resourceVersion"]
        while not self.stopping.is_set():
            watch = kubernetes.watch.Watch()
            for event in watch.stream(
                self.list_fn,
                *self.args,
                resource_version=version,
                timeout_seconds=WATCH_SECONDS,
                allow_watch_bookmarks=True,
                _request_timeout=WATCH_SECONDS + 10,
            ):
                if event["type"] == "ERROR":
                    raise ApiException(status=410, reason="watch error")
                obj = self._dict(event["object"])
                version = obj["metadata"].get("resourceVersion", version)
                if event["type"] == "BOOKMARK":
                    continue
                name = obj["metadata"]["name"]
                with self.changed:
                    self.last[obj["metadata"].get("uid", "")] = obj
                    if event["type"] == "DELETED":
                        self.items.pop(name, None)
                    else:
                        if event["type"] == "ADDED" and name not in self.items:
                            self.added[name] += 1
                        self.items[name] = obj
                    self.changed.notify_all()
                if self.stopping.is_set():
                    watch.stop()
                    return


class Cache:
    """Informers sharing one Condition: `wait(check)` returns once check() is truthy."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.client = client
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.informers: list[Informer] = []

    def informer(self, list_fn: Callable[..., Any], *args: Any) -> Informer:
        """Start an informer and wait until its first list has arrived."""
        informer = Informer(self.client, list_fn, args, self.changed, self.stopping)
        self.informers.append(informer)
        informer.start()
        if not informer.synced.wait(30):
            raise TimeoutError(f"no first list from {informer.name} in 30 s")
        return informer

    def wait(self, check: Callable[[], T], timeout: float, what: str) -> T:
        """check()'s first truthy value, re-evaluated on every change (TimeoutError after)."""
        with self.changed:
            result = self.changed.wait_for(check, timeout)
        if not result:
            raise TimeoutError(f"not within {timeout} s: {what}")
        return result

    def stop(self) -> None:
        self.stopping.set()
