"""Built-in resource types of the emulator and the custom resource types a CRD defines.

Each built-in carries the defaulting and validation of its real registry strategy that kopflow or
kopf can run into: Job selectors and template labels, Pod defaults and update rules, name and
label syntax, immutable fields. Omitted behaviour is behaviour kopflow does not use.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .apiserver_schema import CrdSchema, RuleError, check_structural
from .apiserver_types import (
    Cause,
    Obj,
    ResourceType,
    bad_request,
    forbidden_field,
    invalid_value,
    micro_ts,
    required,
)

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  "
    "or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
JOB_LABELS = ("batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name")


# -- generic metadata validation -----------------------------------------------------------------


def name_causes(name: str, *, label: bool = False, path_segment: bool = False) -> list[Cause]:
    """metadata.name syntax: an RFC 1123 subdomain (a label for namespaces; for RBAC objects
    anything that fits in a path segment, so `system:discovery` is a valid name)."""
    if path_segment:
        for bad in ("/", "%"):
            if bad in name:
                return [invalid_value("metadata.name", name, f"may not contain '{bad}'")]
        if name in (".", ".."):
            return [invalid_value("metadata.name", name, f"may not be '{name}'")]
        return [] if name else [required("metadata.name", "name or generateName is required")]
    limit, pattern, msg = (
        (63, _LABEL_NAME, _LABEL_MSG) if label else (253, _SUBDOMAIN, _SUBDOMAIN_MSG)
    )
    causes = []
    if len(name) > limit:
        causes.append(
            invalid_value("metadata.name", name, f"must be no more than {limit} characters")
        )
    if not pattern.match(name):
        causes.append(invalid_value("metadata.name", name, msg))
    return causes


def qualified_key_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_QUALIFIED.match(name))


def label_value_ok(value: str) -> bool:
    return value == "" or (len(value) <= 63 and bool(_QUALIFIED.match(value)))


def metadata_causes(
    obj: Obj, *, label_name: bool = False, path_segment: bool = False
) -> list[Cause]:
    """Name, labels, annotations and ownerReferences checks every kind shares."""
    meta = obj.get("metadata") or {}
    causes = name_causes(str(meta.get("name", "")), label=label_name, path_segment=path_segment)
    for key, value in (meta.get("labels") or {}).items():
        if not qualified_key_ok(key):
            causes.append(
                invalid_value("metadata.labels", key, "name part must be a valid label key")
            )
        if not label_value_ok(str(value)):
            causes.append(invalid_value("metadata.labels", value, _VALUE_MSG))
    for key in meta.get("annotations") or {}:
        if not qualified_key_ok(key):
            causes.append(invalid_value("metadata.annotations", key, "name part must be valid"))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for part in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(part):
                causes.append(required(f"metadata.ownerReferences[{i}].{part}"))
    if sum(1 for ref in meta.get("ownerReferences") or [] if ref.get("controller")) > 1:
        causes.append(
            invalid_value(
                "metadata.ownerReferences", "", "Only one reference can have Controller set to true"
            )
        )
    return causes


def decode_causes(obj: Obj) -> str | None:
    """A message when the JSON could not decode into the Go types (labels must be strings)."""
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        return "json: cannot unmarshal into Go struct field .metadata of type v1.ObjectMeta"
    for key in ("labels", "annotations"):
        values = (meta or {}).get(key)
        if values is not None and (
            not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values())
        ):
            return f"json: cannot unmarshal into Go struct field ObjectMeta.{key} of type string"
    return None


# -- pods ----------------------------------------------------------------------------------------


def _default_container(container: Obj) -> None:
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1].partition(":")[2] if ":" in image.rsplit("/", 1)[-1] else ""
    pull = "Always" if tag in ("", "latest") and "@" not in image else "IfNotPresent"
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("imagePullPolicy", pull)
    container.setdefault("resources", {})


def default_pod_spec(spec: Obj, restart_policy: str | None = "Always") -> None:
    if restart_policy:
        spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                _default_container(container)


def _default_pod(obj: Obj, rt: ResourceType) -> None:
    spec = obj.setdefault("spec", {})
    default_pod_spec(spec)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.setdefault("tolerations", [])
    for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == taint for t in tolerations if isinstance(t, dict)):
            tolerations.append(
                {
                    "key": taint,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            )


def _qos(spec: Obj) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(k)
        and (r.get("requests") or r.get("limits") or {}).get(k) == (r.get("limits") or {}).get(k)
        for r in resources
        for k in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _create_pod(obj: Obj) -> None:
    obj["status"] = {"phase": "Pending", "qosClass": _qos(obj.get("spec") or {})}


def _container_causes(spec: Obj, path: str) -> list[Cause]:
    causes = []
    containers = spec.get("containers")
    if not containers:
        causes.append(required(f"{path}.containers"))
    for i, c in enumerate(containers or []):
        if not isinstance(c, dict) or not c.get("name"):
            causes.append(required(f"{path}.containers[{i}].name"))
        elif not c.get("image"):
            causes.append(required(f"{path}.containers[{i}].image"))
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            sc = (c.get("securityContext") if isinstance(c, dict) else None) or {}
            if sc.get("allowPrivilegeEscalation") is False and sc.get("privileged") is True:
                causes.append(  # the real server prints the Go struct as the value
                    invalid_value(
                        f"{path}.{key}[{i}].securityContext",
                        sc,
                        "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
                    )
                )
    return causes


_POD_MUTABLE = (
    "activeDeadlineSeconds",
    "tolerations",
    "terminationGracePeriodSeconds",
    "schedulingGates",
)


def _validate_pod(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = _container_causes(spec, "spec")
    if old is None:
        return causes
    old_spec = old.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    old_names = [c.get("name") for c in old_spec.get("containers") or []]
    if names != old_names:
        return [forbidden_field("spec.containers", "pod updates may not add or remove containers")]

    def frozen(s: Obj) -> Obj:
        out = {k: v for k, v in s.items() if k not in _POD_MUTABLE}
        out["containers"] = [
            {k: v for k, v in c.items() if k != "image"} for c in s.get("containers") or []
        ]
        if not old_spec.get("nodeName"):
            out.pop("nodeName", None)  # binding (the simulated scheduler) sets it once
        return out

    if frozen(spec) != frozen(old_spec):
        causes.append(
            forbidden_field(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`, "
                "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing "
                "tolerations), `spec.terminationGracePeriodSeconds`",
            )
        )
    return causes


# -- jobs ----------------------------------------------------------------------------------------


def _default_job(obj: Obj, rt: ResourceType) -> None:
    meta = obj.get("metadata") or {}
    uid, name = meta.get("uid", ""), meta.get("name", "")
    spec = obj.setdefault("spec", {})
    template = spec.setdefault("template", {})
    if not spec.get("manualSelector"):
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        for key, value in (
            ("batch.kubernetes.io/controller-uid", uid),
            ("batch.kubernetes.io/job-name", name),
            ("controller-uid", uid),
            ("job-name", name),
        ):
            labels.setdefault(key, value)
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1  # a non-parallel Job; a work queue keeps completions unset
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("manualSelector", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    default_pod_spec(template.setdefault("spec", {}), restart_policy=None)


def _create_job(obj: Obj) -> None:
    obj["status"] = {}


def _normalize_job(obj: Obj) -> None:
    """Go's `omitempty` drops zero counters from JobStatus (ready and terminating are pointers)."""
    status = obj.get("status")
    if isinstance(status, dict):
        for key in ("active", "succeeded", "failed"):
            if status.get(key) == 0:
                del status[key]


def _validate_job(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    causes = _container_causes(pod_spec, "spec.template.spec")
    if pod_spec.get("restartPolicy") not in ("OnFailure", "Never"):
        causes.append(
            required("spec.template.spec.restartPolicy", 'valid values: "OnFailure", "Never"')
        )
    name = (obj.get("metadata") or {}).get("name", "")
    if len(name) > 63:
        causes.append(invalid_value("metadata.name", name, "must be no more than 63 characters"))
    for key in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            causes.append(invalid_value(f"spec.{key}", value, "must be greater than or equal to 0"))
    status = obj.get("status") or {}
    for key in ("active", "succeeded", "failed", "ready", "terminating"):
        value = status.get(key)
        if isinstance(value, int) and value < 0:
            causes.append(
                invalid_value(f"status.{key}", value, "must be greater than or equal to 0")
            )
    if old is not None:
        old_spec = old.get("spec") or {}
        for key in ("completions", "selector", "completionMode"):
            if spec.get(key) != old_spec.get(key):
                causes.append(invalid_value(f"spec.{key}", spec.get(key), "field is immutable"))
        if template != old_spec.get("template") and not old_spec.get("suspend"):
            causes.append(invalid_value("spec.template", template, "field is immutable"))
    return causes


# -- other core kinds ----------------------------------------------------------------------------


def _default_namespace(obj: Obj, rt: ResourceType) -> None:
    name = (obj.get("metadata") or {}).get("name", "")
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name


def _create_namespace(obj: Obj) -> None:
    obj["status"] = {"phase": "Active"}


def _validate_configmap(obj: Obj, old: Obj | None) -> list[Cause]:
    causes = []
    for key in ("data", "binaryData"):
        for k in obj.get(key) or {}:
            if not re.match(r"^[-._a-zA-Z0-9]+$", k):
                causes.append(
                    invalid_value(
                        key,
                        k,
                        "a valid config key must consist of alphanumerics, '-', '_' or '.'",
                    )
                )
    if old is not None and old.get("immutable"):
        for key in ("data", "binaryData"):
            if obj.get(key) != old.get(key):
                causes.append(forbidden_field(key, "field is immutable when `immutable` is set"))
        if not obj.get("immutable"):
            causes.append(
                forbidden_field("immutable", "field is immutable when `immutable` is set")
            )
    return causes


def _decode_configmap(obj: Obj) -> str | None:
    for key in ("data", "binaryData"):
        values = obj.get(key)
        if values is not None and (
            not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values())
        ):
            return (
                f"json: cannot unmarshal number into Go struct field ConfigMap.{key} of type string"
            )
    return None


def _default_event(obj: Obj, rt: ResourceType) -> None:
    obj.setdefault("reportingComponent", "")
    obj.setdefault("reportingInstance", "")
    obj.setdefault("eventTime", None)
    involved = obj.get("involvedObject")
    if isinstance(involved, dict) and "namespace" not in involved:
        involved["namespace"] = (obj.get("metadata") or {}).get("namespace", "")


def _validate_event(obj: Obj, old: Obj | None) -> list[Cause]:
    ns = (obj.get("metadata") or {}).get("namespace", "")
    involved = obj.get("involvedObject") or {}
    if involved.get("namespace") and ns and involved["namespace"] != ns:
        return [
            invalid_value(
                "involvedObject.namespace", involved["namespace"], "does not match event.namespace"
            )
        ]
    return []


def _validate_events_v1(obj: Obj, old: Obj | None) -> list[Cause]:
    causes = []
    if not obj.get("eventTime"):
        causes.append(required("eventTime"))
    for key in ("reportingController", "reportingInstance", "action", "reason"):
        if not obj.get(key):
            causes.append(required(key))
    return causes


def _default_events_v1(obj: Obj, rt: ResourceType) -> None:
    obj.setdefault("eventTime", micro_ts())


def _decode_lease(obj: Obj) -> str | None:
    for key in ("acquireTime", "renewTime"):
        value = (obj.get("spec") or {}).get(key)
        if value is not None and not _MICROTIME.match(str(value)):
            rest = str(value)[19:]
            return (
                f'parsing time "{value}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse '
                f'"{rest}" as ".000000"'
            )
    return None


_JOB_INTS = frozenset(
    {
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "active",
        "succeeded",
        "failed",
        "ready",
        "terminating",
    }
)


def _decode_job(obj: Obj) -> str | None:
    for part in ("spec", "status"):
        for key, value in (obj.get(part) or {}).items():
            wrong = value is not None and (not isinstance(value, int) or isinstance(value, bool))
            if key in _JOB_INTS and wrong:
                return f"json: cannot unmarshal into Go struct field {part}.{key} of type int32"
    return None


# -- field selectors -----------------------------------------------------------------------------


def _getter(*path: str) -> Any:
    def get(obj: Obj) -> str:
        cur: Any = obj
        for part in path:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return "" if cur is None else str(cur)

    return get


_POD_FIELDS = {
    "spec.nodeName": _getter("spec", "nodeName"),
    "spec.restartPolicy": _getter("spec", "restartPolicy"),
    "spec.schedulerName": _getter("spec", "schedulerName"),
    "spec.serviceAccountName": _getter("spec", "serviceAccountName"),
    "spec.hostNetwork": _getter("spec", "hostNetwork"),
    "status.phase": _getter("status", "phase"),
    "status.podIP": _getter("status", "podIP"),
    "status.nominatedNodeName": _getter("status", "nominatedNodeName"),
}
_EVENT_FIELDS = {
    **{
        f"involvedObject.{k}": _getter("involvedObject", k)
        for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    },
    "reason": _getter("reason"),
    "reportingComponent": _getter("reportingComponent"),
    "source": _getter("source", "component"),
    "type": _getter("type"),
}

_META = frozenset({"apiVersion", "kind", "metadata"})
_SPEC_STATUS = _META | {"spec", "status"}
_EVENT_V1_FIELDS = _META | {
    "eventTime",
    "series",
    "reportingController",
    "reportingInstance",
    "action",
    "reason",
    "regarding",
    "related",
    "note",
    "type",
    "deprecatedSource",
    "deprecatedFirstTimestamp",
    "deprecatedLastTimestamp",
    "deprecatedCount",
}


# -- rbac.authorization.k8s.io -------------------------------------------------------------------

_RBAC = "rbac.authorization.k8s.io"


def _not_supported(path: str, value: Any, allowed: list[str]) -> Cause:
    shown = ", ".join(f'"{v}"' for v in allowed)
    return Cause(
        path, "FieldValueNotSupported", f'Unsupported value: "{value}": supported values: {shown}'
    )


def _rule_causes(obj: Obj, namespaced: bool) -> list[Cause]:
    """ValidatePolicyRule: verbs always; non-resource URLs only, and only in ClusterRoles."""
    causes = []
    for i, rule in enumerate(obj.get("rules") or []):
        at = f"rules[{i}]"
        if not rule.get("verbs"):
            causes.append(required(f"{at}.verbs", "verbs must contain at least one value"))
        urls = rule.get("nonResourceURLs")
        if urls:
            if namespaced:
                message = "namespaced rules cannot apply to non-resource URLs"
                causes.append(invalid_value(f"{at}.nonResourceURLs", urls, message))
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                message = "rules cannot apply to both regular resources and non-resource URLs"
                causes.append(invalid_value(f"{at}.nonResourceURLs", urls, message))
            continue
        if not rule.get("apiGroups"):
            causes.append(
                required(f"{at}.apiGroups", "resource rules must supply at least one api group")
            )
        if not rule.get("resources"):
            causes.append(
                required(f"{at}.resources", "resource rules must supply at least one resource")
            )
    return causes


def _default_binding(obj: Obj, rt: ResourceType) -> None:
    """v1 defaulting: roleRef's and Users'/Groups' apiGroup is rbac.authorization.k8s.io."""
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = _RBAC
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and "apiGroup" not in subject:
            subject["apiGroup"] = "" if subject.get("kind") == "ServiceAccount" else _RBAC
        if isinstance(subject, dict) and subject.get("apiGroup") == "":
            subject.pop("apiGroup")


def _binding_causes(obj: Obj, old: Obj | None, cluster: bool) -> list[Cause]:
    """ValidateRoleBinding / ValidateClusterRoleBinding (and roleRef being immutable)."""
    ref = obj.get("roleRef") or {}
    causes = []
    if ref.get("apiGroup") != _RBAC:
        causes.append(_not_supported("roleRef.apiGroup", ref.get("apiGroup", ""), [_RBAC]))
    kinds = ["ClusterRole"] if cluster else ["Role", "ClusterRole"]
    if ref.get("kind") not in kinds:
        causes.append(_not_supported("roleRef.kind", ref.get("kind", ""), kinds))
    if not ref.get("name"):
        causes.append(required("roleRef.name"))
    for i, subject in enumerate(obj.get("subjects") or []):
        at, kind = f"subjects[{i}]", subject.get("kind")
        name, group = str(subject.get("name") or ""), subject.get("apiGroup", "")
        if not name:
            causes.append(required(f"{at}.name"))
        if kind == "ServiceAccount":
            if name and not _SUBDOMAIN.match(name):
                causes.append(invalid_value(f"{at}.name", name, _SUBDOMAIN_MSG))
            if group:
                causes.append(_not_supported(f"{at}.apiGroup", group, [""]))
            if cluster and not subject.get("namespace"):
                causes.append(required(f"{at}.namespace"))
        elif kind in ("User", "Group"):
            if group != _RBAC:
                causes.append(_not_supported(f"{at}.apiGroup", group, [_RBAC]))
        else:
            causes.append(
                _not_supported(f"{at}.kind", kind or "", ["ServiceAccount", "User", "Group"])
            )
    if old is not None and (old.get("roleRef") or {}) != ref:
        shown = json.dumps(
            {
                "APIGroup": ref.get("apiGroup", ""),
                "Kind": ref.get("kind", ""),
                "Name": ref.get("name", ""),
            },
            separators=(",", ":"),
        )
        causes.append(
            Cause("roleRef", "FieldValueInvalid", f"Invalid value: {shown}: cannot change roleRef")
        )
    return causes


def builtin_types() -> list[ResourceType]:
    """The built-in resources the emulator serves (the ones kopflow, kopf and kubectl touch)."""
    ns_verbs = ("create", "delete", "get", "list", "patch", "update", "watch")
    rbac = "rbac.authorization.k8s.io"
    return [
        ResourceType(
            "",
            "v1",
            "namespaces",
            "Namespace",
            namespaced=False,
            short_names=("ns",),
            verbs=ns_verbs,
            status_subresource=True,
            known_fields=_SPEC_STATUS,
            default=_default_namespace,
            on_create=_create_namespace,
            field_getters={"status.phase": _getter("status", "phase")},
        ),
        ResourceType(
            "",
            "v1",
            "pods",
            "Pod",
            short_names=("po",),
            status_subresource=True,
            has_generation=True,
            known_fields=_SPEC_STATUS,
            default=_default_pod,
            on_create=_create_pod,
            validate=_validate_pod,
            field_getters=_POD_FIELDS,
            return_deleted_object=True,
            categories=("all",),
            status_keeps_meta=True,
            subresources=("status", "log", "binding", "eviction"),
        ),
        ResourceType(
            "",
            "v1",
            "events",
            "Event",
            short_names=("ev",),
            create_on_update=True,
            known_fields=_META
            | {
                "involvedObject",
                "reason",
                "message",
                "source",
                "firstTimestamp",
                "lastTimestamp",
                "count",
                "type",
                "eventTime",
                "series",
                "action",
                "related",
                "reportingComponent",
                "reportingInstance",
            },
            default=_default_event,
            validate=_validate_event,
            field_getters=_EVENT_FIELDS,
        ),
        ResourceType(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            short_names=("cm",),
            known_fields=_META | {"data", "binaryData", "immutable"},
            validate=_validate_configmap,
            decode=_decode_configmap,
        ),
        ResourceType(
            "",
            "v1",
            "secrets",
            "Secret",
            known_fields=_META | {"data", "stringData", "type", "immutable"},
            field_getters={"type": _getter("type")},
        ),
        ResourceType(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            short_names=("sa",),
            known_fields=_META | {"secrets", "imagePullSecrets", "automountServiceAccountToken"},
            return_deleted_object=True,
            subresources=("token",),
        ),
        ResourceType(
            "batch",
            "v1",
            "jobs",
            "Job",
            status_subresource=True,
            has_generation=True,
            known_fields=_SPEC_STATUS,
            default=_default_job,
            on_create=_create_job,
            validate=_validate_job,
            normalize=_normalize_job,
            decode=_decode_job,
            default_propagation="Orphan",
            categories=("all",),
            status_keeps_meta=True,
            field_getters={"status.successful": _getter("status", "succeeded")},
        ),
        ResourceType(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            known_fields=_META | {"spec"},
            decode=_decode_lease,
        ),
        ResourceType(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            short_names=("ev",),
            known_fields=_EVENT_V1_FIELDS,
            default=_default_events_v1,
            validate=_validate_events_v1,
        ),
        ResourceType(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
            short_names=("crd", "crds"),
            status_subresource=True,
            has_generation=True,
            known_fields=_SPEC_STATUS,
            validate=validate_crd,
            on_create=_create_crd,
            categories=("api-extensions",),
            return_deleted_object=True,
        ),
        ResourceType(
            "authentication.k8s.io",
            "v1",
            "selfsubjectreviews",
            "SelfSubjectReview",
            namespaced=False,
            verbs=("create",),
        ),
        ResourceType(
            "authentication.k8s.io",
            "v1",
            "tokenreviews",
            "TokenReview",
            namespaced=False,
            verbs=("create",),
        ),
        ResourceType(
            "authorization.k8s.io",
            "v1",
            "localsubjectaccessreviews",
            "LocalSubjectAccessReview",
            namespaced=True,
            verbs=("create",),
        ),
        ResourceType(
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            namespaced=False,
            verbs=("create",),
        ),
        ResourceType(
            "authorization.k8s.io",
            "v1",
            "selfsubjectrulesreviews",
            "SelfSubjectRulesReview",
            namespaced=False,
            verbs=("create",),
        ),
        ResourceType(
            "authorization.k8s.io",
            "v1",
            "subjectaccessreviews",
            "SubjectAccessReview",
            namespaced=False,
            verbs=("create",),
        ),
        ResourceType(
            rbac,
            "v1",
            "roles",
            "Role",
            known_fields=_META | {"rules"},
            validate=lambda obj, old: _rule_causes(obj, namespaced=True),
        ),
        ResourceType(
            rbac,
            "v1",
            "rolebindings",
            "RoleBinding",
            known_fields=_META | {"subjects", "roleRef"},
            default=_default_binding,
            validate=lambda obj, old: _binding_causes(obj, old, cluster=False),
        ),
        ResourceType(
            rbac,
            "v1",
            "clusterroles",
            "ClusterRole",
            namespaced=False,
            known_fields=_META | {"rules", "aggregationRule"},
            validate=lambda obj, old: _rule_causes(obj, namespaced=False),
        ),
        ResourceType(
            rbac,
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            namespaced=False,
            known_fields=_META | {"subjects", "roleRef"},
            default=_default_binding,
            validate=lambda obj, old: _binding_causes(obj, old, cluster=True),
        ),
    ]


# -- CustomResourceDefinitions -------------------------------------------------------------------


def validate_crd(obj: Obj, old: Obj | None) -> list[Cause]:
    """CRD checks that catch a broken generated CRD: name, scope, versions, structural schema."""
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    causes = []
    expected = f"{names.get('plural', '')}.{spec.get('group', '')}"
    if (obj.get("metadata") or {}).get("name") != expected:
        causes.append(
            invalid_value(
                "metadata.name",
                obj["metadata"].get("name"),
                'must be spec.names.plural+"."+spec.group',
            )
        )
    for key in ("plural", "kind"):
        if not names.get(key):
            causes.append(required(f"spec.names.{key}"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(required("spec.scope"))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(required("spec.versions"))
    if sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            invalid_value(
                "spec.versions", "", "must have exactly one version marked as storage version"
            )
        )
    # One schema shared by every version is validated once, as spec.validation (the internal
    # CRD form the real server converts v1 into), else per version.
    schemas = [(version.get("schema") or {}).get("openAPIV3Schema") for version in versions]
    shared = bool(versions) and all(v.get("schema") == versions[0].get("schema") for v in versions)
    paths = (
        ["spec.validation.openAPIV3Schema"]
        if shared
        else [f"spec.versions[{i}].schema.openAPIV3Schema" for i in range(len(versions))]
    )
    for path, schema in zip(paths, schemas[: len(paths)], strict=True):
        if not isinstance(schema, dict):
            causes.append(required(path))
            continue
        causes += [Cause(path + c.field, c.reason, c.message) for c in check_structural(schema)]
        try:
            CrdSchema(schema)
        except RuleError as exc:
            causes.append(exc.cause(path))
    return causes


def _create_crd(obj: Obj) -> None:
    spec = obj.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("singular", str(names.get("plural", "")))
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    spec["names"] = names
    spec.setdefault("conversion", {"strategy": "None"})
    when = micro_ts()[:19] + "Z"
    obj["status"] = {
        "acceptedNames": names,
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
        "conditions": [
            {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": when}
            for t, r, m in (
                ("NamesAccepted", "NoConflicts", "no conflicts found"),
                ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            )
        ],
    }


def crd_types(crd: Obj) -> list[ResourceType]:
    """One ResourceType per served version of a CRD (all share one store: no conversion)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        out.append(
            ResourceType(
                spec["group"],
                version["name"],
                names["plural"],
                names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                singular=names.get("singular") or names["kind"].lower(),
                status_subresource="status" in (version.get("subresources") or {}),
                subresources=tuple(k for k in (version.get("subresources") or {}) if k == "status"),
                has_generation=True,
                categories=tuple(names.get("categories") or ()),
                builtin=False,
                schema=CrdSchema(schema),
                unconditional_update=False,
                printer_columns=list(version.get("additionalPrinterColumns") or []),
                crd_name=crd["metadata"]["name"],
                storage=bool(version.get("storage")),
            )
        )
    return out


def check_decode(rt: ResourceType, obj: Obj) -> None:
    """400 BadRequest for bodies that would not decode into the Go type of a built-in."""
    problem = decode_causes(obj) or (rt.decode(obj) if rt.decode else None)
    if problem:
        raise bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {problem}'
        )
