"""Cache keys: a task's result may be reused only when everything that shapes it is the same.

The key is a SHA-256 over a canonical JSON document of the rendered task (image, command,
args, env, envFrom, script, declared outputs, rendered `cache.key`), the parameters (a
script sees them all as `KOPFLOW_PARAM_*`) and the namespace (caches never cross tenants).
The run, task name and attempt are left out: an identical task of another run is a hit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from kopflow.api.workflow import Task

KEY_VERSION = "kopflow-cache-v1"
"""Changing what goes into a key changes this, so old entries simply stop matching."""


def cache_key(namespace: str, task: Task, params: Mapping[str, str]) -> str:
    """The hex SHA-256 key of a merged, rendered task (see render.render_task)."""
    doc = {
        "v": KEY_VERSION,
        "namespace": namespace,
        "image": task.image,
        "command": task.command,
        "args": task.args,
        "env": [e.dump() for e in task.env or ()],
        "envFrom": [e.dump() for e in task.env_from or ()],
        "script": task.script.dump() if task.script is not None else None,
        "outputs": sorted(task.outputs or ()),
        "key": task.cache.key if task.cache is not None else "",
        "params": dict(sorted(params.items())),
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
