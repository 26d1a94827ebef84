"""`kopflow cache list|clear`: the operator's task cache (ConfigMaps) seen and cleared by users.

Runs with the user's kubeconfig (`--kubeconfig`, `--context`, `-n`) over kubernetes_asyncio.
Only the standard library is imported at module level: `kopflow validate` must stay fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

CACHE_LABEL = "kopflow.dev/cache"
WORKFLOW_LABEL = "kopflow.dev/workflow"
TASK_LABEL = "kopflow.dev/task"
PAGE = 500


def add_parser(sub: Any) -> None:
    """Register `kopflow cache` on the top-level subparsers."""
    cache = sub.add_parser("cache", help="list or clear the operator's cached task results")
    verbs = cache.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workflow", metavar="W", help="only the entries stored by Workflow W")
    common.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace you may list"
    )
    from kopflow.commands import add_cluster_options

    add_cluster_options(common)
    p = verbs.add_parser("list", parents=[common], help="show cache entries")
    p.add_argument("-o", "--output", choices=["wide", "json"], help="more columns, or JSON")
    p.set_defaults(func=main)
    p = verbs.add_parser("clear", parents=[common], help="delete cache entries")
    p.add_argument("--expired", action="store_true", help="only entries already expired")
    p.add_argument("--yes", action="store_true", help="do not ask before deleting")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from kopflow.commands.common import run_command

    return run_command(args, lambda kube: _main(kube, args))


def _entry(cm: Any, now: datetime) -> dict[str, Any]:
    meta, data, labels = cm.metadata, cm.data or {}, cm.metadata.labels or {}
    expires = data.get("expiresAt")
    try:
        outputs = json.loads(data.get("outputs") or "{}")
    except ValueError:
        outputs = {}
    try:
        expired = datetime.fromisoformat(str(expires).replace("Z", "+00:00")) <= now
    except ValueError:
        expired = True
    return {
        "namespace": meta.namespace,
        "name": meta.name,
        "workflow": labels.get(WORKFLOW_LABEL),
        "task": labels.get(TASK_LABEL),
        "expiresAt": expires,
        "expired": expired,
        "created": meta.creation_timestamp.isoformat() if meta.creation_timestamp else None,
        "outputs": outputs,
    }


async def _entries(core: Any, namespace: str | None, workflow: str | None) -> list[Any]:
    """Every cache ConfigMap (of one Workflow), in pages."""
    from kopflow.engine.naming import label_value

    selector = CACHE_LABEL
    if workflow:
        selector += f",{WORKFLOW_LABEL}={label_value(workflow)}"
    found: list[Any] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"label_selector": selector, "limit": PAGE}
        if token:
            kwargs["_continue"] = token
        if namespace is None:
            page = await core.list_config_map_for_all_namespaces(**kwargs)
        else:
            page = await core.list_namespaced_config_map(namespace, **kwargs)
        found.extend(page.items)
        token = page.metadata._continue
        if not token:
            return found


async def _main(kube: Any, args: argparse.Namespace) -> int:
    """On the user's kubeconfig, as every cluster command (cliclient.connect)."""
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    from kopflow.cliclient import CliError

    core = client.CoreV1Api(kube.api)
    namespace = None if args.all_namespaces else kube.namespace
    try:
        items = await _entries(core, namespace, args.workflow)
        now = datetime.now(UTC)
        if args.verb == "list":
            _print(sorted((_entry(cm, now) for cm in items), key=_order), args)
            return 0
        return await _clear(core, [_entry(cm, now) for cm in items], args)
    except ApiException as err:
        where = "all namespaces" if namespace is None else f"namespace {namespace}"
        raise CliError(f"{where}: the API answered {err.status} {err.reason}", 2) from err


def _order(entry: dict[str, Any]) -> tuple[str, str, str, str]:
    return (entry["namespace"], entry["workflow"] or "", entry["task"] or "", entry["name"])


def _print(entries: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if args.output == "json":
        print(json.dumps(entries, indent=2))
        return
    if not entries:
        print("no cache entries", file=sys.stderr)
        return
    columns = ["WORKFLOW", "TASK", "EXPIRES", "OUTPUTS"]
    if args.all_namespaces:
        columns.insert(0, "NAMESPACE")
    if args.output == "wide":
        columns += ["CREATED", "NAME"]
    rows = [columns]
    for e in entries:
        row = {
            "NAMESPACE": e["namespace"],
            "WORKFLOW": e["workflow"] or "-",
            "TASK": e["task"] or "-",
            "EXPIRES": f"{e['expiresAt']}{' (expired)' if e['expired'] else ''}",
            "OUTPUTS": ",".join(sorted(e["outputs"])) or "-",
            "CREATED": e["created"] or "-",
            "NAME": e["name"],
        }
        rows.append([row[c] for c in columns])
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    for r in rows:
        print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


async def _clear(core: Any, entries: list[dict[str, Any]], args: argparse.Namespace) -> int:
    from kubernetes_asyncio.client.exceptions import ApiException

    from kopflow.cliclient import CliError

    if args.expired:
        entries = [e for e in entries if e["expired"]]
    if not entries:
        print("no cache entries to delete")
        return 0
    what = f"{len(entries)} cache entr{'y' if len(entries) == 1 else 'ies'}"
    if args.workflow:
        what += f" of workflow {args.workflow}"
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(f"would delete {what}; pass --yes to confirm", 2)
        if input(f"delete {what}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    deleted = 0
    for e in entries:
        try:
            await core.delete_namespaced_config_map(e["name"], e["namespace"])
            deleted += 1
        except ApiException as err:
            if err.status != 404:
                raise
    print(f"deleted {deleted} cache entr{'y' if deleted == 1 else 'ies'}")
    return 0
