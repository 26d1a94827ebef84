"""`kopflow operator`: start kopf with kopflow's handlers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import kopf


def _build_models() -> None:
    """Build the validators of the models every event uses, now, once. The models build them
    on first use (api/base.py: `kopflow validate` starts fast that way); built here, the
    operator's first event costs what the others do. The pod template first, so that the
    others validate it inline (api/base.py: Lazy); then each whole model before its parts:
    a whole built from already built parts refers to them, and validating a WorkflowRun so
    costs 7% more instructions."""
    from kopflow.api.pod import PodTemplate
    from kopflow.api.run import WorkflowRun, WorkflowRunStatus
    from kopflow.api.workflow import Condition, WorkflowSpec

    for model in (PodTemplate, WorkflowRun, WorkflowRunStatus, WorkflowSpec, Condition):
        model.model_rebuild()


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; kopf handles both gracefully."""
    # kopf imports every Kubernetes client it finds installed, for their model classes; the
    # operator speaks raw JSON through kubernetes_asyncio and never needs the synchronous
    # `kubernetes` package (kept for `kopflow backfill` and the tests): not importing it saves
    # about a second of start-up CPU and its models' memory.
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    from kopflow.controller import (
        handlers,  # importing registers the handlers
        owned,
    )
    from kopflow.controller.clock import Clock

    owned.budget()  # a bad KOPFLOW_INLINE_OUTPUTS_BYTES stops the operator here, saying why
    _build_models()

    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.json_logs else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("kopflow").setLevel(logging.INFO)
    if not args.verbose:
        # kopf logs every handled event at INFO; runs produce thousands of them
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    handlers.configure(
        leader_elect=args.leader_elect,
        lease_namespace=args.lease_namespace,
        lease_seconds=args.lease_seconds,
        namespaces=args.namespace,
        clock=Clock(args.clock_anchor or 0.0, args.clock_rate),
        kubeconfig=args.kubeconfig,
        context=args.context,
        qps=args.qps,
        burst=args.burst,
        page_size=args.page_size,
        health_bound=args.health_bound,
        cache_gc_per_minute=args.cache_gc_per_minute,
        cache_gc_interval=args.cache_gc_interval,
    )
    asyncio.run(_operate(args))
    return 0


async def _operate(args: argparse.Namespace) -> None:
    """kopf with its /healthz on --health-port, and /metrics on --metrics-port beside it."""
    from kopflow import metrics
    from kopflow.controller import heap

    heap.measure()
    liveness = f"http://{args.health_host}:{args.health_port}/healthz" if args.health_port else None
    stop = None
    if args.metrics_port:
        stop = await metrics.serve(args.metrics_port, args.metrics_host)
    try:
        await kopf.operator(
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=liveness,
        )
    finally:
        if stop is not None:
            await stop()
