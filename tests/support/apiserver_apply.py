"""Server-side apply, reduced to what a test can observe: create-or-merge, field ownership per
manager in managedFields, 409 conflicts on fields another manager applied, and `force`.

Lists are owned atomically and removal of fields a manager stops applying is not modelled:
neither kopf nor kopflow sends apply patches; this exists so `kubectl apply --server-side`
against the emulator fails where a cluster would.
"""

from __future__ import annotations

from typing import Any

from .apiserver_patch import merge_patch
from .apiserver_store import Store
from .apiserver_types import ApiError, Cause, Obj, ResourceType, clone, invalid, now_ts, required

Path = tuple[str, ...]
_SKIPPED = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}


def _leaves(value: Any, prefix: Path = ()) -> dict[Path, Any]:
    if isinstance(value, dict) and value:
        out: dict[Path, Any] = {}
        for key, sub in value.items():
            out.update(_leaves(sub, (*prefix, key)))
        return out
    return {} if prefix in _SKIPPED else {prefix: value}


def _tree(paths: set[Path]) -> Obj:
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return root


def _paths(tree: Obj, prefix: Path = ()) -> set[Path]:
    if not tree:
        return {prefix} if prefix else set()
    out: set[Path] = set()
    for key, sub in tree.items():
        if key.startswith("f:"):
            out |= _paths(sub, (*prefix, key[2:]))
    return out


def _get(obj: Any, path: Path) -> Any:
    for part in path:
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _entry(rt: ResourceType, manager: str, paths: set[Path]) -> Obj:
    return {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": rt.group_version,
        "time": now_ts(),
        "fieldsType": "FieldsV1",
        "fieldsV1": _tree(paths),
    }


def apply(
    store: Store,
    rt: ResourceType,
    namespace: str,
    name: str,
    body: Any,
    *,
    manager: str | None,
    force: bool,
    subresource: str | None,
    dry_run: bool,
) -> tuple[Obj, bool, list[str]]:
    """Apply `body` as `manager`; returns (object, created, warnings)."""
    if not manager:
        raise invalid(
            "PatchOptions",
            "",
            [required("fieldManager", "is required for apply patch")],
            "meta.k8s.io",
        )
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "apply patches must be objects", details={})
    applied = _leaves(body)
    old = store.find(rt, namespace, name)
    if old is None:
        if subresource is not None:
            store.get(rt, namespace, name)
        managed = [_entry(rt, manager, set(applied))]
        obj, warnings = store.create(
            rt, namespace, body, dry_run=dry_run, manager=manager, managed_fields=managed
        )
        return obj, True, warnings
    entries = [dict(e) for e in old["metadata"].get("managedFields") or []]
    conflicts: list[tuple[str, Path]] = []
    for entry in entries:
        if entry.get("operation") != "Apply" or entry.get("manager") == manager:
            continue
        owned = _paths(entry.get("fieldsV1") or {})
        clash = {p for p in applied if p in owned and _get(old, p) != applied[p]}
        if clash and force:
            entry["fieldsV1"] = _tree(owned - clash)
        conflicts += [(entry["manager"], p) for p in sorted(clash)]
    if conflicts and not force:
        causes = [
            Cause("." + ".".join(p), "FieldManagerConflict", f'conflict with "{m}"')
            for m, p in conflicts
        ]
        listed = "\n".join(f'conflict with "{m}": .{".".join(p)}' for m, p in conflicts)
        plural = "" if len(causes) == 1 else "s"
        raise ApiError(
            409,
            "Conflict",
            f"Apply failed with {len(causes)} conflict{plural}: {listed}",
            details={"causes": [c.to_json() for c in causes]},
        )
    mine = next(
        (e for e in entries if e.get("manager") == manager and e.get("operation") == "Apply"), None
    )
    owned_now = (_paths(mine.get("fieldsV1") or {}) if mine else set()) | set(applied)
    entries = [
        e for e in entries if e is not mine and (e.get("fieldsV1") or e.get("operation") != "Apply")
    ]
    entries.append(_entry(rt, manager, owned_now))
    new = clone(merge_patch(old, body))
    new["metadata"]["managedFields"] = entries
    obj, warnings = store._update(
        rt, old, new, subresource=subresource, dry_run=dry_run, from_patch=True, keep_managed=True
    )
    return obj, False, warnings
