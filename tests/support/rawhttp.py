"""Plain async HTTP to the API server for the simulated kubelet (test support, not the operator).

The official client spends most of an operator's CPU on model (de)serialization and thread
hand-offs; the hot path (watches, Job creation, status patches, Events) needs neither, so it
speaks JSON over one pooled aiohttp session instead.
"""

from __future__ import annotations

import json
import ssl
import time
from typing import Any

import aiohttp
import kubernetes

from kopflow import metrics

MERGE_PATCH = "application/merge-patch+json"
TOKEN_TTL = 60.0


class ApiError(Exception):
    """A non-2xx answer, with the Status reason (AlreadyExists, Conflict, NotFound...)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('reason', '')}: {body.get('message', '')}")
        self.status = status
        self.reason = str(body.get("reason", ""))
        self.message = str(body.get("message", ""))


def ssl_context(config: kubernetes.client.Configuration) -> ssl.SSLContext | bool:
    """TLS as the kubeconfig or in-cluster config describes it (False for plain http)."""
    if not config.host.startswith("https"):
        return False
    if config.verify_ssl:
        ctx = ssl.create_default_context(cafile=config.ssl_ca_cert)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if config.cert_file:
        ctx.load_cert_chain(config.cert_file, config.key_file)
    return ctx


def auth_headers(config: kubernetes.client.Configuration, user_agent: str) -> dict[str, str]:
    """Bearer token (refreshed first: in-cluster tokens rotate) and identification.

    The refresh hook re-reads the whole kubeconfig, so callers cache the result (Http does,
    for TOKEN_TTL)."""
    if config.refresh_api_key_hook is not None:
        config.refresh_api_key_hook(config)
    headers = {"Accept": "application/json", "User-Agent": user_agent}
    # kubernetes >= 36 stores the token under "BearerToken" (older: "authorization").
    token = config.get_api_key_with_prefix("BearerToken", alias="authorization")
    if token:
        headers["Authorization"] = token
    return headers


class Http:
    """One keep-alive session for the operator's writes."""

    def __init__(self, config: kubernetes.client.Configuration, user_agent: str) -> None:
        self.config, self.user_agent = config, user_agent
        self._session: aiohttp.ClientSession | None = None
        self._headers: dict[str, str] = {}
        self._headers_at = -TOKEN_TTL

    def headers(self) -> dict[str, str]:
        """Auth headers, re-read at most every TOKEN_TTL seconds (tokens rotate hourly)."""
        now = time.monotonic()
        if now - self._headers_at >= TOKEN_TTL:
            self._headers, self._headers_at = auth_headers(self.config, self.user_agent), now
        return dict(self._headers)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_context(self.config), limit=64),
                timeout=aiohttp.ClientTimeout(total=60, sock_connect=10),
                trace_configs=[metrics.aiohttp_trace()],
            )
        return self._session

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        """Send one request; the decoded answer, or ApiError."""
        headers = self.headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body, separators=(",", ":"))
        async with self.session().request(
            method, self.config.host + path, data=data, headers=headers
        ) as resp:
            text = await resp.text()
            try:
                answer: dict[str, Any] = json.loads(text) if text else {}
            except ValueError:
                answer = {"message": text[:200]}
            if resp.status >= 400:
                raise ApiError(resp.status, answer)
            return answer

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
