"""The ConfigMaps a run owns: its outputs shards and the pinned spec of its workflowRef.

They keep the run object small (engine/spill.py decides what goes where). Each is named after
the run, labelled `kopflow.dev/run`, and owned by the run (ownerReferences with its uid), so
the garbage collector deletes it with the run. The operator only creates, reads and patches
ConfigMaps by these names (RBAC: configmaps get/create/patch); one of the same name owned by
another object (a deleted run of the same name the collector has not reached yet) is never
written or read: the step fails and is retried.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from typing import Any

from kopflow.api.run import ConfigMapKeyRef, owner_reference
from kopflow.controller.client import MERGE_PATCH, ApiError
from kopflow.controller.kube import Kube
from kopflow.engine.naming import label_value
from kopflow.engine.spill import Budget

RUN_LABEL = "kopflow.dev/run"
SNAPSHOT_KEY = "spec.json"
SNAPSHOT_GZ_KEY = "spec.json.gz"
"""A spec over PLAIN_LIMIT (a ConfigMap holds 1 MiB, a Workflow 1.5 MiB) is kept gzipped."""
PLAIN_LIMIT = 900 * 1024
INLINE_ENV = "KOPFLOW_INLINE_OUTPUTS_BYTES"
"""Environment variable: the per-run inline outputs budget in bytes (default 128 KiB)."""


class NotOurs(Exception):
    """A ConfigMap of the name a run's data needs exists and belongs to something else."""


def budget() -> Budget:
    """The inline budget from KOPFLOW_INLINE_OUTPUTS_BYTES, else the default."""
    raw = os.environ.get(INLINE_ENV, "").strip()
    if not raw:
        return Budget()
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(
            f"error: {INLINE_ENV}={raw!r}: expected a number of bytes, e.g. 131072"
        ) from None
    return Budget(inline=max(0, value), per_task=min(Budget().per_task, max(0, value)))


def _owner(run: dict[str, Any]) -> dict[str, Any]:
    return owner_reference(run["metadata"])


def _path(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    return f"{base}/{name}" if name else base


def _check_owner(run: dict[str, Any], cm: dict[str, Any]) -> None:
    uid = run["metadata"]["uid"]
    owners = {r.get("uid") for r in cm["metadata"].get("ownerReferences") or ()}
    if uid not in owners:
        name = cm["metadata"]["name"]
        raise NotOurs(
            f"ConfigMap {name} exists and does not belong to run {run['metadata']['name']} "
            f"(uid {uid}); it is retried until that ConfigMap is gone"
        )


async def _create_or_get(
    kube: Kube, run: dict[str, Any], name: str, data: dict[str, str], binary: bool = False
) -> dict[str, Any] | None:
    """Create the ConfigMap; None when created, else the existing one (checked to be ours)."""
    namespace = run["metadata"]["namespace"]
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "labels": {RUN_LABEL: label_value(run["metadata"]["name"]),
                       "app.kubernetes.io/managed-by": "kopflow"},
            "ownerReferences": [_owner(run)],
        },
        "binaryData" if binary else "data": data,
    }  # fmt: skip
    try:
        await kube.http.request("POST", _path(namespace), body)
    except ApiError as err:
        if err.status != 409:
            raise
        existing = await kube.http.request("GET", _path(namespace, name))
        _check_owner(run, existing)
        return existing
    return None


async def write_shard(kube: Kube, run: dict[str, Any], name: str, entries: dict[str, str]) -> None:
    """Add entries (task -> outputs JSON) to the shard, creating it on its first entries."""
    existing = await _create_or_get(kube, run, name, entries)
    if existing is None:
        return
    data = existing.get("data") or {}
    missing = {k: v for k, v in entries.items() if data.get(k) != v}
    if missing:
        namespace = run["metadata"]["namespace"]
        patch = {"data": missing}
        await kube.http.request("PATCH", _path(namespace, name), patch, MERGE_PATCH)


async def read_shards(
    kube: Kube, run: dict[str, Any], names: list[str]
) -> dict[str, dict[str, str]]:
    """ConfigMap name -> data of the run's shards (a missing one reads as empty)."""
    namespace = run["metadata"]["namespace"]
    found: dict[str, dict[str, str]] = {}
    for name in names:
        try:
            cm = await kube.http.request("GET", _path(namespace, name))
        except ApiError as err:
            if err.status != 404:
                raise
            found[name] = {}
            continue
        _check_owner(run, cm)
        found[name] = dict(cm.get("data") or {})
    return found


def snapshot_name(run: str) -> str:
    """ConfigMap `<run>-workflow`, the run's name cut so that it stays a valid name."""
    return run[: 253 - len("-workflow")] + "-workflow"


async def pin_workflow(
    kube: Kube, run: dict[str, Any], spec: dict[str, Any]
) -> tuple[ConfigMapKeyRef, dict[str, Any]]:
    """Keep the Workflow's spec as the run starts in a ConfigMap the run owns; when one was
    written already (a restart between it and the status), that one is the run's spec."""
    name = snapshot_name(run["metadata"]["name"])
    text = json.dumps(spec, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) <= PLAIN_LIMIT:
        key, data, binary = SNAPSHOT_KEY, text, False
    else:
        key, binary = SNAPSHOT_GZ_KEY, True
        data = base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()
    existing = await _create_or_get(kube, run, name, {key: data}, binary)
    if existing is not None:
        spec = decode_spec(existing, key) or spec
    return ConfigMapKeyRef(config_map=name, key=key), spec


def decode_spec(cm: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The spec under key (gzipped in binaryData for a .gz key), or None when absent."""
    if key.endswith(".gz"):
        raw = (cm.get("binaryData") or {}).get(key)
        if raw is None:
            return None
        value: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(raw)))
        return value
    text = (cm.get("data") or {}).get(key)
    return None if text is None else json.loads(text)


async def read_snapshot(
    kube: Kube, run: dict[str, Any], ref: ConfigMapKeyRef
) -> dict[str, Any] | None:
    """The pinned spec, or None when its ConfigMap or key is gone."""
    namespace = run["metadata"]["namespace"]
    try:
        cm = await kube.http.request("GET", _path(namespace, ref.config_map))
    except ApiError as err:
        if err.status == 404:
            return None
        raise
    _check_owner(run, cm)
    return decode_spec(cm, ref.key)
