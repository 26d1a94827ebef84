"""The operator's one API client: kubernetes_asyncio, with a thin policy layer.

kubernetes_asyncio does the maintained parts: kubeconfig and in-cluster loading, exec credential
plugins (as asyncio subprocesses: never on the event loop), `proxy-url`, HTTPS_PROXY,
`tls-server-name`, client certificates, the watch stream. This module adds what an operator
driving a thousand runs needs on top, without models (raw JSON on the hot path):

- credentials that stay fresh: the in-cluster token file is re-read when it changes (and every
  minute), an exec plugin runs again when its ExecCredential expires, and a 401 re-loads
  whatever the identity comes from, then retries once;
- a client-side token bucket (`--qps`/`--burst`) and a shared back-off: a 429 or a 5xx with
  Retry-After pauses every request of the process for that long (with jitter), so API
  priority-and-fairness throttling is absorbed without a storm of retries;
- lists in pages (`limit`/`continue`);
- an informer loop for Jobs and Pods: list, then kubernetes_asyncio's Watch from the list's
  resourceVersion with bookmarks; relist on 410 Gone; back off on errors, reported to
  `health` so /healthz can tell a wedged watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader
from kubernetes_asyncio.watch import Watch
from yarl import URL

from kopflow import __version__, metrics
from kopflow.controller.health import Health
from kopflow.controller.options import DEFAULT_BURST, DEFAULT_PAGE_SIZE, DEFAULT_QPS

logger = logging.getLogger("kopflow.client")

MERGE_PATCH = "application/merge-patch+json"
SERVICEACCOUNT_ROOT = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_RECHECK = 60.0
"""Seconds after which an unchanged in-cluster token file is read again anyway."""
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)
CONNECTIONS = 64
"""Connections of the client's pool (kubernetes_asyncio's connection_pool_maxsize)."""


class ApiError(Exception):
    """A non-2xx answer, with the Status reason (AlreadyExists, Conflict, NotFound...)."""

    def __init__(self, status: int, body: dict[str, Any], retry_after: float | None = None) -> None:
        super().__init__(f"{status} {body.get('reason', '')}: {body.get('message', '')}")
        self.status = status
        self.reason = str(body.get("reason", ""))
        self.message = str(body.get("message", ""))
        self.retry_after = retry_after


class Gone(Exception):
    """A watch's resourceVersion is too old: list again."""


# --- credentials ------------------------------------------------------------------------------


class Credentials:
    """Where the identity comes from, and how to refresh it.

    One instance per process; `configuration` is the kubernetes_asyncio Configuration every
    request reads its Authorization header from (through `refresh_api_key_hook`, which this
    class installs: kubernetes_asyncio awaits it before each request)."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        self.kubeconfig, self.context = kubeconfig, context
        self.configuration = k8s.Configuration()
        self.in_cluster = bool(
            os.environ.get("KUBERNETES_SERVICE_HOST") and os.environ.get("KUBERNETES_SERVICE_PORT")
        ) and not (kubeconfig or os.environ.get("KUBECONFIG"))
        root = Path(os.environ.get("KOPFLOW_SERVICEACCOUNT_ROOT") or SERVICEACCOUNT_ROOT)
        self.token_file, self.ca_file = root / "token", root / "ca.crt"
        self._token_seen: tuple[int, int, int] | None = None
        self._token_read_at = 0.0
        self._loader: Any = None
        self._lock = asyncio.Lock()
        self.logins = 0
        """How many times the identity was (re)loaded: tests and metrics read it."""

    async def load(self) -> None:
        """First load: in-cluster when KUBERNETES_SERVICE_HOST/PORT are set, else kubeconfig."""
        async with self._lock:
            await self._load()
        self.configuration.refresh_api_key_hook = self._hook

    async def _load(self) -> None:
        config = self.configuration
        if self.in_cluster:
            InClusterConfigLoader(
                token_filename=str(self.token_file),
                cert_filename=str(self.ca_file),
                try_refresh_token=False,
            ).load_and_set(config)
            self._token_seen, self._token_read_at = self._token_stat(), time.monotonic()
        else:
            # The loader keeps the exec plugin's credential and its expiry; a fresh loader
            # (after a 401) also re-reads the file: a rotated token or a new context.
            self._loader = await k8s_config.load_kube_config(
                config_file=self.kubeconfig or os.environ.get("KUBECONFIG") or None,
                context=self.context,
                client_configuration=config,
                persist_config=False,
            )
        if not config.proxy:
            # HTTPS_PROXY / NO_PROXY, read once: aiohttp's trust_env would read them (and
            # ~/.netrc) in a thread on every request, which doubled the client's CPU per request
            with contextlib.suppress(LookupError):
                config.proxy = str(get_env_proxy_for_url(URL(str(config.host)))[0])
        self.logins += 1

    def _token_stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.token_file.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    async def _hook(self, config: k8s.Configuration) -> None:
        """Before every request: cheap checks that the credential is still current."""
        if self.in_cluster:
            now = time.monotonic()
            stat = self._token_stat()
            if stat != self._token_seen or now - self._token_read_at >= TOKEN_RECHECK:
                self._read_token(stat, now)
        elif self._exec_expired():
            async with self._lock:
                if self._exec_expired():
                    await self._loader.load_from_exec_plugin()
                    config.api_key["BearerToken"] = self._loader.token
                    self.logins += 1

    def _read_token(self, stat: tuple[int, int, int] | None, now: float) -> None:
        # kubelet replaces the projected token atomically (a symlink swap): read the whole file
        with contextlib.suppress(OSError):
            token = self.token_file.read_text().strip()
            if token:
                if self.configuration.api_key.get("BearerToken") != f"Bearer {token}":
                    self.logins += 1
                self.configuration.api_key["BearerToken"] = f"Bearer {token}"
        self._token_seen, self._token_read_at = stat, now

    def _exec_expired(self) -> bool:
        loader = self._loader
        if loader is None or "exec" not in (loader._user or {}):
            return False
        expiry = getattr(loader, "exec_plugin_expiry", None)
        if expiry is None:
            return False  # no expirationTimestamp: valid until a 401 says otherwise
        # As client-go: expired at expirationTimestamp. kubernetes_asyncio's own check renews 5
        # minutes early, so a credential shorter-lived than that ran the plugin before every
        # request (a 1 s plugin made each request wait 1 s); a 401 still logs in again.
        return bool(expiry <= dt.datetime.now(dt.UTC))

    async def relogin(self) -> None:
        """After a 401: read the token file again, run the exec plugin again, or re-read the
        kubeconfig (whichever the identity comes from). Concurrent 401s log in once."""
        seen = self.logins
        async with self._lock:
            if self.logins != seen:
                return  # another request logged in meanwhile
            if self.in_cluster:
                self._read_token(self._token_stat(), time.monotonic())
                self.logins += 1
                return
            if self._loader is not None and hasattr(self._loader, "exec_plugin_expiry"):
                del self._loader.exec_plugin_expiry
            await self._load()

    @property
    def server(self) -> str:
        return str(self.configuration.host)

    def token(self) -> str | None:
        """The bearer token now in use (without the "Bearer " prefix), if any."""
        value = self.configuration.api_key.get("BearerToken")
        return str(value).removeprefix("Bearer ") if value else None

    def expiration(self) -> dt.datetime | None:
        """When the current credential expires (exec plugins); kopf is not told (handlers)."""
        if self._loader is None:
            return None
        expiry = getattr(self._loader, "exec_plugin_expiry", None)
        return expiry if isinstance(expiry, dt.datetime) else None


def ssl_context(config: k8s.Configuration) -> ssl.SSLContext | bool:
    """TLS for a session to the API server, as kubernetes_asyncio builds its own: the CA, the
    client certificate (a kubeconfig's, or an exec plugin's), verification as configured."""
    if not str(config.host).startswith("https"):
        return False
    ctx = ssl.create_default_context(cafile=config.ssl_ca_cert)
    if config.cert_file:
        ctx.load_cert_chain(config.cert_file, keyfile=config.key_file)
    if not config.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if config.disable_strict_ssl_verification:
        ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return ctx


def certificate_of(config: k8s.Configuration) -> str | None:
    """A digest of the client certificate and key in use (None: none): it changes when an
    exec plugin hands out a new certificate or a kubeconfig's files are replaced."""
    if not config.cert_file:
        return None
    digest = hashlib.sha256()
    for path in (config.cert_file, config.key_file):
        if path:
            with contextlib.suppress(OSError):
                digest.update(Path(path).read_bytes())
    return digest.hexdigest()


# --- rate limit and retries ---------------------------------------------------------------------


class TokenBucket:
    """client-go's flowcontrol token bucket: `qps` tokens a second, at most `burst` saved."""

    def __init__(
        self,
        qps: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"--qps must be > 0 and --burst >= 1 (got {qps}, {burst})")
        self.qps, self.burst = qps, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._at = clock()
        self.waited = 0.0
        """Total seconds requests spent waiting for a token (a metric: the limit binds)."""

    def reserve(self) -> float:
        """Take one token; return how long to wait before using it (0 when one was saved)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.qps)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            self.waited += delay
            await self._sleep(delay)


@dataclasses.dataclass
class RetryPolicy:
    """Which answers are retried, how often, and after how long.

    A 429 is always retried (the server did nothing); a 5xx only when it says Retry-After
    (the API server's "try again" for overload and timeouts). The wait is Retry-After (1 s
    when absent) plus up to `jitter` of it at random, capped at `max_delay`; after
    `max_retries` the error goes to the caller (whose own back-off takes over)."""

    max_retries: int = 5
    max_delay: float = 30.0
    jitter: float = 0.2

    def delay(
        self, err: ApiError, attempt: int, rand: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait before retry number `attempt` (0-based), or -1: give up."""
        if attempt >= self.max_retries:
            return -1.0
        if err.status == 429 or (err.status >= 500 and err.retry_after is not None):
            base = err.retry_after if err.retry_after is not None else 1.0
            return min(self.max_delay, base * (1.0 + self.jitter * rand()))
        return -1.0


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


# --- the client -------------------------------------------------------------------------------


class Client:
    """Raw-JSON requests over one kubernetes_asyncio ApiClient (one aiohttp session).

    `request` is the primitive the operator's API methods are written with."""

    def __init__(
        self,
        credentials: Credentials,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        retry: RetryPolicy | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        user_agent: str = f"kopflow/{__version__}",
    ) -> None:
        self.credentials = credentials
        self.config = credentials.configuration
        self.config.connection_pool_maxsize = CONNECTIONS
        self.api = k8s.ApiClient(self.config)
        # kubernetes_asyncio opens its session with trust_env=True: two thread hand-offs per
        # request (netrc, proxy variables). The proxy is resolved once (Credentials), so the
        # same connector serves a session that does not look again.
        rest = self.api.rest_client
        connector = rest.pool_manager.connector
        assert connector is not None
        rest.pool_manager.detach()
        rest.pool_manager = self._session(connector)
        self._certificate = certificate_of(self.config)
        self._retired: set[asyncio.Task[None]] = set()
        self.api.user_agent = f"{user_agent} (pid {os.getpid()})"
        self.limiter = TokenBucket(qps, burst)
        self.retry = retry or RetryPolicy()
        self.page_size = page_size
        self._pause_until = 0.0
        self.retries = 0
        """Requests sent again after a 429/5xx (a metric; tests read it)."""

    @staticmethod
    def _session(connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            read_bufsize=2**21,
            trace_configs=[metrics.aiohttp_trace()],  # every request counted, watches too
        )

    async def relogin(self) -> None:
        """After a 401: load the identity again; when that brought another client certificate
        (an exec plugin's renewed one, replaced files), open new connections with it. A TLS
        connection keeps the certificate it was opened with, so the old ones would go on being
        refused (client-go closes them too); they are closed once their requests are done."""
        await self.credentials.relogin()
        certificate = certificate_of(self.config)
        if certificate == self._certificate:
            return
        self._certificate = certificate
        rest = self.api.rest_client
        old = rest.pool_manager
        connector = aiohttp.TCPConnector(limit=CONNECTIONS, ssl=ssl_context(self.config))
        rest.pool_manager = self._session(connector)
        logger.info("a new client certificate: new connections use it")
        task = asyncio.create_task(self._retire(old))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def _retire(self, session: aiohttp.ClientSession) -> None:
        """Close a replaced session once its requests have had their time (watches on it end
        then, and reconnect on the new one)."""
        try:
            await asyncio.sleep(REQUEST_TIMEOUT.total or 60)
        finally:
            await session.close()

    async def _send(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str,
        query: list[tuple[str, str]] | None,
        timeout: Any,
    ) -> aiohttp.ClientResponse:
        """One HTTP exchange through kubernetes_asyncio (auth, TLS, proxy); the raw answer."""
        pause = self._pause_until - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        await self.limiter.acquire()
        resp: aiohttp.ClientResponse = await self.api.call_api(
            path,
            method,
            query_params=query,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )
        return resp

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """Send one request; the decoded answer, or ApiError (after the policy's retries)."""
        relogged = False
        attempt = 0
        while True:
            resp = await self._send(method, path, body, content_type, query, REQUEST_TIMEOUT)
            try:
                data = await resp.read()
            finally:
                resp.release()
            try:
                answer: dict[str, Any] = json.loads(data) if data else {}
            except ValueError:
                answer = {"message": data[:200].decode(errors="replace")}
            if resp.status < 400:
                return answer
            error = ApiError(resp.status, answer, _retry_after(resp.headers.get("Retry-After")))
            if error.status == 401 and not relogged:
                relogged = True
                logger.warning("%s %s: 401 Unauthorized; logging in again", method, path)
                await self.relogin()
                continue
            delay = self.retry.delay(error, attempt)
            if delay < 0:
                raise error
            attempt += 1
            self.retries += 1
            # everyone waits, not only this request: a throttled server needs less traffic
            self._pause_until = max(self._pause_until, time.monotonic() + delay)
            logger.info("%s %s: %s; retrying in %.1fs", method, path, error.status, delay)
            await asyncio.sleep(delay)

    async def list(
        self,
        path: str,
        query: dict[str, str] | None = None,
        page_size: int | None = None,
        shrink: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object of a list, fetched in pages; (items, the list's resourceVersion).
        `shrink` reduces each item as its page arrives, so that a list of 10,000 kept runs is
        never held in full at once."""
        items: list[dict[str, Any]] = []
        token = ""
        limit = str(page_size or self.page_size)
        while True:
            params = [*(query or {}).items(), ("limit", limit)]
            if token:
                params.append(("continue", token))
            page = await self.request("GET", path, query=params)
            page_items = page.get("items") or []
            items.extend(map(shrink, page_items) if shrink else page_items)
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    async def watch_stream(
        self, path: str, query: dict[str, str], resource_version: str, timeout_seconds: int
    ) -> aiohttp.ClientResponse:
        """The raw answer of a watch request (kubernetes_asyncio's Watch reads it)."""
        params = [
            *query.items(),
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30)
        return await self._send("GET", path, None, "application/json", params, timeout)

    async def close(self) -> None:
        for task in list(self._retired):
            task.cancel()  # closes its session
        await asyncio.gather(*self._retired, return_exceptions=True)
        await self.api.close()


async def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    **options: Any,
) -> Client:
    """Load the identity (in-cluster or kubeconfig) and open the process's one client."""
    credentials = Credentials(kubeconfig, context)
    await credentials.load()
    return Client(credentials, **options)


# --- informers --------------------------------------------------------------------------------

Handler = Callable[[str | None, dict[str, Any]], None]
Relisted = Callable[[str, list[dict[str, Any]]], None]
"""(namespace, or "" for all; every object there now)."""
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


def namespaced(path: str, namespace: str) -> str:
    """A resource's path (`/apis/batch/v1/jobs`) within one namespace ("": all of them)."""
    group_path, resource = path.rsplit("/", 1)
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"{group_path}{ns}/{resource}"


class Informer:
    """List, then watch, one resource in some namespaces (or all) with a label selector.

    Events go to `on_event`, full lists (the first, and after a 410 Gone) to `on_relist`, so
    deletions missed while disconnected are noticed. A failing watch is reported to `health`
    until it lists or watches again."""

    def __init__(
        self,
        client: Client,
        path: str,
        selector: str,
        on_event: Handler,
        on_relist: Relisted,
        namespaces: list[str] | None = None,
        health: Health | None = None,
        timeout_seconds: int = 300,
    ) -> None:
        self.client, self.path, self.selector = client, path, selector
        self.on_event, self.on_relist = on_event, on_relist
        self.namespaces = namespaces or [""]
        self.health = health or Health()
        self.timeout_seconds = timeout_seconds

    def _path(self, namespace: str) -> str:
        return namespaced(self.path, namespace)

    async def run(self) -> None:
        """Forever (until cancelled)."""
        await asyncio.gather(*(self._run_one(ns) for ns in self.namespaces))

    async def _run_one(self, namespace: str) -> None:
        name = f"watch {self._path(namespace)}"
        query = {"labelSelector": self.selector} if self.selector else {}
        failures = 0
        version: str | None = None
        while True:
            try:
                if version is None:
                    items, version = await self.client.list(self._path(namespace), query)
                    self.on_relist(namespace, items)
                    self.health.ok(name)
                version = await self._watch(namespace, query, version)
                failures = 0
                self.health.ok(name)
            except asyncio.CancelledError:
                raise
            except Gone:
                version = None
            except Exception as err:
                self.health.failing(name, str(err))
                if isinstance(err, ApiException) and err.status == 401:
                    await self.client.relogin()
                delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
                failures += 1
                logger.warning("%s: %s; retrying in %ss", name, err, delay)
                await asyncio.sleep(delay)

    async def _watch(self, namespace: str, query: dict[str, str], version: str) -> str:
        """Watch from `version` until the server ends the stream; the last version seen."""
        opened = partial(
            self.client.watch_stream,
            self._path(namespace),
            query,
            resource_version=version,
            timeout_seconds=self.timeout_seconds,
        )
        # Watch's own reconnect sets resource_version on the partial; with timeout_seconds
        # present it does not reconnect at all: this loop does (and relists on 410).
        name = f"watch {self._path(namespace)}"
        watch = Watch(return_type="")
        stream = watch.stream(
            _Raw(opened, lambda: self.health.opened(name)), timeout_seconds=self.timeout_seconds
        )
        try:
            async for event in stream:
                kind = event.get("type")
                obj = event.get("raw_object") or {}
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind == "BOOKMARK":
                    continue
                self.on_event(kind, obj)
        except ApiException as err:
            if err.status == 410:
                raise Gone() from err
            raise
        finally:
            await watch.close()
        return version


class _Raw:
    """A watch function for kubernetes_asyncio's Watch: it passes `watch`, `_preload_content`
    and `timeout_seconds` keywords, which the raw request already sets."""

    def __init__(
        self,
        opened: Callable[..., Awaitable[aiohttp.ClientResponse]],
        on_open: Callable[[], None],
    ) -> None:
        self.opened, self.on_open = opened, on_open

    async def __call__(self, **_: Any) -> aiohttp.ClientResponse:
        resp = await self.opened()
        if resp.status == 200:
            self.on_open()  # a watch that keeps streaming is healthy, however long it lasts
        return resp

    __doc__ = ""
