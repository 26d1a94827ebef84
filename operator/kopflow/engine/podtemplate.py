"""Merging a task's pod settings over taskDefaults: podTemplate field by field, volumes by
name, volume mounts by mount path (the rules the model docstrings, hence the CRD, state)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from kopflow.api.pod import (
    Capabilities,
    PodMetadata,
    PodSecurityContext,
    PodTemplate,
    SecurityContext,
)

T = TypeVar("T")
M = TypeVar("M", PodSecurityContext, SecurityContext, Capabilities)


def merge_by(
    defaults: Sequence[T] | None, own: Sequence[T] | None, key: Callable[[T], str]
) -> list[T] | None:
    """Default items in their order, each replaced by the task's item of the same key, then the
    task's other items in its order."""
    if not defaults:
        return list(own) if own is not None else None
    if not own:
        return list(defaults)
    mine = {key(item): item for item in own}
    merged = [mine.pop(key(item), item) for item in defaults]
    return merged + [item for item in own if key(item) in mine]


def _fields(base: M | None, over: M | None) -> M | None:
    """`over`'s set fields over `base`'s (None: unset)."""
    if base is None or over is None:
        return over if base is None else base
    update = {n: getattr(over, n) for n in over.model_fields_set if getattr(over, n) is not None}
    return base.model_copy(update=update)


def merge_security(
    base: SecurityContext | None, over: SecurityContext | None
) -> SecurityContext | None:
    """Field by field; capabilities by add and drop. A base allowPrivilegeEscalation is
    dropped when `over` makes the container privileged (or adds SYS_ADMIN) without setting it:
    the API server refuses the combination."""
    merged = _fields(base, over)
    if merged is not None and base is not None and over is not None:
        caps = _fields(base.capabilities, over.capabilities)
        update: dict[str, Any] = {"capabilities": caps}
        merged = merged.model_copy(update=update)
        if over.allow_privilege_escalation is None and merged.escalates():
            merged = merged.model_copy(update={"allow_privilege_escalation": None})
    return merged


def _metadata(base: PodMetadata | None, over: PodMetadata | None) -> PodMetadata | None:
    if base is None or over is None:
        return over if base is None else base
    labels = {**(base.labels or {}), **(over.labels or {})}
    annotations = {**(base.annotations or {}), **(over.annotations or {})}
    return PodMetadata(labels=labels or None, annotations=annotations or None)


def merge_pod_template(defaults: PodTemplate | None, own: PodTemplate | None) -> PodTemplate | None:
    """The task's podTemplate over the defaults': a field the task sets wins; labels and
    annotations merge by key; security contexts merge field by field."""
    if defaults is None or own is None:
        return own if defaults is None else defaults
    update: dict[str, Any] = {
        name: getattr(own, name) for name in own.model_fields_set if getattr(own, name) is not None
    }
    update["metadata"] = _metadata(defaults.metadata, own.metadata)
    update["security_context"] = _fields(defaults.security_context, own.security_context)
    update["container_security_context"] = merge_security(
        defaults.container_security_context, own.container_security_context
    )
    return defaults.model_copy(update=update)
