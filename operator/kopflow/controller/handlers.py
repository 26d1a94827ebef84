"""kopf registrations: thin glue from watch events to the supervisor and the validator.

Runs are driven by plain watch events (no kopf finalizers, no kopf progress annotations on
runs), so deleting a run never waits for the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import kopf

from kopflow.api.workflow import GROUP, VERSION
from kopflow.controller.kube import Kube, load_client
from kopflow.controller.leader import LeaderElector
from kopflow.controller.supervisor import Supervisor

RUN_LABEL = "kopflow.dev/run"
OPTIONS: dict[str, Any] = {"leader_elect": False, "lease_namespace": None, "lease_seconds": 15}


def configure(leader_elect: bool, lease_namespace: str | None, lease_seconds: int) -> None:
    """Options from the command line, read at startup."""
    OPTIONS.update(
        leader_elect=leader_elect, lease_namespace=lease_namespace, lease_seconds=lease_seconds
    )


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
    kube = Kube(load_client())
    memo.supervisor = Supervisor(kube, active=not OPTIONS["leader_elect"])
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
    elector = getattr(memo, "elector", None)
    if elector is not None:
        elector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await elector
    await memo.supervisor.stop()


@kopf.on.event(GROUP, VERSION, "workflowruns")
async def run_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    memo.supervisor.on_run(event.get("type"), dict(event["object"]))


@kopf.on.event("batch", "v1", "jobs", labels={RUN_LABEL: kopf.PRESENT})
async def job_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    memo.supervisor.on_job(event.get("type"), dict(event["object"]))


@kopf.on.event("", "v1", "pods", labels={RUN_LABEL: kopf.PRESENT})
async def pod_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    memo.supervisor.on_pod(event.get("type"), dict(event["object"]))


@kopf.on.event(GROUP, VERSION, "workflows")
async def workflow_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    memo.supervisor.on_workflow(event.get("type"), dict(event["object"]))
