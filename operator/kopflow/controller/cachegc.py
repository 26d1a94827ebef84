"""Deletes expired task-cache ConfigMaps, a bounded number per minute, on the leader only.

Every `interval` seconds it lists the entries by label in pages and deletes the expired ones
that the per-minute budget allows (engine.cachegc chooses); a deletion is fenced by the listed
resourceVersion, so an entry refreshed meanwhile stays.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from kopflow.controller.kube import Kube
from kopflow.engine.cachegc import Budget, CacheItem, expired

logger = logging.getLogger("kopflow.cachegc")
PAGE = 500


async def collect(kube: Kube, namespace: str, budget: Budget, now: datetime) -> int:
    """One pass over the entries of namespace ("" = all); returns how many it deleted."""
    from kopflow import metrics

    deleted = 0
    token: str | None = None
    while budget.left(now) > 0:
        page = await kube.list_cache(namespace, PAGE, token)
        items = [
            CacheItem(
                (cm.get("metadata") or {}).get("namespace", ""),
                (cm.get("metadata") or {}).get("name", ""),
                (cm.get("data") or {}).get("expiresAt"),
                (cm.get("metadata") or {}).get("resourceVersion"),
            )
            for cm in page.get("items") or ()
        ]
        for item in expired(items, now, budget.left(now)):
            kube.fence()
            budget.spend(now)
            if await kube.delete_cache(item.namespace, item.name, item.resource_version):
                deleted += 1
                metrics.CACHE_EXPIRED.inc()
        token = (page.get("metadata") or {}).get("continue") or None
        if token is None:
            break
    return deleted


async def run(
    kube: Kube,
    leading: Callable[[], bool],
    namespaces: list[str] | None,
    per_minute: int,
    interval: float,
) -> None:
    """Forever (until cancelled); per_minute 0 turns it off."""
    if per_minute <= 0:
        return
    budget = Budget(per_minute)
    while True:
        await asyncio.sleep(interval)
        if not leading():
            continue
        for namespace in namespaces or [""]:
            try:
                count = await collect(kube, namespace, budget, datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception as err:
                logger.warning("cache collection in %r failed: %s", namespace or "*", err)
                continue
            if count:
                logger.info("deleted %d expired cache entries in %s", count, namespace or "*")
