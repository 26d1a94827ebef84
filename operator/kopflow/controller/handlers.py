"""kopf registrations: start-up, clean-up, and Workflow events; thin glue to the supervisor.

kopf runs the process (login, signals, liveness) and watches Workflows. Runs, Jobs and Pods
are watched by the lean watchers of `watch.py` instead: they are hot (several events per task
attempt) and only feed the supervisor. Nothing here adds finalizers or kopf annotations, so
deleting a run or a Workflow never waits for the operator.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from typing import Any

import kopf

from kopflow import metrics
from kopflow.api.workflow import GROUP, VERSION
from kopflow.controller import cachegc
from kopflow.controller.kube import API_THREADS, Kube, load_client
from kopflow.controller.leader import LeaderElector
from kopflow.controller.supervisor import Supervisor
from kopflow.controller.watch import Watcher

RUN_LABEL = "kopflow.dev/run"
OPTIONS: dict[str, Any] = {
    "leader_elect": False,
    "lease_namespace": None,
    "lease_seconds": 15,
    "namespaces": [],
    "clock": None,
    "cache_gc_per_minute": 60,
    "cache_gc_interval": 60.0,
}


def configure(**options: Any) -> None:
    """Options from the command line, read at startup."""
    OPTIONS.update(options)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    # No runtime scanning of namespaces and CRDs: it needs cluster-wide list/watch rights the
    # operator has no other use for, and without them kopf retries for about a minute before it
    # watches anything. The CRDs are installed before the operator (the chart's crds/).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=API_THREADS, thread_name_prefix="api")
    )
    kube = Kube(load_client())
    namespaces = OPTIONS["namespaces"] or None
    supervisor = memo.supervisor = Supervisor(
        kube,
        active=not OPTIONS["leader_elect"],
        namespaces=namespaces or [""],
        clock=OPTIONS["clock"],
    )
    metrics.track(supervisor)
    memo.watchers = [
        asyncio.create_task(
            Watcher(
                kube.client.configuration,
                path,
                "" if "workflowruns" in path else RUN_LABEL,
                on_event,
                on_relist,
                namespaces,
                shrink=supervisor.shrink if "workflowruns" in path else None,
            ).run(),
            name=f"watch {path}",
        )
        for path, on_event, on_relist in (
            (f"/apis/{GROUP}/{VERSION}/workflowruns", supervisor.on_run, supervisor.relist_runs),
            ("/apis/batch/v1/jobs", supervisor.on_job, supervisor.relist_jobs),
            ("/api/v1/pods", supervisor.on_pod, supervisor.relist_pods),
        )
    ]
    memo.cachegc = asyncio.create_task(
        cachegc.run(
            kube,
            lambda: supervisor.active,
            namespaces,
            OPTIONS["cache_gc_per_minute"],
            OPTIONS["cache_gc_interval"],
        ),
        name="cache collection",
    )
    if OPTIONS["leader_elect"]:
        namespace = OPTIONS["lease_namespace"] or os.environ.get("POD_NAMESPACE") or "default"
        elector = LeaderElector(
            kube,
            namespace,
            supervisor.activate,
            supervisor.deactivate,
            lease_seconds=OPTIONS["lease_seconds"],
        )
        kube.may_write = elector.may_write
        memo.elector = asyncio.create_task(elector.run(), name="leader election")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    tasks = [*getattr(memo, "watchers", ()), getattr(memo, "elector", None)]
    tasks.append(getattr(memo, "cachegc", None))
    for task in tasks:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await memo.supervisor.stop()
    await memo.supervisor.kube.http.close()


@kopf.on.event(GROUP, VERSION, "workflows")
async def workflow_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    memo.supervisor.on_workflow(event.get("type"), dict(event["object"]))
