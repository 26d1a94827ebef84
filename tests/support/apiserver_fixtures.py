"""Test data shared by the emulator's tests and fixtures: a small CRD exercising the schema
features kopflow's generated CRDs rely on (defaults, enums, int-or-string, nullable, maps,
preserve-unknown-fields, a CEL rule, the status subresource, printer columns).
"""

from __future__ import annotations

from typing import Any

from .apiserver_auth import ADMIN_TOKEN
from .apiserver_tls import ca_file as emulator_ca

WIDGET_GROUP = "test.kopflow.dev"
WIDGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["image"],
            "x-kubernetes-validations": [
                {"rule": "self.minReplicas <= self.maxReplicas", "message": "min exceeds max"}
            ],
            "properties": {
                "image": {"type": "string", "minLength": 1},
                "minReplicas": {"type": "integer", "minimum": 1, "default": 1},
                "maxReplicas": {"type": "integer", "minimum": 1, "default": 10},
                "mode": {"type": "string", "enum": ["fast", "safe"]},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "tags": {"type": "array", "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "phase": {"type": "string"},
                "observedGeneration": {"type": "integer"},
                "handled": {"type": "array", "items": {"type": "string"}},
            },
            "x-kubernetes-preserve-unknown-fields": True,
        },
    },
}
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{WIDGET_GROUP}"},
    "spec": {
        "group": WIDGET_GROUP,
        "scope": "Namespaced",
        "names": {
            "plural": "widgets",
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wdg"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": WIDGET_SCHEMA},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Image", "type": "string", "jsonPath": ".spec.image"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                ],
            }
        ],
    },
}


def widget(name: str, **spec: Any) -> dict[str, Any]:
    """A Widget manifest (image defaults to busybox)."""
    spec.setdefault("image", "busybox")
    return {
        "apiVersion": f"{WIDGET_GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


class Raw:
    """Plain HTTP to the emulator, for what the typed client hides (status codes, headers, text).

    Sends the emulator's admin token unless given another one; `token=None` sends no
    Authorization header at all (the anonymous user). For a real server over https, `ca_file`
    verifies it and `cert` (certificate and key files) authenticates with a client certificate.
    """

    def __init__(
        self,
        url: str,
        token: str | None = ADMIN_TOKEN,
        *,
        ca_file: str | None = None,
        cert: tuple[str, str] | None = None,
    ) -> None:
        import urllib3

        self.url = url
        if ca_file is None and url.startswith("https://127.0.0.1:"):
            ca_file = str(emulator_ca())  # an emulator (a real server's CA must be given)
        tls: dict[str, Any] = {"ca_certs": ca_file} if ca_file else {}
        if cert:
            tls.update(cert_file=cert[0], key_file=cert[1])
        self.http = urllib3.PoolManager(**tls)
        self.headers = {"Authorization": f"Bearer {token}"} if token is not None else {}

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
        accept: str = "application/json",
        timeout: float = 10.0,
    ) -> tuple[int, Any, Any]:
        """(status, decoded body: JSON or text, headers)."""
        import json
        from urllib.parse import urlencode

        url = self.url + path + ("?" + urlencode(query) if query else "")
        headers = {**self.headers, "Accept": accept}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        r = self.http.request(
            method, url, body=data, headers=headers, timeout=timeout, retries=False
        )
        try:
            decoded: Any = json.loads(r.data) if r.data else None
        except ValueError:
            decoded = r.data.decode()
        return r.status, decoded, r.headers

    def watch(
        self, path: str, query: dict[str, str], *, count: int, timeout: float = 10.0
    ) -> list[Any]:
        """The first `count` events of a watch (fewer if the server ends it first).

        The read timeout bounds the wait: a stream that stays silent longer raises.
        """
        import json
        from urllib.parse import urlencode

        url = self.url + path + "?" + urlencode({**query, "watch": "true"})
        r = self.http.request(
            "GET", url, headers=self.headers, preload_content=False, timeout=timeout, retries=False
        )
        events: list[Any] = []
        buf = b""
        try:
            if r.status != 200:
                return [json.loads(r.data)]
            for chunk in r.stream(1024):
                buf += chunk
                while b"\n" in buf and len(events) < count:
                    line, buf = buf.split(b"\n", 1)
                    events.append(json.loads(line))
                if len(events) >= count:
                    break
        finally:
            r.release_conn()
        return events


def suspended_job(name: str, **metadata: Any) -> dict[str, Any]:
    """A valid Job that never runs (suspended): for API tests that need a Job object only."""
    pod = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, **metadata},
        "spec": {"suspend": True, "template": {"spec": pod}},
    }


def crd_manifest(
    plural: str,
    kind: str,
    group: str = "example.com",
    *,
    scope: str = "Namespaced",
    schema: Any = None,
) -> dict[str, Any]:
    """A one-version CRD (schema defaults to an open object)."""
    open_schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema or open_schema},
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"plural": plural, "kind": kind},
            "versions": [version],
        },
    }
