"""kopf registrations: thin glue from watch events to the supervisor and the validator.

Runs are driven by plain watch events (no kopf finalizers, no kopf progress annotations on
runs), so deleting a run never waits for the operator.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from typing import Any

import kopf

from kopflow.api.workflow import GROUP, VERSION
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
}


def configure(**options: Any) -> None:
    """Options from the command line, read at startup."""
    OPTIONS.update(options)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = "kopflow.dev/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopflow.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kopflow.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    # kopf waits batch_window for more events of the same object before handling them: for
    # Job and Pod events that is pure latency between a task finishing and the next starting
    settings.batching.batch_window = 0.005
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=API_THREADS, thread_name_prefix="api")
    )
    kube = Kube(load_client())
    memo.supervisor = Supervisor(kube, active=not OPTIONS["leader_elect"])
    supervisor = memo.supervisor
    namespaces = OPTIONS["namespaces"] or None
    memo.watchers = [
        asyncio.create_task(
            Watcher(
                kube.client.configuration,
                path,
                "" if "workflowruns" in path else RUN_LABEL,
                on_event,
                on_relist,
                namespaces,
            ).run(),
            name=f"watch {path}",
        )
        for path, on_event, on_relist in (
            (f"/apis/{GROUP}/{VERSION}/workflowruns", supervisor.on_run, supervisor.relist_runs),
            ("/apis/batch/v1/jobs", supervisor.on_job, supervisor.relist_jobs),
            ("/api/v1/pods", supervisor.on_pod, supervisor.relist_pods),
        )
    ]
    if OPTIONS["leader_elect"]:
        namespace = OPTIONS["lease_namespace"] or os.environ.get("POD_NAMESPACE") or "default"
        elector = LeaderElector(
            kube,
            namespace,
            memo.supervisor.activate,
            memo.supervisor.deactivate,
            lease_seconds=OPTIONS["lease_seconds"],
        )
        memo.elector = asyncio.create_task(elector.run(), name="leader election")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    tasks = [*getattr(memo, "watchers", ()), getattr(memo, "elector", None)]
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
