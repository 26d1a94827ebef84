"""The emulator's storage and write semantics: what etcd plus the generic registry do.

One global resourceVersion counter (as etcd's revision), objects indexed by resource and
namespace, a bounded per-resource event history for watch resumption (410 Gone beyond it), and
the create/update/patch/delete rules every client sees: optimistic concurrency, status
subresource, generation, finalizers, deletionTimestamp, propagation finalizers.

Everything here runs on the emulator's event loop thread; objects in the store are never mutated
in place (every write stores a fresh copy), so watch events and readers can share them.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from .apiserver_builtins import builtin_types, check_decode, crd_types, metadata_causes
from .apiserver_patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from .apiserver_selectors import FieldSelector, LabelSelector
from .apiserver_types import (
    ApiError,
    Cause,
    Obj,
    ResourceType,
    already_exists,
    bad_request,
    clone,
    conflict,
    forbidden_field,
    invalid_for,
    meta,
    new_uid,
    not_found,
    now_ts,
    random_suffix,
    required,
    unsupported_media_type,
)

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
Key = tuple[str, str]
Ref = tuple[Key, str, str]  # (resource key, namespace, name)
Listener = Callable[[ResourceType, str, Obj, Obj | None], None]
_VOLATILE = ("resourceVersion", "managedFields")
_PROPAGATION = ("Foreground", "Background", "Orphan")


class Gone(Exception):
    """A watch asked for a resourceVersion older than the retained window."""

    def __init__(self, requested: str, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")


class Watcher:
    """One watch stream's filter and queue; the store pushes matching events into it."""

    def __init__(
        self, rt: ResourceType, namespace: str | None, labels: LabelSelector, fields: FieldSelector
    ) -> None:
        self.rt, self.namespace, self.labels, self.fields = rt, namespace, labels, fields
        self.queue: asyncio.Queue[tuple[str, Obj] | None] = asyncio.Queue()

    def matches(self, obj: Obj) -> bool:
        m = obj.get("metadata") or {}
        if self.namespace and m.get("namespace") != self.namespace:
            return False
        return self.labels.matches(m.get("labels")) and self.fields.matches(obj)

    def offer(self, kind: str, obj: Obj, old: Obj | None) -> None:
        """Translate a store event for this filter: leaving the selection reads as DELETED."""
        now = self.matches(obj)
        if kind == "MODIFIED" and old is not None:
            before = self.matches(old)
            if before and not now:
                kind, now = "DELETED", True
            elif now and not before:
                kind = "ADDED"
        if now:
            self.queue.put_nowait((kind, obj))

    def close(self) -> None:
        self.queue.put_nowait(None)


ETCD_REQUEST_LIMIT = 1536 * 1024
"""etcd's default --max-request-bytes: a larger object is refused (the real server's 500)."""


def _comparable(obj: Obj) -> Obj:
    out = dict(obj)
    out["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _VOLATILE}
    return out


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def terminating(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


class Store:
    """All objects, their history and watchers, and the semantics of every write."""

    def __init__(
        self, *, window: int = 1000, first_rv: int = 1000, seed: int | None = None
    ) -> None:
        self.rv = first_rv
        self.first_rv = first_rv
        self.window = window
        self.rng = random.Random(seed)
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        self.storage: dict[Key, ResourceType] = {}
        self.data: dict[Key, dict[str, dict[str, Obj]]] = {}
        self.history: dict[Key, deque[tuple[int, str, Obj, Obj | None]]] = {}
        self.window_start: dict[Key, int] = {}
        self.watchers: dict[Key, set[Watcher]] = {}
        self.listeners: list[Listener] = []
        self.by_uid: dict[str, Ref] = {}
        self.dependents: dict[str, set[Ref]] = {}
        self.labels: dict[Key, dict[tuple[str, str], set[tuple[str, str]]]] = {}
        for rt in builtin_types():
            self.register(rt)
        self.namespaces = self.storage[("", "namespaces")]
        self.crds = self.storage[("apiextensions.k8s.io", "customresourcedefinitions")]
        self.listeners.append(self._crd_listener)

    def _crd_listener(self, rt: ResourceType, kind: str, obj: Obj, old: Obj | None) -> None:
        if rt is self.crds:
            self.sync_crd(kind, obj)

    # -- types ---------------------------------------------------------------------------------

    def register(self, rt: ResourceType) -> None:
        self.types[(rt.group, rt.version, rt.plural)] = rt
        if rt.storage or rt.key not in self.storage:
            self.storage[rt.key] = rt
        self.data.setdefault(rt.key, {})
        self.history.setdefault(rt.key, deque())
        self.window_start.setdefault(rt.key, self.rv)
        self.watchers.setdefault(rt.key, set())

    def unregister(self, crd_name: str) -> None:
        for type_key, rt in list(self.types.items()):
            if rt.crd_name == crd_name:
                del self.types[type_key]
                self.storage.pop(rt.key, None)
                for watcher in list(self.watchers.pop(rt.key, ())):
                    watcher.close()
                for ns_objects in self.data.pop(rt.key, {}).values():
                    for obj in ns_objects.values():
                        self.by_uid.pop(obj["metadata"]["uid"], None)
                self.history.pop(rt.key, None)
                self.window_start.pop(rt.key, None)
                self.labels.pop(rt.key, None)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group = api_version.rpartition("/")[0]
        for rt in self.storage.values():
            if rt.group == group and rt.kind == kind:
                return rt
        return None

    def served(self) -> list[ResourceType]:
        return list(self.types.values())

    # -- reads ---------------------------------------------------------------------------------

    def find(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        return self.data.get(rt.key, {}).get(namespace if rt.namespaced else "", {}).get(name)

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.find(rt, namespace, name)
        if obj is None:
            raise not_found(rt, name)
        return obj

    def resolve(self, ref: Ref) -> Obj | None:
        key, namespace, name = ref
        return self.data.get(key, {}).get(namespace, {}).get(name)

    def iter_objects(self, rt: ResourceType, namespace: str | None) -> Iterator[Obj]:
        """Objects in key order (namespace, then name) as etcd returns them."""
        buckets = self.data.get(rt.key, {})
        spaces = [namespace] if namespace is not None and rt.namespaced else sorted(buckets)
        for ns in spaces:
            objects = buckets.get(ns, {})
            for name in sorted(objects):
                yield objects[name]

    def select(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> list[Obj]:
        pinned = fields.name()
        indexed = [self.labels.get(rt.key, {}).get(pair, set()) for pair in labels.equalities()]
        if pinned is not None and namespace is not None:
            candidates: Any = [o for o in [self.find(rt, namespace, pinned)] if o is not None]
        elif indexed:  # key=value clauses: start from the smallest label index entry
            refs = sorted(
                r for r in min(indexed, key=len) if namespace is None or r[0] == namespace
            )
            bucket = self.data.get(rt.key, {})
            candidates = [bucket[ns][name] for ns, name in refs]
        else:
            candidates = self.iter_objects(rt, namespace)
        return [
            o
            for o in candidates
            if labels.matches((o.get("metadata") or {}).get("labels")) and fields.matches(o)
        ]

    def count(self, rt: ResourceType) -> int:
        return sum(len(v) for v in self.data.get(rt.key, {}).values())

    # -- watch ---------------------------------------------------------------------------------

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        since: str | None,
        initial: bool,
    ) -> Watcher:
        """Register a watcher; replay history after `since`, or list as ADDED when there is none."""
        watcher = Watcher(rt, namespace, labels, fields)
        if since in (None, "", "0") or initial:
            for obj in self.select(rt, namespace, labels, fields):
                watcher.queue.put_nowait(("ADDED", obj))
        if since not in (None, "", "0"):
            try:
                start = int(str(since))
            except ValueError as exc:
                raise bad_request(f"invalid resource version: {since}") from exc
            if start < self.window_start.get(rt.key, self.first_rv):
                raise Gone(str(since), self.window_start[rt.key] + 1)
            if not initial:
                for rv, kind, obj, old in self.history.get(rt.key, ()):
                    if rv > start:
                        watcher.offer(kind, obj, old)
        self.watchers.setdefault(rt.key, set()).add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self.watchers.get(watcher.rt.key, set()).discard(watcher)

    def close_watchers(self) -> None:
        for watchers in self.watchers.values():
            for watcher in list(watchers):
                watcher.close()

    # -- the single write path -----------------------------------------------------------------

    def _commit(self, rt: ResourceType, kind: str, obj: Obj, old: Obj | None) -> Obj:
        if kind != "DELETED" and len(json.dumps(obj, separators=(",", ":"))) > ETCD_REQUEST_LIMIT:
            # what kube-apiserver v1.36 answers when etcd refuses the write: a bare 500
            raise ApiError(500, "", "etcdserver: request is too large")
        self.rv += 1
        m = obj["metadata"]
        m["resourceVersion"] = str(self.rv)
        ns, name, uid = m.get("namespace", "") if rt.namespaced else "", m["name"], m["uid"]
        bucket = self.data[rt.key].setdefault(ns, {})
        ref: Ref = (rt.key, ns, name)
        old_owners = {
            r.get("uid") for r in ((old or {}).get("metadata") or {}).get("ownerReferences") or []
        }
        new_owners = (
            set() if kind == "DELETED" else {r.get("uid") for r in m.get("ownerReferences") or []}
        )
        for owner in old_owners - new_owners:
            self.dependents.get(owner, set()).discard(ref)
        for owner in new_owners - old_owners:
            self.dependents.setdefault(owner, set()).add(ref)
        self._index_labels(rt.key, (ns, name), old, None if kind == "DELETED" else obj)
        if kind == "DELETED":
            bucket.pop(name, None)
            if not bucket:
                self.data[rt.key].pop(ns, None)
            self.by_uid.pop(uid, None)
        else:
            bucket[name] = obj
            self.by_uid[uid] = ref
        history = self.history[rt.key]
        history.append((self.rv, kind, obj, old))
        while len(history) > self.window:
            self.window_start[rt.key] = history.popleft()[0]
        for watcher in list(self.watchers.get(rt.key, ())):
            watcher.offer(kind, obj, old)
        for listener in list(self.listeners):
            listener(rt, kind, obj, old)
        return obj

    def _index_labels(
        self, key: Key, where: tuple[str, str], old: Obj | None, new: Obj | None
    ) -> None:
        """Keep (label, value) -> {(namespace, name)} current for equality selectors."""
        index = self.labels.setdefault(key, {})
        before = set((((old or {}).get("metadata") or {}).get("labels") or {}).items())
        after = set((((new or {}).get("metadata") or {}).get("labels") or {}).items())
        for pair in before - after:
            refs = index.get(pair)
            if refs is not None:
                refs.discard(where)
                if not refs:
                    del index[pair]
        for pair in after - before:
            index.setdefault(pair, set()).add(where)

    # -- create --------------------------------------------------------------------------------

    def _check_type(self, rt: ResourceType, obj: Obj) -> None:
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != rt.kind:
            raise bad_request(
                f'{kind} in version "{rt.version}" cannot be handled as a {rt.kind}: converting '
                f"({rt.version}.{kind}) to ({rt.group or 'core'}.{rt.kind}): unknown conversion"
            )
        if api_version and api_version != rt.group_version:
            raise bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: no kind '
                f'"{rt.kind}" is registered for version "{api_version}" in scheme '
                '"pkg/runtime/scheme.go:111"'
            )
        obj["kind"], obj["apiVersion"] = rt.kind, rt.group_version

    def _unknown_fields(self, rt: ResourceType, obj: Obj, validation: str) -> list[str]:
        if rt.known_fields is None:
            return []
        unknown = sorted(k for k in obj if k not in rt.known_fields)
        for key in unknown:
            del obj[key]
        return self._field_warnings(rt, unknown, validation)

    def _field_warnings(self, rt: ResourceType, unknown: list[str], validation: str) -> list[str]:
        if unknown and validation == "Strict":
            raise bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict '
                f'decoding error: unknown field "{unknown[0]}"'
            )
        return [] if validation == "Ignore" else [f'unknown field "{u}"' for u in unknown]

    def _check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        ns = self.find(self.namespaces, "", namespace)
        if ns is None:
            raise not_found(self.namespaces, namespace)
        if terminating(ns):
            message = (
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated"
            )
            cause = {
                "reason": "NamespaceTerminating",
                "message": f"namespace {namespace} is being terminated",
                "field": "metadata.namespace",
            }
            raise ApiError(
                403,
                "Forbidden",
                f'{rt.qualified} "{name}" is forbidden: {message}',
                details={**rt.details(name), "causes": [cause]},
            )

    def _check_service_account(self, pod: Obj) -> None:
        """ServiceAccount admission: a pod's account must exist (Jobs then fail to create pods)."""
        m, spec = pod["metadata"], pod.get("spec") or {}
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        if self.find(self.storage[("", "serviceaccounts")], m["namespace"], account) is None:
            pods = self.storage[("", "pods")]
            message = (
                f'{pods.qualified} "{m.get("name") or m.get("generateName", "")}" is forbidden: '
                f"error looking up service account {m['namespace']}/{account}: "
                f'serviceaccount "{account}" not found'
            )
            raise ApiError(403, "Forbidden", message, details=pods.details(m.get("name", "")))

    def create(
        self,
        rt: ResourceType,
        namespace: str,
        body: Any,
        *,
        dry_run: bool = False,
        validation: str = "Warn",
        manager: str = "",
        managed_fields: list[Obj] | None = None,
    ) -> tuple[Obj, list[str]]:
        """POST semantics: defaults, validation, generateName, uid, generation 1, 409 on a clash."""
        if not isinstance(body, dict):
            raise bad_request(f"the object provided is unrecognized (must be of type {rt.kind})")
        obj = clone(body)
        self._check_type(rt, obj)
        warnings = self._unknown_fields(rt, obj, validation)
        m = meta(obj)
        if rt.namespaced:
            if m.get("namespace") and m["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the "
                    "request"
                )
            m["namespace"] = namespace
        else:
            m.pop("namespace", None)
        if rt.namespaced:
            self._check_namespace(rt, namespace, m.get("name") or m.get("generateName") or "")
        if not m.get("name") and m.get("generateName"):
            for _ in range(8):
                m["name"] = m["generateName"] + random_suffix(self.rng)
                if self.find(rt, namespace, m["name"]) is None:
                    break
        if not m.get("name"):
            raise invalid_for(
                rt, "", [required("metadata.name", "name or generateName is required")]
            )
        if rt.builtin:
            check_decode(rt, obj)
        if rt.key == ("", "pods"):
            self._check_service_account(obj)
        for key in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
            "managedFields",
        ):
            m.pop(key, None)
        m["uid"] = new_uid()
        m["creationTimestamp"] = now_ts()
        if rt.has_generation:
            m["generation"] = 1
        if rt.on_create:
            rt.on_create(obj)
        elif rt.status_subresource:
            obj.pop("status", None)
        warnings += self._admit(rt, obj, None, validation)
        if self.find(rt, namespace, m["name"]) is not None:
            raise already_exists(rt, m["name"])
        m["managedFields"] = managed_fields or [
            self._managed_entry(rt, manager or "unknown", "Update")
        ]
        if dry_run:
            return obj, warnings
        return self._commit(rt, "ADDED", obj, None), warnings

    def _admit(
        self,
        rt: ResourceType,
        obj: Obj,
        old: Obj | None,
        validation: str,
        subresource: str | None = None,
    ) -> list[str]:
        """Defaulting, pruning and validation shared by every write."""
        warnings: list[str] = []
        if rt.default:
            rt.default(obj, rt)
        causes: list[Cause] = metadata_causes(
            obj,
            label_name=rt.plural == "namespaces",
            path_segment=rt.group == "rbac.authorization.k8s.io",
        )
        if rt.schema is not None:
            dropped = rt.schema.prune(obj)
            warnings += self._field_warnings(rt, dropped, validation)
            rt.schema.apply_defaults(obj)
            causes += rt.schema.validate(obj, old, status=subresource == "status")
        if rt.validate:
            causes += rt.validate(obj, old)
        if causes:
            raise invalid_for(rt, obj["metadata"].get("name", ""), causes)
        if rt.normalize:
            rt.normalize(obj)
        return warnings

    @staticmethod
    def _managed_entry(rt: ResourceType, manager: str, operation: str) -> Obj:
        return {
            "manager": manager,
            "operation": operation,
            "apiVersion": rt.group_version,
            "time": now_ts(),
            "fieldsType": "FieldsV1",
            "fieldsV1": {},
        }

    # -- update --------------------------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        validation: str = "Warn",
        manager: str = "",
    ) -> tuple[Obj, bool, list[str]]:
        """PUT semantics; returns (object, created, warnings)."""
        if not isinstance(body, dict):
            raise bad_request(f"the object provided is unrecognized (must be of type {rt.kind})")
        new = clone(body)
        body_name = (new.get("metadata") or {}).get("name")
        if body_name != name:
            raise bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        old = self.find(rt, namespace, name)
        if old is None:
            if rt.create_on_update and subresource is None:
                obj, warnings = self.create(
                    rt, namespace, new, dry_run=dry_run, validation=validation, manager=manager
                )
                return obj, True, warnings
            raise not_found(rt, name)
        self._check_type(rt, new)
        warnings = self._unknown_fields(rt, new, validation)
        obj, more = self._update(
            rt,
            old,
            new,
            subresource=subresource,
            dry_run=dry_run,
            validation=validation,
            manager=manager,
        )
        return obj, False, warnings + more

    def _update(
        self,
        rt: ResourceType,
        old: Obj,
        new: Obj,
        *,
        subresource: str | None,
        dry_run: bool = False,
        validation: str = "Warn",
        manager: str = "",
        from_patch: bool = False,
        keep_managed: bool = False,
    ) -> tuple[Obj, list[str]]:
        name = old["metadata"]["name"]
        m, old_m = meta(new), old["metadata"]
        if rt.builtin:
            problem = self._decode_problem(rt, new)
            if problem and from_patch:
                cause = Cause("patch", "FieldValueInvalid", f"Invalid value: {problem}")
                raise ApiError(
                    422,
                    "Invalid",
                    f'"" is invalid: patch: {cause.message}',
                    details={"causes": [cause.to_json()]},
                )
            if problem:
                check_decode(rt, new)
        if m.get("uid") and m["uid"] != old_m["uid"]:
            raise conflict(
                rt,
                name,
                (
                    "StorageError: invalid object, Code: 4, "
                    f"Key: /registry/{rt.plural}/{old_m.get('namespace', '')}/{name}, "
                    "ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: "
                    f"UID in precondition: {m['uid']}, UID in object meta: {old_m['uid']}"
                ),
            )
        if m.get("resourceVersion"):
            if m["resourceVersion"] != old_m["resourceVersion"]:
                raise conflict(rt, name)
        elif not rt.unconditional_update and not from_patch:
            raise invalid_for(
                rt,
                name,
                [
                    Cause(
                        "metadata.resourceVersion",
                        "FieldValueInvalid",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        if rt.namespaced and m.get("namespace") and m["namespace"] != old_m.get("namespace"):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        new = self._merge_for_subresource(rt, old, new, subresource)
        m = new["metadata"]
        for key in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "generateName",
        ):
            if key in old_m:
                m[key] = old_m[key]
            else:
                m.pop(key, None)
        m.pop("selfLink", None)
        if terminating(old):
            added = [
                f for f in m.get("finalizers") or [] if f not in (old_m.get("finalizers") or [])
            ]
            if added:
                listed = ", ".join(f'"{f}"' for f in added)
                text = (
                    "no new finalizers can be added if the object is being deleted, found new "
                    f"finalizers []string{{{listed}}}"
                )
                cause = forbidden_field("metadata.finalizers", text)
                error = invalid_for(rt, name, [cause])
                error.details["causes"] *= 2  # the real server reports this cause twice
                raise error
        warnings = self._admit(rt, new, old, validation, subresource)
        m["resourceVersion"] = old_m["resourceVersion"]
        if not keep_managed:
            m["managedFields"] = old_m.get("managedFields", [])
        if _comparable(new) == _comparable(old):
            return old, warnings
        if rt.has_generation and _spec_part(new) != _spec_part(old):
            m["generation"] = int(old_m.get("generation") or 0) + 1
        if manager:
            m["managedFields"] = [e for e in m["managedFields"] if e.get("manager") != manager] + [
                self._managed_entry(rt, manager, "Update")
            ]
        if dry_run:
            return new, warnings
        if self._finished(rt, new):
            return self._commit(rt, "DELETED", new, old), warnings
        return self._commit(rt, "MODIFIED", new, old), warnings

    @staticmethod
    def _decode_problem(rt: ResourceType, obj: Obj) -> str | None:
        try:
            check_decode(rt, obj)
        except ApiError as exc:
            return exc.message
        return None

    @staticmethod
    def _merge_for_subresource(
        rt: ResourceType, old: Obj, new: Obj, subresource: str | None
    ) -> Obj:
        """The main endpoint ignores status; /status ignores all but status (and maybe meta)."""
        if subresource in ("status", "finalize"):
            merged: Obj = clone(old)
            if subresource == "finalize":
                merged.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get(
                    "finalizers"
                ) or []
            elif "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            if rt.status_keeps_meta or subresource == "finalize":
                kept = {k: v for k, v in new["metadata"].items() if k not in ("ownerReferences",)}
                merged["metadata"] = {**merged["metadata"], **kept}
                for key in ("labels", "annotations", "finalizers"):
                    if key not in new["metadata"]:
                        merged["metadata"].pop(key, None)
            return merged
        if rt.status_subresource:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if rt.plural == "namespaces" and not rt.group:
            new["spec"] = old.get("spec", {})
        return new

    @staticmethod
    def _finished(rt: ResourceType, obj: Obj) -> bool:
        """A terminating object with no finalizers left (and no grace period) is removed."""
        m = obj["metadata"]
        if not m.get("deletionTimestamp") or m.get("finalizers"):
            return False
        if rt.plural == "namespaces" and not rt.group and (obj.get("spec") or {}).get("finalizers"):
            return False
        return not m.get("deletionGracePeriodSeconds")

    # -- patch ---------------------------------------------------------------------------------

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch: Any,
        content_type: str,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        validation: str = "Warn",
        manager: str = "",
    ) -> tuple[Obj, list[str]]:
        """PATCH semantics for merge, JSON and (built-ins only) strategic merge patches."""
        allowed = [JSON_PATCH, MERGE, APPLY] + ([STRATEGIC] if rt.builtin else [])
        if content_type not in allowed:
            raise unsupported_media_type()
        old = self.get(rt, namespace, name)
        try:
            if content_type == JSON_PATCH:
                new = json_patch(old, patch)
            elif not isinstance(patch, dict):
                raise bad_request("error decoding patch: json: cannot unmarshal into an object")
            elif content_type == MERGE:
                new = merge_patch(old, patch)
            elif content_type == STRATEGIC:
                new = strategic_merge_patch(old, patch)
            else:
                raise unsupported_media_type()
        except PatchError as exc:
            if exc.bad_request:
                raise bad_request(str(exc)) from exc
            raise ApiError(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request",
                details={},
            ) from exc
        if not isinstance(new, dict):
            raise bad_request("the patch does not produce an object")
        new = clone(new)
        new["kind"], new["apiVersion"] = rt.kind, rt.group_version
        unknown = self._unknown_fields(rt, new, validation)
        obj, warnings = self._update(
            rt,
            old,
            new,
            subresource=subresource,
            dry_run=dry_run,
            validation=validation,
            manager=manager,
            from_patch=True,
        )
        return obj, unknown + warnings

    def mutate(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        change: Callable[[Obj], None],
        *,
        subresource: str | None = None,
    ) -> Obj | None:
        """Controllers' read-modify-write (no conflicts: they run on the store's own thread)."""
        old = self.find(rt, namespace, name)
        if old is None:
            return None
        new = clone(old)
        change(new)
        obj, _ = self._update(rt, old, new, subresource=subresource, from_patch=True)
        return obj

    # -- delete --------------------------------------------------------------------------------

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        options: Obj | None = None,
        *,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """DELETE semantics; returns (object, removed now)."""
        options = options or {}
        obj = self.get(rt, namespace, name)
        m = obj["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != m["uid"]:
            raise conflict(
                rt,
                name,
                (
                    f"the UID in the precondition ({pre['uid']}) does not match the UID in record "
                    f"({m['uid']}). The object might have been deleted and then recreated"
                ),
                by_kind=True,
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != m["resourceVersion"]:
            raise conflict(
                rt,
                name,
                (
                    f"the ResourceVersion in the precondition ({pre['resourceVersion']}) does not "
                    f"match the ResourceVersion in record ({m['resourceVersion']}). The object "
                    "might have been modified"
                ),
                by_kind=True,
            )
        policy = options.get("propagationPolicy")
        if policy is not None and policy not in _PROPAGATION:
            cause = Cause(
                "propagationPolicy",
                "FieldValueNotSupported",
                f'Unsupported value: "{policy}": supported values: "Foreground", "Background", '
                '"Orphan", "nil"',
            )
            raise ApiError(
                422,
                "Invalid",
                f'DeleteOptions.meta.k8s.io "" is invalid: {cause.field}: {cause.message}',
                details={
                    "kind": "DeleteOptions",
                    "group": "meta.k8s.io",
                    "causes": [cause.to_json()],
                },
            )
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        policy = policy or rt.default_propagation
        if dry_run:
            return obj, True
        grace = self._grace(rt, obj, options)
        if terminating(obj):
            if grace < int(m.get("deletionGracePeriodSeconds") or 0):  # a shorter grace period wins
                new = self._stamped(obj, grace)
                if grace == 0 and not m.get("finalizers"):
                    return self._commit(rt, "DELETED", new, obj), True
                return self._commit(rt, "MODIFIED", new, obj), False
            return obj, False
        finalizers = list(m.get("finalizers") or [])
        wanted = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}.get(policy)
        if wanted and wanted not in finalizers:
            finalizers.append(wanted)
        pending_spec = rt.plural == "namespaces" and not rt.group
        if not finalizers and not grace and not pending_spec:
            return self._commit(rt, "DELETED", clone(obj), obj), True
        new = self._stamped(obj, grace)
        if finalizers:
            new["metadata"]["finalizers"] = finalizers
        if pending_spec:
            new.setdefault("status", {})["phase"] = "Terminating"
        if rt.has_generation and new["metadata"].get("generation"):
            new["metadata"]["generation"] += 1
        return self._commit(rt, "MODIFIED", new, obj), False

    @staticmethod
    def _stamped(obj: Obj, grace: int) -> Obj:
        new: Obj = clone(obj)
        m = new["metadata"]
        if not m.get("deletionTimestamp"):
            m["deletionTimestamp"] = now_ts()
        m["deletionGracePeriodSeconds"] = grace
        return new

    @staticmethod
    def _grace(rt: ResourceType, obj: Obj, options: Obj) -> int:
        """Only scheduled, unfinished pods delete gracefully (their kubelet ends it: grace 0)."""
        if rt.plural != "pods" or rt.group:
            return 0
        if not (obj.get("spec") or {}).get("nodeName"):
            return 0
        if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return 0
        requested = options.get("gracePeriodSeconds")
        if requested is None:
            requested = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        current = obj["metadata"].get("deletionGracePeriodSeconds")
        if current is not None and terminating(obj):
            requested = min(int(requested), int(current))
        return max(0, int(requested))

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        options: Obj | None = None,
        *,
        dry_run: bool = False,
    ) -> list[Obj]:
        out = []
        for obj in self.select(rt, namespace, labels, fields):
            m = obj["metadata"]
            try:
                deleted, _ = self.delete(
                    rt, m.get("namespace", ""), m["name"], options, dry_run=dry_run
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise
                continue
            out.append(deleted)
        return out

    def remove_finalizer(self, rt: ResourceType, obj: Obj, finalizer: str) -> None:
        m = obj["metadata"]
        if finalizer in (m.get("finalizers") or []):
            self.mutate(
                rt,
                m.get("namespace", ""),
                m["name"],
                lambda o: o["metadata"].__setitem__(
                    "finalizers", [f for f in o["metadata"]["finalizers"] if f != finalizer]
                ),
            )

    # -- CRDs ----------------------------------------------------------------------------------

    def sync_crd(self, kind: str, crd: Obj) -> None:
        """Serve (or stop serving) a CRD's resources when the CRD object changes."""
        name = crd["metadata"]["name"]
        if kind == "DELETED" or terminating(crd):
            rts = [rt for rt in self.types.values() if rt.crd_name == name]
            for rt in rts[:1]:
                for obj in list(self.iter_objects(rt, None)):
                    self._commit(rt, "DELETED", clone(obj), obj)
            if kind == "DELETED":
                self.unregister(name)
            elif terminating(crd):
                self.remove_finalizer(self.crds, crd, "customresourcecleanup.apiextensions.k8s.io")
            return
        new_types = crd_types(crd)
        for rt in list(self.types.values()):
            if rt.crd_name == name and rt.version not in {t.version for t in new_types}:
                del self.types[(rt.group, rt.version, rt.plural)]
        for rt in new_types:
            self.register(rt)
            if rt.storage:
                self.storage[rt.key] = rt
