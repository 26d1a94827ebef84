"""Shared pieces of the API server emulator: Status errors, resource types, small helpers.

Errors are raised as `ApiError` anywhere in the emulator and rendered by the HTTP layer as the
same `Status` body a real kube-apiserver sends, so the official client raises `ApiException`
with the right status and reason, and kopf sees the codes it branches on (404, 409, 410, 422).
"""

from __future__ import annotations

import datetime
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the real server's generateName alphabet


def now_ts() -> str:
    """RFC 3339 time with second precision, as metav1.Time serialises."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_ts() -> str:
    """RFC 3339 time with microseconds, as metav1.MicroTime serialises."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp (either precision)."""
    text = value.replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(text).timestamp()


def new_uid() -> str:
    return str(uuid.uuid4())


def random_suffix(rng: random.Random, length: int = 5) -> str:
    return "".join(rng.choice(_NAME_ALPHABET) for _ in range(length))


def clone(obj: Any) -> Any:
    """Deep copy of JSON data (faster than copy.deepcopy for plain dicts and lists)."""
    return json.loads(json.dumps(obj))


def meta(obj: Obj) -> Obj:
    """The metadata mapping of an object, created if absent."""
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = obj["metadata"] = {}
    return m


@dataclass
class Cause:
    """One field error of an Invalid Status (`details.causes[]`)."""

    field: str
    reason: str
    message: str

    def to_json(self) -> Obj:
        return {"reason": self.reason, "message": self.message, "field": self.field}


def required(path: str, detail: str = "") -> Cause:
    return Cause(path, "FieldValueRequired", "Required value" + (": " + detail if detail else ""))


def invalid_value(path: str, value: Any, detail: str) -> Cause:
    return Cause(path, "FieldValueInvalid", f"Invalid value: {json.dumps(value)}: {detail}")


def forbidden_field(path: str, detail: str) -> Cause:
    return Cause(path, "FieldValueForbidden", f"Forbidden: {detail}")


class ApiError(Exception):
    """An API failure that the HTTP layer renders as a Kubernetes Status object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: Obj | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details
        self.headers = headers or {}

    def body(self) -> Obj:
        out: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if not self.reason:
            del out["reason"]  # as the real server's bare 500 (etcd refused the write)
        if self.details is not None:
            out["details"] = self.details
        return out


@dataclass(eq=False)
class ResourceType:
    """Everything the emulator knows about one served resource (built-in or custom)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    singular: str = ""
    verbs: tuple[str, ...] = ALL_VERBS
    status_subresource: bool = False
    has_generation: bool = False
    categories: tuple[str, ...] = ()
    builtin: bool = True
    # Extra field selectors beyond metadata.name/metadata.namespace: name -> getter.
    field_getters: dict[str, Callable[[Obj], str]] = field(default_factory=dict)
    # Top-level fields a typed (built-in) object may carry; others warn or fail when Strict.
    known_fields: frozenset[str] | None = None
    # Hooks: defaulting on create, validation (new, old-or-None) -> causes, update checks.
    default: Callable[[Obj, ResourceType], None] | None = None  # idempotent, on every write
    on_create: Callable[[Obj], None] | None = None  # status reset and initial status
    validate: Callable[[Obj, Obj | None], list[Cause]] | None = None
    normalize: Callable[[Obj], None] | None = None  # e.g. Go's omitempty dropping zeroes
    decode: Callable[[Obj], str | None] | None = None  # a type error the Go decoder would raise
    status_keeps_meta: bool = False  # /status may change labels/annotations (Jobs, Pods)
    subresources: tuple[str, ...] = ()
    storage: bool = True  # the storage version of a CRD (the one watches report)
    create_on_update: bool = False  # PUT to a missing name creates it (events)
    unconditional_update: bool = True  # PUT without resourceVersion allowed
    default_propagation: str = "Background"
    return_deleted_object: bool = False  # DELETE answers the object instead of a Status
    schema: Any = None  # apiserver_schema.CrdSchema for custom resources
    printer_columns: list[Obj] = field(default_factory=list)
    crd_name: str = ""  # for custom resources: the owning CRD's name

    def __post_init__(self) -> None:
        if not self.singular:
            self.singular = self.kind.lower()

    @property
    def subs(self) -> tuple[str, ...]:
        """Served subresources (`status` when the status subresource is on)."""
        extra = ("status",) if self.status_subresource and "status" not in self.subresources else ()
        return self.subresources + extra

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """Storage key: one store per group and plural, whatever the version."""
        return (self.group, self.plural)

    @property
    def qualified(self) -> str:
        """`configmaps` or `jobs.batch`: the resource as error messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """`ConfigMap` or `Job.batch`: the kind as Invalid messages name it."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def details(self, name: str) -> Obj:
        out: Obj = {"name": name}
        if self.group:
            out["group"] = self.group
        out["kind"] = self.plural
        return out

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += "/" + self.plural
        return base + ("/" + name if name else "")


# -- Status constructors -------------------------------------------------------------------------


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', details=rt.details(name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    msg = f'{rt.qualified} "{name}" already exists'
    return ApiError(409, "AlreadyExists", msg, details=rt.details(name))


def conflict(
    rt: ResourceType, name: str, detail: str | None = None, *, by_kind: bool = False
) -> ApiError:
    detail = detail or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    what = rt.kind if by_kind else rt.qualified  # delete preconditions name the kind
    msg = f'Operation cannot be fulfilled on {what} "{name}": {detail}'
    return ApiError(409, "Conflict", msg, details=rt.details(name))


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> ApiError:
    """422 Invalid with one cause per field error, worded as the real server words it."""
    qualified = f"{kind}.{group}" if group else kind
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details: Obj = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [c.to_json() for c in causes]
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {joined}', details=details)


def invalid_for(rt: ResourceType, name: str, causes: list[Cause]) -> ApiError:
    return invalid(rt.kind, name, causes, rt.group)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message, details={})


def resource_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", details={})


def method_not_allowed() -> ApiError:
    msg = "the server does not allow this method on the requested resource"
    return ApiError(405, "MethodNotAllowed", msg, details={})


def unsupported_media_type() -> ApiError:
    return ApiError(415, "UnsupportedMediaType", "415: Unsupported Media Type", details={})
