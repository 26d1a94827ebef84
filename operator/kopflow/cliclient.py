"""The CLI's access to a cluster: the user's own kubeconfig, context and namespace, as kubectl.

    async with connect(args) as kube:          # args: kubeconfig, context, namespace
        run = await kube.get("workflowruns", name)

Every API call goes through kubernetes_asyncio with raw JSON (dicts in, dicts out). Failures
become `CliError`s that say what to do: the cluster cannot be reached, the CRDs are not
installed, the user may not do this verb on this resource, the object does not exist.
Commands that need other APIs (pod logs, ConfigMaps) use `kube.api` (a kubernetes_asyncio
ApiClient) and `kube.explain(err, verb, resource, name)` for the same messages.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

GROUP, VERSION = "kopflow.dev", "v1alpha1"
KINDS = {"workflowruns": "workflowrun", "workflows": "workflow"}
REQUEST_TIMEOUT = 30
"""Seconds one API request may take (watches excepted)."""
WATCH_SECONDS = 300
"""A watch is re-opened from its last resourceVersion after this (the server may end it)."""


class CliError(Exception):
    """A failure to show the user as `error: <message>` with exit code `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def _kubeconfig_path(given: str | None) -> str:
    return given or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace of the context (the named one, else the current one), else "default"."""
    try:
        contexts, current = k8s_config.list_kube_config_contexts(_kubeconfig_path(kubeconfig))
    except Exception:  # the config itself is reported by connect()
        return "default"
    chosen = current
    if context is not None:
        chosen = next((c for c in contexts or () if c.get("name") == context), None)
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


def _status_body(err: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(err.body) if err.body else {}
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


@dataclass
class Kube:
    """An API client for one context and namespace (see connect())."""

    api: k8s.ApiClient
    namespace: str
    server: str
    context: str | None

    @property
    def custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api)

    def explain(
        self,
        err: ApiException,
        verb: str,
        resource: str,
        name: str | None = None,
        namespace: str | None = None,
    ) -> CliError:
        """The user's view of an API error: what was refused or missing, and the fix."""
        namespace = namespace or self.namespace
        body = _status_body(err)
        message = str(body.get("message") or err.reason or "")
        details = body.get("details") or {}
        qualified = f"{resource}.{GROUP}" if resource in KINDS else resource
        where = f'in namespace "{namespace}"' if namespace else "in any namespace"
        if err.status == 404:
            if details.get("kind") == "namespaces":
                return CliError(f'namespace "{details.get("name")}" not found')
            if name is not None and details.get("name") == name:
                kind = KINDS.get(resource, resource.rstrip("s"))
                return CliError(f'{kind} "{name}" not found in namespace "{namespace}"')
            if resource in KINDS:
                return CliError(
                    f"the cluster at {self.server} does not serve {qualified}: the kopflow "
                    "CRDs are not installed; install them with `kubectl apply -f crds/` "
                    "(or `kopflow crds --stdout | kubectl apply -f -`)"
                )
            return CliError(f"{qualified} {name or ''} not found {where}: {message}".strip())
        if err.status == 403:
            return CliError(
                f'forbidden: you may not "{verb}" {qualified} {where}; ask for a Role that '
                f'grants "{verb}" on "{resource}" (the server said: {message})'
            )
        if err.status == 401:
            return CliError(
                f"the cluster at {self.server} did not accept your credentials (401 "
                f"Unauthorized); check the user of context {self.context or '(current)'} in "
                "your kubeconfig"
            )
        if err.status == 422 or err.status == 400:
            return CliError(f"the cluster refused to {verb} {qualified}: {message}")
        return CliError(f"{verb} {qualified} {name or ''}: {err.status} {message}".strip())

    async def get(self, plural: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or self.namespace
        try:
            body: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, ns, plural, name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as err:
            raise self.explain(err, "get", plural, name, ns) from None
        return body

    async def run(self, name: str) -> dict[str, Any]:
        """A WorkflowRun as the operator sees it: its workflow spec in `status.workflow`
        (inline, else pinned in the ConfigMap the run owns) and every task's outputs, also
        those kept in its output shards (docs/design.md, "Run size")."""
        run = await self.get("workflowruns", name)
        status = run.setdefault("status", {})
        if not status.get("workflow"):
            status["workflow"] = (run.get("spec") or {}).get("workflow") or await self._pinned(
                status.get("workflowSnapshot") or {}
            )
        await self._hydrate(name, status.get("tasks") or {})
        return run

    async def _config_map(self, name: str) -> dict[str, Any] | None:
        try:
            cm = await k8s.CoreV1Api(self.api).read_namespaced_config_map(
                name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise self.explain(err, "get", "configmaps", name) from None
        found: dict[str, Any] = self.api.sanitize_for_serialization(cm)
        return found

    async def _pinned(self, ref: dict[str, Any]) -> dict[str, Any] | None:
        from kopflow.controller.owned import decode_spec

        cm = await self._config_map(ref["configMap"]) if ref.get("configMap") else None
        return decode_spec(cm, str(ref.get("key") or "")) if cm else None

    async def _hydrate(self, run: str, tasks: dict[str, Any]) -> None:
        """Fill in the outputs of tasks whose outputs live in a shard ConfigMap."""
        from kopflow.engine.spill import shard_name

        shards: dict[int, dict[str, Any] | None] = {}
        for task, state in tasks.items():
            n = state.get("outputsShard")
            if n is None or state.get("outputs"):
                continue
            if n not in shards:
                shards[n] = await self._config_map(shard_name(run, int(n)))
            raw = ((shards[n] or {}).get("data") or {}).get(task)
            if raw is not None:
                state["outputs"] = json.loads(raw)

    async def list(
        self, plural: str, all_namespaces: bool = False, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        extra: dict[str, Any] = {"_request_timeout": REQUEST_TIMEOUT}
        if label_selector:
            extra["label_selector"] = label_selector
        try:
            if all_namespaces:
                listing = await self.custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, **extra
                )
            else:
                listing = await self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, **extra
                )
        except ApiException as err:
            raise self.explain(err, "list", plural, None, "" if all_namespaces else None) from None
        return list(listing.get("items") or [])

    async def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            created: dict[str, Any] = await self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, body, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as err:
            raise self.explain(err, "create", plural) from None
        return created

    async def patch(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386) of the object."""
        try:
            patched: dict[str, Any] = await self.custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
                GROUP,
                VERSION,
                self.namespace,
                plural,
                name,
                patch,
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as err:
            raise self.explain(err, "patch", plural, name) from None
        return patched

    async def watch(self, plural: str, name: str) -> AsyncGenerator[dict[str, Any], None]:
        """The object now, then every new version of it, from a watch (never polling).

        A watch the server ends is re-opened from the last resourceVersion; one that has
        expired (410 Gone) starts again from a fresh read. Ends when the object is deleted.
        """
        from kubernetes_asyncio import watch

        current = await self.get(plural, name)
        yield current
        version = current["metadata"].get("resourceVersion")
        while True:
            stream = watch.Watch()
            try:
                async for event in stream.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    plural,
                    field_selector=f"metadata.name={name}",
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                ):
                    obj = event["raw_object"]
                    if event["type"] == "DELETED":
                        raise CliError(f'{KINDS[plural]} "{name}" was deleted')
                    if event["type"] in ("ADDED", "MODIFIED"):
                        version = obj["metadata"].get("resourceVersion") or version
                        yield obj
            except ApiException as err:
                if err.status != 410:
                    raise self.explain(err, "watch", plural, name) from None
                current = await self.get(plural, name)
                version = current["metadata"].get("resourceVersion")
                yield current
            finally:
                await stream.close()


@asynccontextmanager
async def connect(
    kubeconfig: str | None, context: str | None, namespace: str | None
) -> AsyncIterator[Kube]:
    """A client for the kubeconfig's context (as kubectl picks them), and the namespace: the
    given one, else the context's, else "default". Connection failures inside the block
    become a CliError naming the server."""
    import aiohttp

    path = _kubeconfig_path(kubeconfig)
    missing = [p for p in path.split(os.pathsep) if p and not os.path.exists(p)]
    if missing and len(missing) == len(path.split(os.pathsep)):
        where = "--kubeconfig" if kubeconfig else "KUBECONFIG" if "KUBECONFIG" in os.environ else ""
        raise CliError(
            f"no kubeconfig at {path}{f' ({where})' if where else ''}; pass --kubeconfig FILE "
            "or set KUBECONFIG to a cluster's kubeconfig"
        )
    from kopflow.controller.client import Credentials

    # The operator's loader: the same exec-plugin expiry, proxy-url, HTTPS_PROXY and
    # tls-server-name handling for a user as for the operator.
    credentials = Credentials(path, context)
    try:
        await credentials.load()
    except (k8s_config.ConfigException, OSError) as err:
        hint = "pass --kubeconfig FILE or set KUBECONFIG"
        if context is not None:
            hint = f"check that context {context!r} exists in {path} (kubectl config get-contexts)"
        raise CliError(f"no usable kubeconfig ({path}): {err}; {hint}") from None
    ns = namespace or context_namespace(kubeconfig, context)
    configuration = credentials.configuration
    server = str(configuration.host)
    api = k8s.ApiClient(configuration)
    try:
        yield Kube(api, ns, server, context)
    except aiohttp.ClientError as err:
        raise CliError(
            f"cannot reach the cluster at {server}: {err}; is it running, and is this the "
            "right context (--context) and kubeconfig (--kubeconfig)?"
        ) from None
    except TimeoutError:
        raise CliError(
            f"the cluster at {server} did not answer within {REQUEST_TIMEOUT}s"
        ) from None
    finally:
        await api.close()
