"""A Kubernetes API server emulator for the integration tests, served over HTTPS on 127.0.0.1.

`ApiServer` runs an aiohttp application on its own event loop thread, so synchronous tests
(the official `kubernetes` client) and kopf (in its own thread) can both talk to it through a
kubeconfig file, as they would to a cluster. Semantics live in `apiserver_store` (writes),
`apiserver_controllers` (garbage collector, namespaces), `apiserver_builtins` (per-kind
rules) and `apiserver_auth` (authentication, ServiceAccount tokens, RBAC); this module is the
HTTP surface: TLS, routing, discovery, list/watch, errors as Status, request accounting and
fault injection. A request without credentials is the anonymous user, as on a real server.

    with ApiServer(crd_dir="crds") as server:
        path = server.kubeconfig(tmp_path / "kubeconfig")       # the admin (system:masters)
        api = kubernetes.config.new_client_from_config(str(path))
        token = server.token("ns", "operator")                   # a ServiceAccount's token
        server.kubeconfig(tmp_path / "sa", token=token)           # ...and a kubeconfig for it
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import concurrent.futures
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from . import apiserver_logs as logs
from . import apiserver_proto as proto
from . import apiserver_tls as tls
from .apiserver_apply import apply
from .apiserver_auth import (
    ADMIN,
    ADMIN_TOKEN,
    ANONYMOUS,
    ISSUER,
    Authenticator,
    Authorizer,
    UserInfo,
    access_review,
    bootstrap_policy,
    forbidden,
    impersonate,
    is_watch,
    request_attributes,
    self_subject_review,
    token_request,
)
from .apiserver_controllers import Controllers
from .apiserver_faults import FaultInjector, RequestLog, RequestRecord
from .apiserver_selectors import FieldSelector, LabelSelector
from .apiserver_store import APPLY, Gone, Store
from .apiserver_types import (
    ApiError,
    Obj,
    ResourceType,
    bad_request,
    method_not_allowed,
    parse_ts,
    resource_not_found,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CRD_DIR = REPO_ROOT / "crds"
__all__ = ["ADMIN", "ADMIN_TOKEN", "ANONYMOUS", "ApiServer", "UserInfo"]
SERVER_VERSION = "v1.36.2"
JOB_DELETE_WARNING = (
    "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background "
    "to remove them or set propagationPolicy=Orphan to suppress this warning"
)
AGGREGATED = "as=APIGroupDiscoveryList"
# The order a real server lists a custom resource's verbs in aggregated discovery.
_CR_VERBS = ("delete", "deletecollection", "get", "list", "patch", "create", "update", "watch")
_USER = web.RequestKey("user", UserInfo)  # the authenticated user of a request
_REVIEWS = {
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authentication.k8s.io", "tokenreviews"),
    ("authorization.k8s.io", "localsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
}
_NOT_FOUND_TEXT = "404 page not found\n"


def _subresource(rt: ResourceType, sub: str) -> tuple[str | None, str, str, builtins.list[str]]:
    """Discovery of a subresource: (group and version when not the parent's, kind, verbs)."""
    special: dict[str, tuple[str | None, str, str, builtins.list[str]]] = {
        "token": ("authentication.k8s.io", "v1", "TokenRequest", ["create"]),
        "eviction": ("policy", "v1", "Eviction", ["create"]),
        "binding": (None, "", "Binding", ["create"]),
        "log": (None, "", rt.kind, ["get"]),
    }
    return special.get(sub, (None, "", rt.kind, ["get", "patch", "update"]))


BODY_LIMIT = 3 * 1024 * 1024
"""kube-apiserver's limit on a write's body (its 413 RequestEntityTooLarge)."""


class _PlainNotFound(Exception):
    """A path outside every API group: the real server answers a text/plain 404."""


@dataclass
class Target:
    """What a request path addresses."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    sub: str | None


@functools.lru_cache(maxsize=32)
def _parse_yaml(path: str, mtime: float) -> str:
    """Parsed manifests of a file, as JSON text (YAML parsing is slow; servers start per test)."""
    with open(path) as f:
        return json.dumps([d for d in yaml.safe_load_all(f) if isinstance(d, dict)])


def _load_yaml(path: str, mtime: float) -> list[Obj]:
    return list(json.loads(_parse_yaml(path, mtime)))


def _dump(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _age(created: str | None) -> str:
    if not created:
        return "<unknown>"
    seconds = max(0, int(time.time() - parse_ts(created)))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _json_path(obj: Obj, path: str) -> Any:
    """A printer column's value: the `.a.b` JSON path into the object."""
    cur: Any = obj
    for part in path.strip(".").split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


class ApiServer:
    """The emulator: start() serves on 127.0.0.1 in a background thread, stop() ends everything.

    Args:
        crd_dir: directory whose *.yaml CustomResourceDefinitions are served from the start
            (default: the repository's crds/; a missing directory is skipped).
        crds: extra CRD manifests to serve.
        controllers: run the garbage collector, namespace controller and ServiceAccount
            controller (off reproduces a bare API server, as the conformance `core` section needs).
        window: watch events retained per resource; a watch from an older resourceVersion gets
            410 Gone.
        bookmark_interval: seconds between BOOKMARK events on watches that allow them.
        max_watch_seconds: a watch without timeoutSeconds ends after this long.
        seed: seeds generateName suffixes and the fault injector.
    """

    def __init__(
        self,
        crd_dir: Path | str | None = DEFAULT_CRD_DIR,
        *,
        crds: builtins.list[Obj] | None = None,
        controllers: bool = True,
        window: int = 1000,
        bookmark_interval: float = 60.0,
        max_watch_seconds: float = 1800.0,
        seed: int = 0,
        namespaces: tuple[str, ...] = ("default", "kube-system", "kube-public", "kube-node-lease"),
    ) -> None:
        self.crd_dir = Path(crd_dir) if crd_dir else None
        self.extra_crds = list(crds or [])
        self.bookmark_interval = bookmark_interval
        self.max_watch_seconds = max_watch_seconds
        self.initial_namespaces = namespaces
        self.store = Store(window=window, seed=seed)
        self.requests = RequestLog()
        self.faults = FaultInjector(seed=seed)
        self.auth = Authenticator(self.store)
        self.authorizer = Authorizer(self.store)
        self.log_source: logs.LogSource | None = None
        """The node's kubelet log endpoint (kubelet.Kubelet sets it; see apiserver_logs)."""
        self.port = 0
        self._controllers_enabled = controllers
        self.controllers: Controllers | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._streams: set[web.StreamResponse] = set()
        self.shutdown_hooks: builtins.list[
            Callable[[], Any]
        ] = []  # coroutines run before the server stops

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The CA file that verifies this server's certificate."""
        return tls.ca_file()

    def start(self, timeout: float = 10.0) -> ApiServer:
        """Serve on a free loopback port; returns once requests are accepted."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name="apiserver", daemon=True
        )
        self._thread.start()
        ready.result(timeout)
        return self

    def _main(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # report the failure to start() instead of dying silently
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.controllers = Controllers(self.store, loop, enabled=self._controllers_enabled)
        for name in self.initial_namespaces:
            self.store.create(
                self.store.namespaces, "", {"metadata": {"name": name}}, manager="emulator"
            )
        for plural, obj in bootstrap_policy():
            rbac = self.store.storage[("rbac.authorization.k8s.io", plural)]
            self.store.create(rbac, "", obj, manager="kube-apiserver")
        for crd in self._crd_manifests():
            self.store.create(self.store.crds, "", crd, manager="emulator")
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=tls.server_context())
        await site.start()
        server = getattr(site, "_server", None)
        self.port = server.sockets[0].getsockname()[1] if server else 0

    def _crd_manifests(self) -> builtins.list[Obj]:
        docs: builtins.list[Obj] = []
        if self.crd_dir and self.crd_dir.is_dir():
            for path in sorted(self.crd_dir.glob("*.yaml")) + sorted(self.crd_dir.glob("*.yml")):
                docs += _load_yaml(str(path), path.stat().st_mtime)
        docs += self.extra_crds
        return [d for d in docs if d.get("kind") == "CustomResourceDefinition"]

    def stop(self, timeout: float = 10.0) -> None:
        """Close watches, stop serving and end the loop thread (idempotent)."""
        loop, thread = self.loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._thread = None

    async def _shutdown(self) -> None:
        self.store.close_watchers()
        for hook in list(self.shutdown_hooks):
            await hook()
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers for tests and the kubelet -----------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Run fn(*args) on the emulator's loop thread (the store is not thread-safe)."""
        assert self.loop is not None, "ApiServer not started"

        async def run() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def kubeconfig(
        self, path: Path | str, *, token: str = ADMIN_TOKEN, namespace: str = "default"
    ) -> Path:
        """Write a kubeconfig for this server (bearer `token`) and return its path."""
        path = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "emulator",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(
                            self.ca_file.read_bytes()
                        ).decode(),
                    },
                }
            ],
            "users": [{"name": "emulator", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
                }
            ],
            "current-context": "emulator",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def add_user(self, token: str, name: str, groups: tuple[str, ...] = ()) -> UserInfo:
        """A static bearer token for user `name` (as a token file does); RBAC decides the rest."""
        user = UserInfo(name, (*groups, "system:authenticated"))
        self.auth.static[token] = user
        return user

    def token(self, namespace: str, service_account: str, seconds: int = 3600) -> str:
        """A TokenRequest token for an existing ServiceAccount (`kubectl create token`)."""

        def issue() -> str:
            body = {"spec": {"expirationSeconds": seconds}}
            answer = token_request(
                self.auth, self.store, namespace, service_account, body, "emulator"
            )
            return str(answer["status"]["token"])

        return self.call(issue)

    def expire_token(self, token: str) -> None:
        """From now on the server refuses this ServiceAccount token as expired (401)."""
        self.call(self.auth.expire, token)

    def install_crd(self, manifest: Obj) -> Obj:
        """Create (serve) a CRD as if applied with kubectl."""
        obj, _ = self.call(self.store.create, self.store.crds, "", manifest)
        return obj

    def storage_type(self, resource: str) -> ResourceType:
        """`pods`, `jobs.batch` or `workflowruns.kopflow.dev` -> the served type."""
        plural, _, group = resource.partition(".")
        rt = self.store.storage.get((group, plural))
        if rt is None:
            raise KeyError(f"{resource} is not served")
        return rt

    def wait_until(self, check: Callable[[Store], T | None], timeout: float = 10.0) -> T:
        """Block until check(store) returns something truthy (re-checked after every write).

        Runs on the emulator's loop, so `check` may read the store but must not block; raises
        TimeoutError when nothing truthy came within `timeout` seconds.
        """
        assert self.loop is not None, "ApiServer not started"

        async def waiter() -> T:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[T] = loop.create_future()

            def listener(*_: Any) -> None:
                if not done.done():
                    result = check(self.store)
                    if result:
                        done.set_result(result)

            listener()
            self.store.listeners.append(listener)
            try:
                return await asyncio.wait_for(done, timeout)
            finally:
                self.store.listeners.remove(listener)

        return asyncio.run_coroutine_threadsafe(waiter(), self.loop).result(timeout + 5)

    def wait_for(
        self,
        resource: str,
        namespace: str,
        name: str,
        predicate: Callable[[Obj | None], bool],
        timeout: float = 10.0,
    ) -> Obj | None:
        """Block until predicate(object, or None when absent) holds; returns that object.

        `resource` is `pods`, `jobs.batch`, `workflowruns.kopflow.dev`, ... Driven by store
        events, not polling; TimeoutError names the last state seen.
        """
        rt = self.storage_type(resource)
        found: builtins.list[Obj | None] = []

        def check(store: Store) -> bool:
            obj = store.find(rt, namespace, name)
            if predicate(obj):
                found.append(obj)
                return True
            return False

        try:
            self.wait_until(check, timeout)
        except TimeoutError:
            last = self.get(resource, namespace, name)
            raise TimeoutError(
                f"{resource} {namespace}/{name} never matched; last: {last}"
            ) from None
        return found[0]

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        """A snapshot of one stored object (None when absent), for assertions."""
        rt = self.storage_type(resource)
        return self.call(self.store.find, rt, namespace, name)

    def list(self, resource: str, namespace: str | None = None) -> builtins.list[Obj]:
        """Snapshots of the stored objects of a resource (in one namespace, or all)."""
        rt = self.storage_type(resource)
        return self.call(lambda: list(self.store.iter_objects(rt, namespace)))

    # -- request handling ----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rec = {
            "verb": request.method.lower(),
            "resource": request.path,
            "namespace": "",
            "name": "",
        }
        status = 500
        try:
            response = await self._dispatch(request, rec)
            status = response.status
            return response
        except _PlainNotFound:
            status = 404
            return web.Response(status=404, text=_NOT_FOUND_TEXT, content_type="text/plain")
        except ApiError as exc:
            status = exc.code
            return self._error(exc)
        except Exception as exc:  # an emulator bug must still answer like a server
            log.exception("emulator failure on %s %s", request.method, request.path)
            status = 500
            return self._error(
                ApiError(500, "InternalError", f"Internal error occurred: {exc!r}", details={})
            )
        finally:
            if not rec.get("recorded"):
                self._record(request, rec, status)

    def _record(self, request: web.Request, rec: dict[str, str], status: int) -> None:
        rec["recorded"] = "yes"
        agent = request.headers.get("User-Agent", "")
        self.requests.record(
            RequestRecord(
                rec["verb"],
                rec["resource"],
                rec["namespace"],
                rec["name"],
                status,
                agent,
                rec.get("user", ""),
                rec.get("injected") == "yes",
            )
        )

    @staticmethod
    def _error(exc: ApiError) -> web.Response:
        response = web.Response(
            status=exc.code, body=_dump(exc.body()), content_type="application/json"
        )
        for key, value in exc.headers.items():
            response.headers[key] = value
        return response

    def _json(
        self,
        body: Any,
        status: int = 200,
        warnings: builtins.list[str] | None = None,
        content_type: str = "application/json",
    ) -> web.Response:
        response = web.Response(status=status, body=_dump(body))
        response.headers["Content-Type"] = content_type
        for warning in warnings or []:
            escaped = warning.replace('"', '\\"')
            response.headers.add("Warning", f'299 - "{escaped}"')
        return response

    async def _dispatch(self, request: web.Request, rec: dict[str, str]) -> web.StreamResponse:
        user = self.auth.authenticate(request.headers.get("Authorization", ""))
        attrs = request_attributes(request.method, request.path, request.query)
        user = impersonate(user, request.headers, self.authorizer, attrs)
        rec["user"] = user.name
        request[_USER] = user
        if attrs.resource_request:
            rec.update(
                verb=attrs.verb,
                resource=attrs.qualified + (f"/{attrs.subresource}" if attrs.subresource else ""),
                namespace=attrs.namespace,
                name=attrs.name,
            )
        allowed, reason = self.authorizer.authorize(user, attrs)
        if not allowed:
            raise forbidden(user, attrs, reason)
        parts = [p for p in request.path.split("/") if p]
        aggregated = AGGREGATED in request.headers.get("Accept", "")
        if not parts:
            return self._json({"paths": ["/api", "/api/v1", "/apis", "/version", "/healthz"]})
        if parts[0] in ("healthz", "livez", "readyz") and len(parts) == 1:
            return web.Response(text="ok")
        if parts == ["version"]:
            return self._json(self._version())
        if parts[0] == "api":
            if len(parts) == 1:
                if aggregated:
                    return self._aggregated([""])
                return self._json(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
                        ],
                    }
                )
            if parts[1] != "v1":
                raise _PlainNotFound()
            group, version, rest = "", "v1", parts[2:]
        elif parts[0] == "apis":
            groups = self._groups()
            if len(parts) == 1:
                if aggregated:
                    return self._aggregated([g for g in groups if g])
                return self._json(
                    {
                        "kind": "APIGroupList",
                        "apiVersion": "v1",
                        "groups": [self._group_doc(g, v) for g, v in groups.items() if g],
                    }
                )
            group = parts[1]
            if group not in groups or not group:
                raise _PlainNotFound()
            if len(parts) == 2:
                return self._json(
                    {
                        "kind": "APIGroup",
                        "apiVersion": "v1",
                        **self._group_doc(group, groups[group]),
                    }
                )
            version, rest = parts[2], parts[3:]
            if version not in groups[group]:
                raise resource_not_found()
        else:
            raise _PlainNotFound()
        if not rest:
            return self._json(self._resource_list(group, version))
        target = self._target(group, version, rest)
        return await self._resource_request(request, target, rec)

    def _target(self, group: str, version: str, rest: builtins.list[str]) -> Target:
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = self.store.lookup(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        rt = self.store.lookup(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise resource_not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if rt.namespaced and name and namespace is None:
            raise resource_not_found()
        if sub and sub not in rt.subs:
            raise resource_not_found()
        return Target(rt, namespace, name, sub)

    async def _resource_request(
        self, request: web.Request, target: Target, rec: dict[str, str]
    ) -> web.StreamResponse:
        rt, method, q = target.rt, request.method, request.query
        watching = is_watch(q)
        verb = {
            ("GET", True): "get",
            ("GET", False): "watch" if watching else "list",
            ("POST", False): "create",
            ("PUT", True): "update",
            ("PATCH", True): "patch",
            ("DELETE", True): "delete",
            ("DELETE", False): "deletecollection",
        }.get((method, target.name is not None))
        rec.update(
            verb=verb or method.lower(),
            resource=rt.qualified + (f"/{target.sub}" if target.sub else ""),
            namespace=target.namespace or "",
            name=target.name or "",
        )
        if target.sub == "token" or rt.key in _REVIEWS:
            verb = "create" if method == "POST" else None
        if verb is None or (verb not in rt.verbs and not target.sub):
            raise method_not_allowed()
        body = ""
        if self.faults.plan.deny_match and verb in ("create", "update", "patch"):
            body = (await request.read()).decode(errors="replace")  # aiohttp keeps it
        agent = request.headers.get("User-Agent", "")
        fault = self.faults.choose(verb, rt.qualified, agent)
        if fault == "slow":
            await asyncio.sleep(self.faults.plan.delay)
        elif fault == "conflict":
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rt.qualified} "{target.name or ""}": '
                "injected conflict",
                details=rt.details(target.name or ""),
            )
        elif fault == "error":
            raise ApiError(
                500, "InternalError", "Internal error occurred: injected fault", details={}
            )
        elif fault == "throttle":
            raise ApiError(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
                details={"retryAfterSeconds": 1},
                headers={"Retry-After": "1"},
            )
        if self.faults.denies(verb, rt.qualified, agent, body):
            rec["injected"] = "yes"  # the real server's words for a webhook's denial
            raise ApiError(
                403,
                "Forbidden",
                f'admission webhook "deny.kopflow.test" denied the request: '
                f"{self.faults.plan.deny_message}",
                details={},
            )
        if verb == "watch":
            self._record(request, rec, 200)  # counted when it starts: streams last long
            return await self._watch(request, target, drop=fault == "drop_watch")
        if verb == "list":
            return self._list(request, target)
        if verb == "get":
            if target.sub == "log":
                return await self._pod_log(request, target)
            return self._json(
                self._out(rt, self.store.get(rt, target.namespace or "", target.name or ""))
            )
        if target.sub == "token" or rt.key in _REVIEWS:
            return await self._review(request, target)
        if verb in ("create", "update", "patch"):
            return await self._write(request, verb, target)
        return await self._delete(request, verb, target)

    async def _review(self, request: web.Request, target: Target) -> web.Response:
        """POSTs that store nothing: TokenRequest and the authentication/authorization reviews."""
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype == proto.PROTOBUF:  # kubectl's typed calls (create token, auth whoami/can-i)
            kind = "TokenRequest" if target.sub == "token" else target.rt.kind
            try:
                body = proto.decode(kind, await request.read())
            except (ValueError, IndexError) as exc:
                raise bad_request(f"the object provided is unrecognized: {exc}") from exc
        else:
            body = await self._body(request, target.rt)
        if target.sub == "token":
            answer = token_request(
                self.auth,
                self.store,
                target.namespace or "",
                target.name or "",
                body,
                self._manager(request),
            )
            return self._json(answer, 201)
        if target.rt.plural == "selfsubjectreviews":
            return self._json(self_subject_review(request[_USER]), 201)
        if target.rt.group == "authorization.k8s.io":
            answer = access_review(
                target.rt.kind, body, request[_USER], self.authorizer, target.namespace or ""
            )
            return self._json(answer, 201)
        spec = (body or {}).get("spec") or {} if isinstance(body, dict) else {}
        try:
            user = self.auth.authenticate(f"Bearer {spec.get('token') or ''}")
        except ApiError:
            user = ANONYMOUS
        status: Obj = {"user": {}}
        if user is not ANONYMOUS:
            status = {"authenticated": True, "user": user.review(), "audiences": [ISSUER]}
        return self._json(
            {
                "kind": "TokenReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": None},
                "spec": spec,
                "status": status,
            },
            201,
        )

    # -- discovery -----------------------------------------------------------------------------

    def _version(self) -> Obj:
        major, minor, _ = SERVER_VERSION[1:].split(".")
        return {
            "major": major,
            "minor": minor,
            "emulationMajor": major,
            "emulationMinor": minor,
            "gitVersion": SERVER_VERSION,
            "gitCommit": "kopflow-emulator",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.25",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def _groups(self) -> dict[str, builtins.list[str]]:
        """group -> served versions, preferred (storage) version first."""
        groups: dict[str, builtins.list[str]] = {}
        for rt in self.store.served():
            versions = groups.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.insert(0, rt.version) if rt.storage else versions.append(rt.version)
        return groups

    @staticmethod
    def _group_doc(group: str, versions: builtins.list[str]) -> Obj:
        docs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": docs, "preferredVersion": docs[0]}

    def _types_of(self, group: str, version: str) -> builtins.list[ResourceType]:
        return sorted(
            (rt for rt in self.store.served() if rt.group == group and rt.version == version),
            key=lambda rt: rt.plural,
        )

    def _resource_list(self, group: str, version: str) -> Obj:
        resources: builtins.list[Obj] = []
        for rt in self._types_of(group, version):
            entry = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(rt.verbs),
            }
            if rt.key not in _REVIEWS:
                entry["storageVersionHash"] = rt.kind.lower()
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            resources.append(entry)
            for sub in rt.subs:
                sub_group, sub_version, kind, verbs = _subresource(rt, sub)
                sub_entry: Obj = {
                    "name": f"{rt.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                }
                if sub_group is not None:
                    sub_entry.update(group=sub_group, version=sub_version)
                resources.append({**sub_entry, "kind": kind, "verbs": verbs})
        gv = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        }

    @staticmethod
    def _aggregated_sub(rt: ResourceType, sub: str, kind: Obj) -> Obj:
        sub_group, sub_version, sub_kind, verbs = _subresource(rt, sub)
        if sub_group is not None:
            kind = {"group": sub_group, "version": sub_version, "kind": sub_kind}
        return {"subresource": sub, "responseKind": kind, "verbs": verbs}

    def _aggregated(self, groups: builtins.list[str]) -> web.Response:
        served = self._groups()
        items = []
        for group in groups:
            versions = []
            for version in served.get(group, []):
                resources = []
                for rt in self._types_of(group, version):
                    # Built-ins leave group and version empty (meaning: as requested).
                    kind = {
                        "group": "" if rt.builtin else group,
                        "version": "" if rt.builtin else version,
                        "kind": rt.kind,
                    }
                    entry: Obj = {
                        "resource": rt.plural,
                        "responseKind": kind,
                        "scope": "Namespaced" if rt.namespaced else "Cluster",
                        "singularResource": rt.singular,
                        "verbs": list(rt.verbs if rt.builtin else _CR_VERBS),
                    }
                    for key, values in (
                        ("shortNames", rt.short_names),
                        ("categories", rt.categories),
                    ):
                        if values:
                            entry[key] = list(values)
                    subs = [self._aggregated_sub(rt, s, kind) for s in sorted(rt.subs)]
                    if subs:
                        entry["subresources"] = subs
                    resources.append(entry)
                versions.append(
                    {"version": version, "resources": resources, "freshness": "Current"}
                )
            items.append({"metadata": {"name": group}, "versions": versions})
        body = {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        }
        return self._json(
            body,
            content_type="application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        )

    # -- reads ---------------------------------------------------------------------------------

    @staticmethod
    def _out(rt: ResourceType, obj: Obj) -> Obj:
        """An object as served at this version (a CRD's other served versions differ only here)."""
        if obj.get("apiVersion") != rt.group_version:
            return {**obj, "apiVersion": rt.group_version}
        return obj

    def _selectors(
        self, request: web.Request, rt: ResourceType
    ) -> tuple[LabelSelector, FieldSelector]:
        q = request.query
        return LabelSelector.parse(q.get("labelSelector")), FieldSelector.parse(
            q.get("fieldSelector"), rt
        )

    def _list(self, request: web.Request, target: Target) -> web.Response:
        rt, q = target.rt, request.query
        labels, fields = self._selectors(request, rt)
        items = self.store.select(rt, target.namespace, labels, fields)
        rv = str(self.store.rv)
        list_meta: Obj = {"resourceVersion": rv}
        token = q.get("continue")
        if token:
            try:
                last = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = (last["ns"], last["name"])
            except (ValueError, KeyError, TypeError) as exc:
                raise bad_request("continue key is not valid") from exc
            items = [
                o
                for o in items
                if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start
            ]
        limit = int(q.get("limit") or 0)
        if 0 < limit < len(items):
            rest = len(items) - limit
            items = items[:limit]
            last_m = items[-1]["metadata"]
            list_meta["continue"] = base64.urlsafe_b64encode(
                _dump({"ns": last_m.get("namespace", ""), "name": last_m["name"]})
            ).decode()
            if not q.get("labelSelector") and not q.get("fieldSelector"):
                list_meta["remainingItemCount"] = rest
        if "as=Table" in request.headers.get("Accept", ""):
            return self._json(self._table(rt, items, rv))
        if rt.builtin:
            items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
        else:
            items = [self._out(rt, o) for o in items]
        return self._json(
            {
                "kind": rt.kind + "List",
                "apiVersion": rt.group_version,
                "metadata": list_meta,
                "items": items,
            }
        )

    def _table(self, rt: ResourceType, items: builtins.list[Obj], rv: str) -> Obj:
        columns: builtins.list[tuple[Obj, Callable[[Obj], Any]]] = [
            (
                {
                    "name": "Name",
                    "type": "string",
                    "format": "name",
                    "priority": 0,
                    "description": "Name must be unique within a namespace.",
                },
                lambda o: o["metadata"]["name"],
            )
        ]
        if rt.plural == "configmaps" and not rt.group:
            columns.append(
                (
                    {
                        "name": "Data",
                        "type": "integer",
                        "format": "",
                        "priority": 0,
                        "description": "",
                    },
                    lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                )
            )
        for col in rt.printer_columns:
            path = col.get("jsonPath", "")
            columns.append(
                (
                    {
                        "name": col.get("name"),
                        "type": col.get("type", "string"),
                        "format": "",
                        "priority": col.get("priority", 0),
                        "description": col.get("description", ""),
                    },
                    functools.partial(_json_path, path=path),
                )
            )
        if not any(c.get("jsonPath") == ".metadata.creationTimestamp" for c in rt.printer_columns):
            columns.append(
                (
                    {
                        "name": "Age",
                        "type": "string",
                        "format": "",
                        "priority": 0,
                        "description": "",
                    },
                    lambda o: _age(o["metadata"].get("creationTimestamp")),
                )
            )
        rows = [
            {
                "cells": [fn(o) for _, fn in columns],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                },
            }
            for o in items
        ]
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv},
            "columnDefinitions": [c for c, _ in columns],
            "rows": rows,
        }

    async def _pod_log(self, request: web.Request, target: Target) -> web.StreamResponse:
        name = target.name or ""
        return await logs.pod_log(
            request,
            name,
            lambda: self.store.get(target.rt, target.namespace or "", name),
            self.log_source,
        )

    # -- watch ---------------------------------------------------------------------------------

    async def _watch(
        self, request: web.Request, target: Target, *, drop: bool
    ) -> web.StreamResponse:
        rt, q = target.rt, request.query
        labels, fields = self._selectors(request, rt)
        since = q.get("resourceVersion")
        initial = q.get("sendInitialEvents", "").lower() == "true"
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            watcher = self.store.watch(rt, target.namespace, labels, fields, since, initial)
        except Gone as exc:
            await response.prepare(request)
            status = ApiError(410, "Expired", str(exc), details={}).body()
            await response.write(_dump({"type": "ERROR", "object": status}) + b"\n")
            await response.write_eof()
            return response
        await response.prepare(request)
        self._streams.add(response)
        loop = asyncio.get_running_loop()
        start = loop.time()
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else self.max_watch_seconds
        if drop:
            timeout = min(timeout, self.faults.plan.drop_after)
        deadline = start + timeout
        bookmarks = q.get("allowWatchBookmarks", "").lower() in ("true", "1")
        marks = [
            start + self.bookmark_interval * k
            for k in range(1, int(timeout / self.bookmark_interval) + 1)
        ]
        if q.get("timeoutSeconds") and timeout > 2:
            marks.append(deadline - 2)
        marks.sort()
        last_rv = int(since) if since and since.isdigit() and since != "0" else self.store.rv
        pending_initial = watcher.queue.qsize() if initial else -1
        try:
            while True:
                if pending_initial == 0:
                    await self._bookmark(response, rt, {"k8s.io/initial-events-end": "true"})
                    pending_initial = -1
                now = loop.time()
                if now >= deadline or request.transport is None or request.transport.is_closing():
                    break
                wake = min([deadline, now + 1.0] + ([marks[0]] if bookmarks and marks else []))
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), max(0.0, wake - now))
                except TimeoutError:
                    if bookmarks and marks and loop.time() >= marks[0]:
                        marks.pop(0)
                        if self.store.rv > last_rv:
                            last_rv = self.store.rv
                            await self._bookmark(response, rt, None)
                    continue
                if item is None:
                    break
                kind, obj = item
                await response.write(_dump({"type": kind, "object": self._out(rt, obj)}) + b"\n")
                last_rv = max(last_rv, int(obj["metadata"]["resourceVersion"]))
                if pending_initial > 0:
                    pending_initial -= 1
            if drop and request.transport is not None:
                request.transport.close()  # a cut connection, not a clean end of stream
                return response
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.unwatch(watcher)
            self._streams.discard(response)
        return response

    async def _bookmark(
        self, response: web.StreamResponse, rt: ResourceType, annotations: Obj | None
    ) -> None:
        metadata: Obj = {"resourceVersion": str(self.store.rv)}
        if annotations:
            metadata["annotations"] = annotations
        event = {
            "type": "BOOKMARK",
            "object": {"kind": rt.kind, "apiVersion": rt.group_version, "metadata": metadata},
        }
        await response.write(_dump(event) + b"\n")

    # -- writes --------------------------------------------------------------------------------

    async def _body(self, request: web.Request, rt: ResourceType) -> Any:
        raw = await request.read()
        if len(raw) > BODY_LIMIT:
            limit = f"Request entity too large: limit is {BODY_LIMIT}"
            raise ApiError(413, "RequestEntityTooLarge", limit)
        ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        try:
            if "yaml" in ctype:
                return yaml.safe_load(raw)
            return json.loads(raw) if raw else None
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind}): couldn't get "
                f"version/kind; json parse error: {exc}"
            ) from exc

    async def _write(self, request: web.Request, verb: str, target: Target) -> web.Response:
        rt, q = target.rt, request.query
        body = await self._body(request, rt)
        dry_run = q.get("dryRun") == "All"
        validation = q.get("fieldValidation", "Warn")
        manager = self._manager(request)
        ns = target.namespace or ""
        if verb == "create":
            obj, warnings = self.store.create(
                rt, ns, body, dry_run=dry_run, validation=validation, manager=manager
            )
            return self._json(self._out(rt, obj), 201, warnings)
        if verb == "update":
            obj, created, warnings = self.store.update(
                rt,
                ns,
                target.name or "",
                body,
                subresource=target.sub,
                dry_run=dry_run,
                validation=validation,
                manager=manager,
            )
            return self._json(self._out(rt, obj), 201 if created else 200, warnings)
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype == APPLY:
            return self._apply(request, target, body, dry_run)
        obj, warnings = self.store.patch(
            rt,
            ns,
            target.name or "",
            body,
            ctype,
            subresource=target.sub,
            dry_run=dry_run,
            validation=validation,
            manager=manager,
        )
        return self._json(self._out(rt, obj), 200, warnings)

    @staticmethod
    def _manager(request: web.Request) -> str:
        """The field manager a write is recorded under (default: the client's User-Agent)."""
        return (
            request.query.get("fieldManager")
            or (request.headers.get("User-Agent", "unknown").split("/")[0])
        )

    def _apply(
        self, request: web.Request, target: Target, body: Any, dry_run: bool
    ) -> web.Response:
        q = request.query
        obj, created, warnings = apply(
            self.store,
            target.rt,
            target.namespace or "",
            target.name or "",
            body,
            manager=q.get("fieldManager"),
            force=q.get("force", "").lower() == "true",
            subresource=target.sub,
            dry_run=dry_run,
        )
        return self._json(self._out(target.rt, obj), 201 if created else 200, warnings)

    async def _delete(self, request: web.Request, verb: str, target: Target) -> web.Response:
        rt, q = target.rt, request.query
        body = await self._body(request, rt)
        options: Obj = dict(body) if isinstance(body, dict) else {}
        for key in ("propagationPolicy", "gracePeriodSeconds", "orphanDependents"):
            if key in q and key not in options:
                value: Any = q[key]
                if key == "gracePeriodSeconds":
                    value = int(value)
                elif key == "orphanDependents":
                    value = value.lower() == "true"
                options[key] = value
        dry_run = q.get("dryRun") == "All" or "All" in (options.get("dryRun") or [])
        warnings = []
        if (
            rt.key == ("batch", "jobs")
            and not options.get("propagationPolicy")
            and "orphanDependents" not in options
        ):
            warnings.append(JOB_DELETE_WARNING)
        if verb == "deletecollection":
            labels, fields = self._selectors(request, rt)
            items = self.store.delete_collection(
                rt, target.namespace, labels, fields, options, dry_run=dry_run
            )
            return self._json(
                {
                    "kind": rt.kind + "List",
                    "apiVersion": rt.group_version,
                    "metadata": {"resourceVersion": str(self.store.rv)},
                    "items": items,
                },
                warnings=warnings,
            )
        obj, removed = self.store.delete(
            rt, target.namespace or "", target.name or "", options, dry_run=dry_run
        )
        if (removed or dry_run) and not rt.return_deleted_object:
            details = rt.details(obj["metadata"]["name"])
            details["uid"] = obj["metadata"]["uid"]
            return self._json(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": details,
                },
                warnings=warnings,
            )
        code = 202 if not removed and options.get("orphanDependents") is False else 200
        return self._json(self._out(rt, obj), code, warnings)
