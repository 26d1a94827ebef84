"""kopf registrations: thin glue from watch events to the supervisor and the validator.

Runs are driven by plain watch events (no kopf finalizers, no kopf progress annotations on
runs), so deleting a run never waits for the operator.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from kopflow.api.workflow import GROUP, VERSION
from kopflow.controller.kube import Kube, load_client
from kopflow.controller.supervisor import Supervisor
from kopflow.controller.workflows import validity

RUN_LABEL = "kopflow.dev/run"
OPTIONS: dict[str, Any] = {"leader_elect": False, "lease_namespace": None}


def configure(leader_elect: bool, lease_namespace: str | None) -> None:
    """Options from the command line, read at startup."""
    OPTIONS.update(leader_elect=leader_elect, lease_namespace=lease_namespace)


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
    memo.supervisor = Supervisor(Kube(load_client()))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
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


@kopf.on.resume(GROUP, VERSION, "workflows")
@kopf.on.create(GROUP, VERSION, "workflows")
@kopf.on.update(GROUP, VERSION, "workflows", field="spec")
async def workflow_changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Validate a Workflow: condition Valid, and a Warning Event when it is not."""
    status, problem = validity(dict(body), datetime.now(UTC))
    patch.status.update(status)
    if problem:
        kube: Kube = memo.supervisor.kube
        await kube.post_event(dict(body), "Warning", "InvalidWorkflow", problem, datetime.now(UTC))
