"""The few API calls the operator makes, as async methods.

All of them go over `client.Client.request` (kubernetes_asyncio, raw JSON). Only
metadata-level access: Jobs (create, delete), Pods (read, for a late termination message), the
run's status, Workflows (read), Events (create), Leases and kopflow's own cache ConfigMaps.
Nothing here reads Secrets, user ConfigMaps or pod logs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from kopflow import metrics
from kopflow.api.workflow import GROUP, VERSION
from kopflow.controller.client import MERGE_PATCH, ApiError, Client
from kopflow.engine.naming import label_value
from kopflow.engine.observations import CacheEntry
from kopflow.engine.times import format_time, parse_time

__all__ = ["MERGE_PATCH", "ApiError", "Kube"]

CACHE_LABEL = "kopflow.dev/cache"
CACHE_PREFIX = "kopflow-cache-"


LEASES = "/apis/coordination.k8s.io/v1/namespaces/{}/leases"
EVENTS_IN_FLIGHT = 4
"""Events posted at once. Two Events per task attempt would otherwise take most of the client's
connections and QPS in a burst, and a Job create would queue behind them (bench_operator.py)."""
EVENTS_QUEUED = 1000
"""Events waiting their turn at most; newer ones are dropped (and counted) beyond it, as
client-go's event broadcaster does with its queue of 1,000: an API server that falls behind
must not grow the operator's memory without bound."""
logger = logging.getLogger("kopflow.kube")


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
    """The operator's API calls, over the process's one client (`http.request`)."""

    def __init__(self, client: Client) -> None:
        self.http = client
        self._background: set[asyncio.Task[None]] = set()
        self._events: collections.deque[dict[str, Any]] = collections.deque()
        """Event bodies waiting for a sender (each holds only the involved object's reference,
        not the run's body)."""
        self._senders = 0
        self.may_write: Callable[[], bool] = lambda: True
        """Set by leader election: False once this replica may no longer act."""

    def fence(self) -> None:
        """Raise NotLeading unless this replica may write now (before each batch of writes)."""
        if not self.may_write():
            raise NotLeading("the lease was not renewed within its renew deadline")

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
        items, _ = await self.http.list(
            f"/api/v1/namespaces/{namespace}/pods",
            {"labelSelector": f"batch.kubernetes.io/job-name={job_name}"},
        )
        return items

    async def _get(self, path: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        try:
            return await self.http.request("GET", path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def _create(self, path: str, body: dict[str, Any]) -> bool:
        """POST; False when the name is taken (409), e.g. by another replica."""
        try:
            await self.http.request("POST", path, body)
        except ApiError as err:
            if err.status == 409:
                return False
            raise
        return True

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(f"{LEASES.format(namespace)}/{name}")

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> bool:
        """False when another replica created it first."""
        return await self._create(LEASES.format(namespace), body)

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        """PUT with the read resourceVersion: False when another replica wrote in between."""
        try:
            await self.http.request("PUT", f"{LEASES.format(namespace)}/{name}", body)
        except ApiError as err:
            if err.status == 409:
                return False
            raise
        return True

    async def get_workflow(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/workflows/{name}")

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
        await self._post(event_body(involved, type_, reason, message, now))

    async def _post(self, body: dict[str, Any]) -> None:
        namespace = body["metadata"]["namespace"]
        with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
            await self.http.request("POST", f"/api/v1/namespaces/{namespace}/events", body)

    def post_event_later(
        self, involved: dict[str, Any], type_: str, reason: str, message: str, now: datetime
    ) -> None:
        """Post an Event without making the caller wait: Events are for people, status is
        what decides, so they must never delay the next Job (at most EVENTS_IN_FLIGHT of
        them are sent at once; the rest wait their turn, not the Jobs' and status writes',
        and beyond EVENTS_QUEUED waiting the newest is dropped)."""
        if len(self._events) >= EVENTS_QUEUED:
            metrics.EVENTS_DROPPED.inc()
            logger.warning("%d Events waiting: dropped %s about %s", len(self._events), reason,
                           involved["metadata"]["name"])  # fmt: skip
            return
        self._events.append(event_body(involved, type_, reason, message, now))
        if self._senders < EVENTS_IN_FLIGHT:
            self._senders += 1
            task = asyncio.create_task(self._send_events())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _send_events(self) -> None:
        """One sender: posts waiting Events one after another until none is left."""
        try:
            while self._events:
                body = self._events.popleft()
                try:
                    await self._post(body)
                except Exception:  # one Event's trouble must not stop the others
                    logger.exception("Event %s not posted", body["reason"])
        finally:
            self._senders -= 1

    async def get_cache(self, namespace: str, key: str, now: datetime) -> CacheEntry | None:
        """A live cache entry from kopflow's own ConfigMap, or None."""
        cm = await self._get(f"/api/v1/namespaces/{namespace}/configmaps/{CACHE_PREFIX + key}")
        if cm is None:
            metrics.cache_lookup(hit=False)
            return None
        try:
            data = cm.get("data") or {}
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


def event_body(
    involved: dict[str, Any], type_: str, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """A core/v1 Event about `involved` (a kopflow object), as kopflow posts it."""
    meta = involved["metadata"]
    stamp = format_time(now)
    return {
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
