"""The three PATCH flavours of the API server: JSON merge (RFC 7386), JSON patch (RFC 6902)
and strategic merge (built-in kinds only).

kopf sends merge patches, the official client sends strategic merge patches for dicts and JSON
patches for lists; each must land exactly as on a cluster, or a test passes here and the
operator misbehaves there (a strategic merge of `finalizers` adds, a merge patch replaces).
"""

from __future__ import annotations

from typing import Any

from .apiserver_types import clone

# Lists of maps that strategic merge patch merges by a key, by field name (as in the Go types).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
# Lists of scalars that strategic merge patch merges as sets.
MERGED_SCALAR_LISTS = frozenset({"finalizers"})


class PatchError(Exception):
    """A patch that cannot be applied (422 Invalid, or 400 when it is not a patch at all)."""

    def __init__(self, message: str, *, bad_request: bool = False) -> None:
        super().__init__(message)
        self.bad_request = bad_request


# -- JSON merge patch ----------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- JSON patch ----------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for part in parts[:-1]:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise PatchError(f"doc is missing path: {'/' + '/'.join(parts)}")
    return cur


def _get(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return doc
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise PatchError(f"doc is missing key: {'/' + '/'.join(parts)}")


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise PatchError(f"index out of range: {last}")
    else:
        raise PatchError("cannot add to a scalar")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise PatchError(f"unable to remove nonexistent key: {last}: missing value")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 on a copy of `doc`; any failing operation (including `test`) fails it all."""
    if not isinstance(ops, list):
        raise PatchError(
            "error decoding patch: json: cannot unmarshal object into Go value of type "
            "[]handlers.jsonPatchOp",
            bad_request=True,
        )
    doc = clone(doc)
    for op in ops:
        if not isinstance(op, dict) or "path" not in op:
            raise PatchError("invalid operation")
        kind, parts = op.get("op"), _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, parts, clone(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, parts)
        elif kind == "replace":
            _get(doc, parts)
            doc = _add(_remove(doc, parts), parts, clone(op.get("value"))) if parts else op["value"]
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = clone(_get(doc, source))
            if kind == "move":
                doc = _remove(doc, source)
            doc = _add(doc, parts, value)
        elif kind == "test":
            if _get(doc, parts) != op.get("value"):
                raise PatchError(f"testing value {op['path']} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {kind}")
    return doc


# -- strategic merge patch -----------------------------------------------------------------------


def strategic_merge_patch(original: Any, patch: Any) -> Any:
    """Merge a strategic patch: maps merge, keyed lists merge by key, `$patch` directives apply."""
    if not isinstance(patch, dict) or not isinstance(original, dict):
        return _strip_directives(clone(patch))
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives({k: clone(v) for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return None
    result = dict(original)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            kept = [v for v in result.get(name) or [] if v not in value]
            if kept:
                result[name] = kept
            else:
                result.pop(name, None)
            continue
        if key.startswith("$"):
            continue  # $setElementOrder/..., $retainKeys: ordering hints only
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key) or {}, value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = value
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(field: str, original: Any, patch: list[Any]) -> list[Any]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return list(_strip_directives([clone(p) for p in patch if not _is_directive(p)]))
    if field in MERGED_SCALAR_LISTS and isinstance(original, list):
        return list(patch) + [v for v in original if v not in patch]
    key = MERGE_KEYS.get(field)
    if not key or not isinstance(original, list):
        return list(_strip_directives(clone(patch)))
    result = [clone(item) for item in original]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            continue
        index = next(
            (
                i
                for i, cur in enumerate(result)
                if isinstance(cur, dict) and cur.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_strip_directives(clone(item)))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def _is_directive(item: Any) -> bool:
    return isinstance(item, dict) and set(item) == {"$patch"}


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_directives(v)
            for k, v in value.items()
            if not k.startswith("$") and v is not None
        }
    if isinstance(value, list):
        return [_strip_directives(v) for v in value if not _is_directive(v)]
    return value
