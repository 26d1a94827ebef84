"""A lean list-then-watch loop for the Jobs and Pods of kopflow runs.

kopf handles every event through its full handler machinery (a few milliseconds each); a run
produces about seven Job and Pod events per task attempt, which made kopf the bottleneck
between one task finishing and the next one starting. These two streams only feed an
in-memory index, so they get a plain watch: list, then watch from the list's
resourceVersion with bookmarks, relist on 410 Gone, reconnect on errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import kubernetes

from kopflow import metrics
from kopflow.controller.http import auth_headers, ssl_context

logger = logging.getLogger("kopflow.watch")
Handler = Callable[[str | None, dict[str, Any]], None]
Relisted = Callable[[str, list[dict[str, Any]]], None]
"""(namespace, or "" for all; every object there now)."""
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
LIST_PAGE = 500
MAX_EVENT_BYTES = 16 << 20
"""One watch event is one line; a 2,000-task run is about 1 MiB (aiohttp's default: 512 KiB)."""


class Gone(Exception):
    """The resourceVersion is too old: list again."""


class Watcher:
    """Watch one resource across all namespaces (or some) with a label selector."""

    def __init__(
        self,
        config: kubernetes.client.Configuration,
        path: str,
        selector: str,
        on_event: Handler,
        on_relist: Relisted,
        namespaces: list[str] | None = None,
        timeout_seconds: int = 300,
        shrink: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.config, self.path, self.selector = config, path, selector
        self.on_event, self.on_relist = on_event, on_relist
        self.shrink = shrink or (lambda body: body)
        """Applied to each listed object as its page arrives: only what it returns is kept."""
        self.namespaces = namespaces or [""]
        self.timeout_seconds = timeout_seconds

    def _session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=self.timeout_seconds + 30
        )
        return aiohttp.ClientSession(
            headers=auth_headers(self.config, "kopflow-watch"),
            connector=aiohttp.TCPConnector(ssl=ssl_context(self.config)),
            timeout=timeout,
            trace_configs=[metrics.aiohttp_trace()],
        )

    def _url(self, namespace: str, **query: Any) -> str:
        group_path, resource = self.path.rsplit("/", 1)
        ns = f"/namespaces/{namespace}" if namespace else ""
        params = {
            "labelSelector": self.selector,
            **{k: v for k, v in query.items() if v is not None},
        }
        return f"{self.config.host}{group_path}{ns}/{resource}?{urlencode(params)}"

    async def run(self) -> None:
        """Forever (until cancelled)."""
        await asyncio.gather(*(self._run_one(ns) for ns in self.namespaces))

    async def _run_one(self, namespace: str) -> None:
        failures = 0
        version: str | None = None
        while True:
            try:
                async with self._session() as session:
                    if version is None:
                        version = await self._list(session, namespace)
                    version = await self._watch(session, namespace, version)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Gone:
                version = None
            except Exception as err:
                delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
                failures += 1
                logger.warning("watch %s: %s; retrying in %ss", self.path, err, delay)
                await asyncio.sleep(delay)

    async def _list(self, session: aiohttp.ClientSession, namespace: str) -> str:
        """In pages of LIST_PAGE: one page at a time is held in full (a consistent snapshot:
        continue tokens read at the first page's resourceVersion)."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            async with session.get(
                self._url(namespace, limit=str(LIST_PAGE), **{"continue": token})
            ) as resp:
                if resp.status == 410:
                    raise Gone()  # the continue token expired: start over
                resp.raise_for_status()
                body = await resp.json()
            items.extend(self.shrink(item) for item in body.get("items") or ())
            token = body["metadata"].get("continue") or None
            if token is None:
                break
        self.on_relist(namespace, items)
        return str(body["metadata"]["resourceVersion"])

    async def _watch(self, session: aiohttp.ClientSession, namespace: str, version: str) -> str:
        url = self._url(
            namespace,
            watch="true",
            resourceVersion=version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(self.timeout_seconds),
        )
        async with session.get(url) as resp:
            if resp.status == 410:
                raise Gone()
            resp.raise_for_status()
            while line := await resp.content.readline(max_line_length=MAX_EVENT_BYTES):
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone()
                    raise RuntimeError(obj.get("message", "watch error"))
                version = obj.get("metadata", {}).get("resourceVersion") or version
                if kind != "BOOKMARK":
                    self.on_event(kind, obj)
        return version
