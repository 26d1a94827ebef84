"""Checks of the pod settings the schema cannot express, and Pod Security warnings.

`mount_issues` are errors (the Job would be refused): a volumeMount whose volume no task or
taskDefaults declares, a volume name used twice. `restricted_warnings` are warnings: settings a
namespace enforcing Pod Security `restricted` refuses (the Job is created, its pods are not),
shown by `kopflow validate` without failing it, since many namespaces do not enforce it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from kopflow.api.pod import PodTemplate, SecurityContext
from kopflow.api.workflow import PodSettings, Task, Workflow, WorkflowSpec
from kopflow.engine.defaults import merge_defaults
from kopflow.engine.validation import Issue

RESTRICTED_CAPABILITIES = {"NET_BIND_SERVICE"}


def _tasks(spec: WorkflowSpec) -> Iterator[tuple[str, Task]]:
    for label, group in (("spec.tasks", spec.tasks), ("spec.onFailure", spec.on_failure or [])):
        for i, raw in enumerate(group):
            yield f"{label}[{i}]", merge_defaults(raw, spec.task_defaults)


def mount_issues(spec: WorkflowSpec) -> list[Issue]:
    """volumeMounts (of the task and its sidecars) naming a volume the task does not have."""
    issues = []
    for path, task in _tasks(spec):
        names = [v.name for v in task.volumes or ()]
        seen: set[str] = set()
        for j, name in enumerate(names):
            if name in seen:
                issues.append(Issue(f"{path}.volumes[{j}].name", f'volume "{name}" twice'))
            seen.add(name)
        mounts = [(f"{path}.volumeMounts", task.volume_mounts or [])]
        template = task.pod_template
        for k, sidecar in enumerate(template.sidecars or () if template else ()):
            mounts.append(
                (f"{path}.podTemplate.sidecars[{k}].volumeMounts", sidecar.volume_mounts or [])
            )
        for where, items in mounts:
            for j, mount in enumerate(items):
                if mount.name not in seen:
                    known = ", ".join(sorted(seen)) or "none"
                    issues.append(
                        Issue(
                            f"{where}[{j}].name",
                            f'no volume "{mount.name}" in this task\'s volumes (has: {known}); '
                            "declare it in volumes or taskDefaults.volumes",
                        )
                    )
    return issues


def _container_breaks(sc: SecurityContext | None, where: str) -> Iterator[Issue]:
    if sc is None:
        return
    if sc.privileged:
        yield Issue(f"{where}.privileged", "privileged containers are refused")
    if sc.allow_privilege_escalation:
        yield Issue(f"{where}.allowPrivilegeEscalation", "must be false")
    caps = sc.capabilities
    if caps is not None and caps.drop is not None and "ALL" not in caps.drop:
        yield Issue(f"{where}.capabilities.drop", "must include ALL")
    if caps is not None and set(caps.add or ()) - RESTRICTED_CAPABILITIES:
        yield Issue(f"{where}.capabilities.add", "only NET_BIND_SERVICE may be added")
    yield from _common_breaks(sc.run_as_non_root, sc.run_as_user, sc.seccomp_profile, where)


def _common_breaks(
    non_root: bool | None, user: int | None, seccomp: object | None, where: str
) -> Iterator[Issue]:
    if non_root is False:
        yield Issue(f"{where}.runAsNonRoot", "must not be false")
    if user == 0:
        yield Issue(f"{where}.runAsUser", "must not be 0 (root)")
    if getattr(seccomp, "type", None) == "Unconfined":
        yield Issue(f"{where}.seccompProfile.type", "Unconfined is refused")


def _template_breaks(template: PodTemplate, where: str) -> Iterator[Issue]:
    pod = template.security_context
    if pod is not None:
        yield from _common_breaks(
            pod.run_as_non_root, pod.run_as_user, pod.seccomp_profile, f"{where}.securityContext"
        )
    yield from _container_breaks(
        template.container_security_context, f"{where}.containerSecurityContext"
    )
    for k, sidecar in enumerate(template.sidecars or ()):
        yield from _container_breaks(
            sidecar.security_context, f"{where}.sidecars[{k}].securityContext"
        )


def restricted_warnings(spec: WorkflowSpec) -> list[Issue]:
    """Settings written in the spec that Pod Security `restricted` refuses, by field path; the
    message says what a namespace enforcing it does."""
    templates: list[tuple[str, PodSettings]] = []
    if spec.task_defaults is not None:
        templates.append(("spec.taskDefaults.podTemplate", spec.task_defaults))
    for label, group in (("spec.tasks", spec.tasks), ("spec.onFailure", spec.on_failure or [])):
        templates += [(f"{label}[{i}].podTemplate", t) for i, t in enumerate(group)]
    found = []
    for where, settings in templates:
        if settings.pod_template is not None:
            found += list(_template_breaks(settings.pod_template, where))
    return [
        Issue(
            i.path,
            f"{i.message} under Pod Security restricted: in a namespace enforcing it the "
            "attempt's pod is not created",
        )
        for i in found
    ]


def document_warnings(doc: Any) -> list[Issue]:
    """restricted_warnings of a Workflow or of a WorkflowRun's inline workflow (none for a
    document that does not parse: its errors say more)."""
    if not isinstance(doc, Mapping):
        return []
    try:
        if doc.get("kind") == "Workflow":
            return restricted_warnings(Workflow.model_validate(doc).spec)
        if doc.get("kind") == "WorkflowRun":
            from kopflow.api.run import WorkflowRun  # only for runs: validate starts faster

            inline = WorkflowRun.model_validate(doc).spec.workflow
            if inline is not None:
                return [
                    Issue(i.path.replace("spec.", "spec.workflow.", 1), i.message)
                    for i in restricted_warnings(inline)
                ]
    except ValidationError:
        pass
    return []
