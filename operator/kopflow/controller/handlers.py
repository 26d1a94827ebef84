"""kopf registrations: login, start-up, clean-up, probes, Workflow and WorkflowRun events.

kopf runs the process (login, signals, liveness) and watches Workflows and WorkflowRuns; its
login comes from the same `client.Credentials` as kopflow's own requests (one identity, one
refresh). Jobs and Pods are hot (several events per task attempt) and only feed an in-memory
index, so they are watched by `client.Informer` (kubernetes_asyncio's Watch, raw JSON): kopf's
per-event machinery costs several times more per event (docs/design.md, "Client stack").
Nothing here adds finalizers or kopf annotations, so deleting a run or a Workflow never waits
for the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import aiohttp
import kopf

from kopflow import metrics
from kopflow.api.workflow import GROUP, VERSION
from kopflow.controller import cachegc, heap, kopf_tuning
from kopflow.controller.client import Client, Credentials, Informer, namespaced, ssl_context
from kopflow.controller.health import Health
from kopflow.controller.kube import Kube
from kopflow.controller.leader import LeaderElector
from kopflow.controller.supervisor import Supervisor

logger = logging.getLogger("kopflow.handlers")
RUN_LABEL = "kopflow.dev/run"
OPTIONS: dict[str, Any] = {
    "leader_elect": False,
    "lease_namespace": None,
    "lease_seconds": 15,
    "namespaces": [],
    "clock": None,
    "kubeconfig": None,
    "context": None,
    "qps": None,
    "burst": None,
    "page_size": None,
    "health_bound": None,
    "resync_seconds": 300.0,
    "cache_gc_per_minute": 60,
    "cache_gc_interval": 60.0,
}
_identity: dict[str, Any] = {}


def configure(**options: Any) -> None:
    """Options from the command line, read at startup."""
    OPTIONS.update({k: v for k, v in options.items() if v is not None})


async def credentials() -> Credentials:
    """The process's one identity, loaded on first use (kopf may log in before start-up)."""
    task = _identity.get("task")
    if task is None or (task.done() and task.exception() is not None):  # retry a failed load
        creds = Credentials(OPTIONS["kubeconfig"], OPTIONS["context"])
        _identity["task"] = asyncio.ensure_future(creds.load())
        _identity["credentials"] = creds
    await asyncio.shield(_identity["task"])
    loaded: Credentials = _identity["credentials"]
    return loaded


def _middleware(creds: Credentials) -> Any:
    """Per request of kopf's session: the current token (rotated file, fresh exec credential)
    and the kubeconfig's `tls-server-name` (aiohttp takes it per request, not per session)."""

    async def middleware(req: Any, handler: Any) -> Any:
        config = creds.configuration
        token = await config.get_api_key_with_prefix("BearerToken")
        if token:
            req.headers["Authorization"] = token
        if config.tls_server_name:
            req.server_hostname = config.tls_server_name
        return await handler(req)

    return middleware


@kopf.on.login()
async def login(**_: Any) -> kopf.AiohttpSession:
    """kopf's session from kopflow's credentials. kopf calls this again after a 401 (then the
    identity is re-read: token file, kubeconfig, exec plugin). No `expiration`: the middleware
    already takes a fresh token per request, and kopf, on expiry, closes the session under the
    requests still using it (an AssertionError in aiohttp that killed the operator)."""
    first = "task" not in _identity
    creds = await credentials()
    if not first:
        await creds.relogin()
    config = creds.configuration
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=ssl_context(config)),
        proxy=config.proxy or None,  # proxy-url, or HTTPS_PROXY/NO_PROXY read at login
        middlewares=(_middleware(creds),),
    )
    return kopf.AiohttpSession(server=creds.server, aiohttp_session=session)


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
    # A run's events are mostly its own status writes coming back: handle each at once (the
    # default 0.1 s window only delays cancel/suspend).
    settings.batching.batch_window = 0.01
    # kopf keeps one worker per object, holding its last body, for idle_timeout after its last
    # event: at start that is every kept run of the list at once (10,000 finished runs)
    settings.batching.idle_timeout = 0.5
    kopf_tuning.tune(settings)
    options = {k: OPTIONS[k] for k in ("qps", "burst", "page_size") if OPTIONS.get(k) is not None}
    client = Client(await credentials(), **options)
    # kopf's first list of runs in pages too: 10,000 kept runs in one answer held ~200 MiB of
    # parsed JSON at once (RSS 420 MiB against 209 MiB before kopf watched runs)
    settings.watching.chunk_size = client.page_size
    kube = Kube(client)
    health = memo.health = Health(OPTIONS["health_bound"] or 60.0)
    namespaces = OPTIONS["namespaces"] or None
    supervisor = memo.supervisor = Supervisor(
        kube,
        active=not OPTIONS["leader_elect"],
        namespaces=namespaces or [""],
        clock=OPTIONS["clock"],
    )
    health.sources.append(supervisor.stuck)
    metrics.track(supervisor)
    memo.watchers = [
        asyncio.create_task(
            Informer(client, path, RUN_LABEL, on_event, on_relist, namespaces, health).run(),
            name=f"watch {path}",
        )
        for path, on_event, on_relist in (
            ("/apis/batch/v1/jobs", supervisor.on_job, supervisor.relist_jobs),
            ("/api/v1/pods", supervisor.on_pod, supervisor.relist_pods),
        )
    ]
    memo.watchers.append(
        asyncio.create_task(_resync_runs(client, supervisor, namespaces or [""], health))
    )
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
    heap.settle()  # what start-up built stays: keep it out of every full collection


async def _resync_runs(
    client: Client, supervisor: Supervisor, namespaces: list[str], health: Health
) -> None:
    """List runs at start (schedules wait for it) and every `resync_seconds`: kopf's watch
    does not report deletions it missed while disconnected."""
    path = f"/apis/{GROUP}/{VERSION}/workflowruns"

    async def resync(namespace: str) -> None:
        items, _ = await client.list(namespaced(path, namespace), shrink=supervisor.shrink)
        await supervisor.resync_runs(namespace, items)

    for namespace in namespaces:
        name = f"list runs {namespace or '(all)'}"
        for delay in (0.2, 0.5, 1.0, 2.0, 5.0, *[5.0] * 1000):
            try:
                await resync(namespace)
                health.ok(name)
                break
            except Exception as err:
                health.failing(name, str(err))
                logger.warning("%s: %s; retrying in %ss", name, err, delay)
                await asyncio.sleep(delay)
    while True:
        await asyncio.sleep(OPTIONS["resync_seconds"])
        for namespace in namespaces:
            try:
                await resync(namespace)
            except Exception as err:  # the next period lists again; the watch goes on
                logger.warning("list runs %s: %s", namespace or "(all)", err)


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


@kopf.on.probe(id="kopflow")
async def healthy(memo: kopf.Memo, **_: Any) -> str:
    """/healthz: a non-2xx answer when a watch failed, or a worker was stuck, too long."""
    health: Health | None = getattr(memo, "health", None)
    problems = health.problems() if health is not None else []
    if problems:
        raise kopf.PermanentError("; ".join(problems))
    return "ok"


@kopf.on.event(GROUP, VERSION, "workflows")
async def workflow_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    memo.supervisor.on_workflow(event.get("type"), dict(event["object"]))


@kopf.on.event(GROUP, VERSION, "workflowruns")
async def run_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    memo.supervisor.on_run(event.get("type"), dict(event["object"]))
