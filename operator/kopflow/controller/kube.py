"""The few API calls the operator makes, as async methods.

Writes on the hot path go over `http.Http` (plain JSON); rare reads use the official client
in worker threads. Only metadata-level access: Jobs (create, delete), Pods (read, for a late
termination message), the run's status, Workflows (read), Events (create), Leases and
kopflow's own cache ConfigMaps. Nothing here reads Secrets, user ConfigMaps or pod logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import kubernetes
from kubernetes.client.exceptions import ApiException

from kopflow import __version__, metrics
from kopflow.api.workflow import GROUP, VERSION
from kopflow.controller.http import MERGE_PATCH, ApiError, Http
from kopflow.engine.naming import label_value
from kopflow.engine.observations import CacheEntry
from kopflow.engine.times import format_time, parse_time

CACHE_LABEL = "kopflow.dev/cache"
CACHE_PREFIX = "kopflow-cache-"
REQUEST_TIMEOUT = (10, 30)
"""(connect, read) seconds for every blocking client call."""
API_THREADS = 32
"""Blocking client calls run in this many threads (and as many pooled connections)."""


def load_client(pool_size: int = API_THREADS) -> kubernetes.client.ApiClient:
    """In-cluster config when running in a pod, else the current kubeconfig context, with a
    connection pool as large as the thread pool (urllib3's default 10 would reconnect)."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=config)  # type: ignore[no-untyped-call]
    config.connection_pool_maxsize = pool_size
    client = kubernetes.client.ApiClient(config)
    client.user_agent = f"kopflow/{__version__} (pid {os.getpid()})"
    return metrics.instrument_client(client)


class NotLeading(Exception):
    """This replica may no longer write: another may hold the Lease by now."""


class JobRejected(Exception):
    """The API refused an attempt's Job: invalid (400, 422), forbidden (403: a ResourceQuota,
    a policy webhook), or its name taken by another run's Job. The message is the API's."""

    def __init__(self, message: str, status: int, permanent: bool) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent
        """No retry can mend it: the Job as written is invalid."""


class JobNameTaken(JobRejected):
    """A Job of this attempt's name exists but is not this run's."""


REJECTED = {400: True, 403: False, 404: False, 422: True}
"""Statuses that refuse a Job create, and whether the refusal is permanent: a quota frees
up, a webhook or a namespace may come back; an invalid Job stays invalid."""


class Kube:
    """Async facade: each call runs the blocking client in a worker thread."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.client = client
        self.http = Http(client.configuration, client.user_agent)
        self.core = kubernetes.client.CoreV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.coordination = kubernetes.client.CoordinationV1Api(client)
        self._background: set[asyncio.Task[None]] = set()
        self.may_write: Callable[[], bool] = lambda: True
        """Set by leader election: False once this replica may no longer act."""

    def fence(self) -> None:
        """Raise NotLeading unless this replica may write now (before each batch of writes)."""
        if not self.may_write():
            raise NotLeading("the lease was not renewed within its renew deadline")

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A blocking client call in a worker thread, bounded so a half-open connection
        cannot hold a thread (and a run) forever."""
        return await asyncio.to_thread(fn, *args, _request_timeout=REQUEST_TIMEOUT, **kwargs)

    async def create_job(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create a Job; False when it already exists (a relaunch after a crash: harmless)."""
        path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        try:
            await self.http.request("POST", path, body)
        except ApiError as err:
            if err.status in REJECTED:
                raise JobRejected(
                    err.message or str(err), err.status, REJECTED[err.status]
                ) from err
            if err.status != 409 or err.reason != "AlreadyExists":
                raise
            name = body["metadata"]["name"]
            existing = await self.http.request("GET", f"{path}/{name}")
            owners = {r.get("uid") for r in existing["metadata"].get("ownerReferences") or ()}
            if body["metadata"]["ownerReferences"][0]["uid"] not in owners:
                raise JobNameTaken(
                    f"Job {namespace}/{name} exists and belongs to another run; delete it or "
                    "rename the run",
                    409,
                    False,
                ) from err
            return False
        return True

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One Job read from the API (before an unseen attempt is declared Lost), or None."""
        try:
            return await self.http.request(
                "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"
            )
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def job_refusal(self, namespace: str, name: str) -> str | None:
        """The message of the latest FailedCreate Event on this Job (the Job controller could
        not create its pod: Pod Security, a quota...), or None. Only Events about the Job."""
        selector = f"involvedObject.kind=Job,involvedObject.name={name},reason=FailedCreate"
        answer = await self.http.request(
            "GET", f"/api/v1/namespaces/{namespace}/events?fieldSelector={quote(selector)}"
        )
        events = sorted(
            answer.get("items") or (),
            key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "",
        )
        return str(events[-1].get("message") or "FailedCreate") if events else None

    async def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The run as the API holds it now (after a conflicting status write), or None."""
        try:
            return await self.http.request(
                "GET", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/workflowruns/{name}"
            )
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def _delete(self, path: str) -> None:
        """Delete with Background propagation (dependents follow); already gone is fine."""
        try:
            await self.http.request("DELETE", path, {"propagationPolicy": "Background"})
        except ApiError as err:
            if err.status != 404:
                raise

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and, in the background, its Pod."""
        await self._delete(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")

    async def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        """The Pods of one Job (status only matters: exit code, termination message)."""
        pods = await self._call(
            self.core.list_namespaced_pod,
            namespace,
            label_selector=f"batch.kubernetes.io/job-name={job_name}",
        )
        return [self.client.sanitize_for_serialization(p) for p in pods.items]  # type: ignore[no-untyped-call]

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            lease = await self._call(self.coordination.read_namespaced_lease, name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        body: dict[str, Any] = self.client.sanitize_for_serialization(lease)  # type: ignore[no-untyped-call]
        return body

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> bool:
        """False when another replica created it first."""
        try:
            await self._call(self.coordination.create_namespaced_lease, namespace, body)
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        """PUT with the read resourceVersion: False when another replica wrote in between."""
        try:
            await self._call(self.coordination.replace_namespaced_lease, name, namespace, body)
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    async def get_workflow(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = await self._call(
                self.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                "workflows",
                name,
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return body

    async def patch_run_status(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """One JSON merge patch of the status subresource; with resource_version it is fenced
        (409 Conflict when the run changed since: re-read and recompute). The run after it."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self.http.request(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/workflowruns/{name}/status",
            body,
            MERGE_PATCH,
        )

    async def patch_workflow_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        await self.http.request(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/workflows/{name}/status",
            {"status": status},
            MERGE_PATCH,
        )

    async def delete_run(self, namespace: str, name: str) -> None:
        """Delete a finished run; its Jobs follow by owner reference."""
        await self._delete(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/workflowruns/{name}")

    async def post_event(
        self, involved: dict[str, Any], type_: str, reason: str, message: str, now: datetime
    ) -> None:
        """A core/v1 Event about a kopflow object; failures to post are not fatal."""
        meta = involved["metadata"]
        stamp = format_time(now)
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": involved.get("kind", "WorkflowRun"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "kopflow"},
            "reportingComponent": "kopflow",
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
            await self.http.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body)

    def post_event_later(
        self, involved: dict[str, Any], type_: str, reason: str, message: str, now: datetime
    ) -> None:
        """Post an Event without making the caller wait: Events are for people, status is
        what decides, so they must never delay the next Job."""
        task = asyncio.create_task(self.post_event(involved, type_, reason, message, now))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def get_cache(self, namespace: str, key: str, now: datetime) -> CacheEntry | None:
        """A live cache entry from kopflow's own ConfigMap, or None."""
        try:
            cm = await self._call(
                self.core.read_namespaced_config_map, CACHE_PREFIX + key, namespace
            )
        except ApiException as err:
            if err.status == 404:
                metrics.cache_lookup(hit=False)
                return None
            raise
        try:
            data = cm.data or {}
            expires = parse_time(data["expiresAt"])
            outputs = json.loads(data["outputs"])
        except (KeyError, ValueError, TypeError):
            return None
        metrics.cache_lookup(hit=expires > now)
        return CacheEntry(outputs, expires) if expires > now else None

    async def list_cache(
        self, namespace: str, limit: int, token: str | None = None
    ) -> dict[str, Any]:
        """One page of kopflow's cache ConfigMaps (namespace "" = all), by their label."""
        path = f"/api/v1/namespaces/{namespace}/configmaps" if namespace else "/api/v1/configmaps"
        query = f"?labelSelector={quote(CACHE_LABEL)}&limit={limit}"
        if token:
            query += f"&continue={quote(token)}"
        return await self.http.request("GET", path + query)

    async def delete_cache(self, namespace: str, name: str, resource_version: str | None) -> bool:
        """Delete one cache entry if it is still the version listed (a task may have just
        stored a fresh result under that key); False when it changed or is gone."""
        body: dict[str, Any] = {}
        if resource_version:
            body["preconditions"] = {"resourceVersion": resource_version}
        try:
            await self.http.request(
                "DELETE", f"/api/v1/namespaces/{namespace}/configmaps/{name}", body
            )
        except ApiError as err:
            if err.status in (404, 409):
                return False
            raise
        return True

    async def put_cache(
        self,
        namespace: str,
        key: str,
        outputs: dict[str, str],
        expires_at: datetime,
        origin: tuple[str, str] = ("", ""),
    ) -> None:
        """Store an entry; origin (workflow, task) that stored it goes into labels, so that
        `kopflow cache list|clear --workflow` can select it."""
        labels = {CACHE_LABEL: "true", "app.kubernetes.io/managed-by": "kopflow"}
        for label, value in zip(("kopflow.dev/workflow", "kopflow.dev/task"), origin, strict=True):
            if value:
                labels[label] = label_value(value)
        body = {
            "metadata": {"name": CACHE_PREFIX + key, "labels": labels},
            "data": {"outputs": json.dumps(outputs), "expiresAt": format_time(expires_at)},
        }
        path = f"/api/v1/namespaces/{namespace}/configmaps"
        try:
            await self.http.request("POST", path, body)
        except ApiError as err:
            if err.reason != "AlreadyExists":
                raise
            await self.http.request("PATCH", f"{path}/{CACHE_PREFIX + key}", body, MERGE_PATCH)
