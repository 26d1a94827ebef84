"""`kopflow backfill`: create the runs of a schedule's past slots, with the user's kubeconfig.

The runs are exactly the ones the operator would have created (same names, labels, owner and
scheduledTime), so a slot the schedule already ran, or a second backfill, is left alone (409).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from kopflow.api.workflow import GROUP, VERSION, WorkflowSpec
from kopflow.engine.schedule import run_body, slots_after
from kopflow.engine.validation import validate_spec

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _time(flag: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f'{flag} "{text}": use RFC 3339 such as 2026-11-28T03:00:00Z') from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main(args: argparse.Namespace) -> int:
    import kubernetes
    from kubernetes.client.exceptions import ApiException

    try:
        start, end = _time("--from", args.from_), _time("--to", args.to)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    if end < start:
        print("error: --to is before --from", file=sys.stderr)
        return EXIT_INVALID
    if end > datetime.now(UTC):
        print("error: --to is in the future; the schedule creates those runs", file=sys.stderr)
        return EXIT_INVALID
    try:
        kubernetes.config.load_kube_config(context=args.context)  # type: ignore[no-untyped-call]
    except (kubernetes.config.ConfigException, FileNotFoundError) as err:
        print(f"error: no usable kubeconfig: {err}", file=sys.stderr)
        return EXIT_FAILED
    namespace = args.namespace
    if namespace is None:
        try:
            _, current = kubernetes.config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
            namespace = current["context"].get("namespace") or "default"
        except (kubernetes.config.ConfigException, KeyError, TypeError):
            namespace = "default"
    api = kubernetes.client.CustomObjectsApi()
    try:
        workflow = cast(
            dict[str, Any],
            api.get_namespaced_custom_object(GROUP, VERSION, namespace, "workflows", args.workflow),
        )
    except ApiException as err:
        print(f"error: Workflow {namespace}/{args.workflow}: {err.reason}", file=sys.stderr)
        return EXIT_FAILED
    spec = WorkflowSpec.model_validate(workflow.get("spec") or {})
    if spec.schedule is None:
        print(f"error: Workflow {args.workflow} has no spec.schedule", file=sys.stderr)
        return EXIT_INVALID
    if issues := validate_spec(spec):
        print(f"error: Workflow {args.workflow}: {issues[0]}", file=sys.stderr)
        return EXIT_INVALID
    slots = []
    for slot in slots_after(spec.schedule, start - timedelta(microseconds=1)):
        if slot > end:
            break
        slots.append(slot)
        if len(slots) > args.max:
            print(
                f"error: more than {args.max} slots between --from and --to; narrow the range "
                "or raise --max",
                file=sys.stderr,
            )
            return EXIT_INVALID
    meta = workflow["metadata"]
    created = 0
    for slot in slots:
        body = run_body(meta["name"], meta.get("uid"), spec.schedule, slot)
        name = body["metadata"]["name"]
        if args.dry_run:
            print(f"would create {name} ({body['spec']['scheduledTime']})")
            continue
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, "workflowruns", body)
        except ApiException as err:
            if err.status != 409:
                print(f"error: creating {name}: {err.reason}", file=sys.stderr)
                return EXIT_FAILED
            print(f"exists  {name} (slot already taken)")
            continue
        created += 1
        print(f"created {name} ({body['spec']['scheduledTime']})")
    print(f"{created} run(s) created, {len(slots)} slot(s) from {args.from_} to {args.to}")
    return EXIT_OK
