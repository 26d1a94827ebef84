"""Leader election on a coordination.k8s.io Lease, as client-go does it.

With several replicas only the Lease holder drives runs; the others keep their watch caches
warm and take over when the holder stops renewing. A holder that cannot renew within
RENEW_DEADLINE steps down before its Lease can expire, so two replicas never act at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kopflow.controller.client import ApiError
from kopflow.controller.kube import Kube

logger = logging.getLogger("kopflow.leader")
LEASE_NAME = "kopflow-operator"
LEASE_SECONDS = 15
"""client-go's defaults: lease 15 s, renew deadline 10 s, retry every 2 s."""


def identity() -> str:
    """Pod name (hostname in a pod) plus a random part: a restarted pod is a new candidate."""
    host = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{host}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def _micro(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquire and renew the Lease; call on_start/on_stop on every change of leadership."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        on_start: Callable[[], Awaitable[None]],
        on_stop: Callable[[], Awaitable[None]],
        name: str = LEASE_NAME,
        lease_seconds: int = LEASE_SECONDS,
    ) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.lease_seconds = lease_seconds
        self.renew_deadline = lease_seconds * 2 / 3
        self.retry_period = lease_seconds / 7.5
        self.on_start, self.on_stop = on_start, on_stop
        self.identity = identity()
        self.leading = False
        self._last_renew: datetime | None = None
        self._seen: tuple[Any, datetime] | None = None
        """The other holder's (identity, renewTime) record, and our local time we first saw it."""

    def may_write(self) -> bool:
        """Whether this replica may still act: it leads and its last renewal is within the
        renew deadline. Checked before each batch of writes, so a replica cut off from the
        API stops writing (renew deadline 10 s) before a peer may take the Lease (15 s)."""
        return (
            self.leading
            and self._last_renew is not None
            and datetime.now(UTC) - self._last_renew < timedelta(seconds=self.renew_deadline)
        )

    async def run(self) -> None:
        """Forever: try to acquire or renew every RETRY_PERIOD."""
        try:
            while True:
                now = datetime.now(UTC)  # before the request: a slow answer must not extend it
                try:
                    ok = await asyncio.wait_for(self._try(), self.renew_deadline / 2)
                except (TimeoutError, Exception) as err:  # unreachable API: keep trying
                    logger.warning("lease %s: %s", self.name, err or type(err).__name__)
                    ok = False
                if ok:
                    self._last_renew = now
                    if not self.leading:
                        self.leading = True
                        logger.info("%s acquired lease %s", self.identity, self.name)
                        await self.on_start()
                elif self.leading and (
                    self._last_renew is None
                    or now - self._last_renew > timedelta(seconds=self.renew_deadline)
                ):
                    self.leading = False
                    logger.warning("%s lost lease %s; stepping down", self.identity, self.name)
                    await self.on_stop()
                await asyncio.sleep(self.retry_period)
        finally:
            if self.leading:
                await self.release()

    async def release(self) -> None:
        """Give the Lease up on a clean shutdown so a peer takes over at once."""
        self.leading = False
        await self.on_stop()
        try:
            lease = await self.kube.get_lease(self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                await self.kube.replace_lease(self.namespace, self.name, lease)
        except Exception:  # best effort: the Lease expires anyway
            logger.debug("releasing the lease failed", exc_info=True)

    async def _try(self) -> bool:
        """One acquire-or-renew attempt; True while this replica holds the Lease.

        Another holder's lease is live until `leaseDurationSeconds` after this replica last
        saw its record change (as client-go judges it), never by the holder's clock: clock
        skew between nodes cannot make two leaders."""
        now = datetime.now(UTC)
        try:
            lease = await self.kube.get_lease(self.namespace, self.name)
            spec_now = {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_seconds,
                "renewTime": _micro(now),
            }
            if lease is None:
                body = {
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {**spec_now, "acquireTime": _micro(now), "leaseTransitions": 0},
                }
                return await self.kube.create_lease(self.namespace, body)
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity")
            record = (holder, spec.get("renewTime"))
            if self._seen is None or self._seen[0] != record:
                self._seen = (record, now)
            duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
            live = now < self._seen[1] + timedelta(seconds=duration)
            if holder not in (None, "", self.identity) and live:
                return False  # someone else holds a live lease
            if holder != self.identity:
                spec_now["acquireTime"] = _micro(now)
                spec_now["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            lease["spec"] = {**spec, **spec_now}
            return await self.kube.replace_lease(self.namespace, self.name, lease)
        except ApiError as err:
            logger.warning("lease %s: %s %s", self.name, err.status, err.reason)
            return False
