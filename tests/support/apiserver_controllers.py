"""The kube-controller-manager parts whose effects kopflow depends on: the garbage collector
(owner references with background, foreground and orphan propagation, dangling owners), the
namespace lifecycle controller and the service-account controller's `default` account.

They react to store events on the emulator's loop, one batch per loop iteration, and can be
switched off (`enabled = False`) to reproduce an API server with no controllers running.
"""

from __future__ import annotations

import asyncio
import logging

from .apiserver_store import Ref, Store, terminating
from .apiserver_types import ApiError, Obj, ResourceType

log = logging.getLogger(__name__)


class Controllers:
    """Garbage collector, namespace controller and default ServiceAccounts, event-driven."""

    def __init__(
        self, store: Store, loop: asyncio.AbstractEventLoop, *, enabled: bool = True
    ) -> None:
        self.store, self.loop, self.enabled = store, loop, enabled
        self.pending: set[tuple[str, Ref]] = set()
        self.scheduled = False
        store.listeners.append(self._on_event)

    # -- event intake --------------------------------------------------------------------------

    def _on_event(self, rt: ResourceType, kind: str, obj: Obj, old: Obj | None) -> None:
        if not self.enabled:
            return
        m = obj["metadata"]
        ns = m.get("namespace", "") if rt.namespaced else ""
        ref: Ref = (rt.key, ns, m["name"])
        if kind == "DELETED":
            for dependent in self.store.dependents.get(m["uid"], set()):
                self._enqueue("dependent", dependent)
            if ns:
                self._enqueue("namespace", (self.store.namespaces.key, "", ns))
        else:
            if m.get("ownerReferences"):
                self._enqueue("dependent", ref)
            if terminating(obj):
                self._enqueue("owner", ref)
                if rt is self.store.namespaces:
                    self._enqueue("namespace", ref)
            if rt is self.store.namespaces and kind == "ADDED":
                self._enqueue("serviceaccount", ref)
        if kind == "DELETED" or terminating(obj):
            for owner in m.get("ownerReferences") or []:
                owner_ref = self.store.by_uid.get(owner.get("uid", ""))
                if owner_ref:
                    self._enqueue("owner", owner_ref)

    def _enqueue(self, what: str, ref: Ref) -> None:
        self.pending.add((what, ref))
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.scheduled = False
        batch, self.pending = self.pending, set()
        for what, ref in sorted(batch):
            try:
                getattr(self, "_sync_" + what)(ref)
            except ApiError as exc:  # raced with another writer: the next event retries
                log.debug("controller %s %s: %s", what, ref, exc.message)

    # -- garbage collector ---------------------------------------------------------------------

    def _owner_present(self, namespace: str, ref: Obj) -> bool:
        rt = self.store.by_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
        if rt is None:
            return True  # an unknown kind cannot be verified; the real collector leaves it too
        owner = self.store.find(rt, namespace, str(ref.get("name", "")))
        return owner is not None and owner["metadata"]["uid"] == ref.get("uid")

    def _sync_dependent(self, ref: Ref) -> None:
        obj = self.store.resolve(ref)
        if obj is None or terminating(obj):
            return
        owners = obj["metadata"].get("ownerReferences") or []
        absent = {o.get("uid") for o in owners if not self._owner_present(ref[1], o)}
        if not absent:
            return
        rt = self.store.storage[ref[0]]
        if len(absent) == len(owners):
            policy = (
                "Foreground" if self.store.dependents.get(obj["metadata"]["uid"]) else "Background"
            )
            self.store.delete(rt, ref[1], ref[2], {"propagationPolicy": policy})
        else:
            self.store.mutate(rt, ref[1], ref[2], lambda o: _drop_owners(o, absent))

    def _sync_owner(self, ref: Ref) -> None:
        owner = self.store.resolve(ref)
        if owner is None or not terminating(owner):
            return
        uid = owner["metadata"]["uid"]
        finalizers = owner["metadata"].get("finalizers") or []
        rt = self.store.storage[ref[0]]
        dependents = [
            (d, o)
            for d in sorted(self.store.dependents.get(uid, set()))
            if (o := self.store.resolve(d)) is not None
        ]
        if "orphan" in finalizers:
            for dep, _ in dependents:
                self.store.mutate(
                    self.store.storage[dep[0]], dep[1], dep[2], lambda o: _drop_owners(o, {uid})
                )
            self.store.remove_finalizer(rt, owner, "orphan")
        elif "foregroundDeletion" in finalizers:
            blocking = 0
            for dep, obj in dependents:
                dep_rt = self.store.storage[dep[0]]
                if not terminating(obj):
                    policy = (
                        "Foreground"
                        if self.store.dependents.get(obj["metadata"]["uid"])
                        else "Background"
                    )
                    self.store.delete(dep_rt, dep[1], dep[2], {"propagationPolicy": policy})
                refs = obj["metadata"].get("ownerReferences") or []
                if self.store.resolve(dep) is not None and any(
                    r.get("uid") == uid and r.get("blockOwnerDeletion") for r in refs
                ):
                    blocking += 1
            if not blocking:
                self.store.remove_finalizer(rt, owner, "foregroundDeletion")

    # -- namespaces ----------------------------------------------------------------------------

    def _sync_namespace(self, ref: Ref) -> None:
        ns_obj = self.store.resolve(ref)
        if ns_obj is None or not terminating(ns_obj):
            return
        name = ns_obj["metadata"]["name"]
        remaining = 0
        for rt in list(self.store.storage.values()):
            if not rt.namespaced:
                continue
            for obj in list(self.store.iter_objects(rt, name)):
                remaining += 1
                if not terminating(obj):
                    self.store.delete(
                        rt, name, obj["metadata"]["name"], {"propagationPolicy": "Background"}
                    )
        if remaining == 0:
            self.store.mutate(
                self.store.namespaces,
                "",
                name,
                lambda o: o.setdefault("spec", {}).__setitem__("finalizers", []),
                subresource="finalize",
            )

    def _sync_serviceaccount(self, ref: Ref) -> None:
        ns = self.store.resolve(ref)
        sa_type = self.store.storage[("", "serviceaccounts")]
        if ns is None or terminating(ns) or self.store.find(sa_type, ref[2], "default"):
            return
        body = {"metadata": {"name": "default"}}
        self.store.create(sa_type, ref[2], body, manager="kube-controller-manager")


def _drop_owners(obj: Obj, uids: set[object]) -> None:
    refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") not in uids]
    if refs:
        obj["metadata"]["ownerReferences"] = refs
    else:
        obj["metadata"].pop("ownerReferences", None)
