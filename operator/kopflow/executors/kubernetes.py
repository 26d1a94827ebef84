"""Task attempts as Kubernetes Jobs: build the Job from a Launch, read an Observation back.

Both directions are pure functions over plain dicts (the API's JSON), so they are tested
without a cluster and shared by the operator and its tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kopflow.api.pod import Capabilities, PodTemplate, SeccompProfile, SecurityContext
from kopflow.api.run import owner_reference
from kopflow.engine.decisions import Launch
from kopflow.engine.observations import MISSING, Observation
from kopflow.engine.podtemplate import merge_security
from kopflow.engine.times import parse_time

TERMINATION_LOG = "/dev/termination-log"
"""Outputs go to the termination message: the operator reads them from Pod status, never logs."""
CONTAINER = "main"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kopflow"}
SCRIPT_RUNNER = 'printf "%s" "$KOPFLOW_SCRIPT" | exec "$@"'
"""Feeds a script's source to its interpreter on stdin. Fixed text: the source and every
argument travel as data ($KOPFLOW_SCRIPT and "$@"), never as shell code."""

SAFE_CONTAINER_SECURITY = SecurityContext(
    allow_privilege_escalation=False,
    capabilities=Capabilities(drop=["ALL"]),
    seccomp_profile=SeccompProfile(type="RuntimeDefault"),
)
"""Every container's base: a template's containerSecurityContext replaces only the fields it
sets (capabilities by add and drop), a sidecar's own securityContext then does the same."""
POD_SECURITY = {"seccompProfile": {"type": "RuntimeDefault"}}


def _env(launch: Launch) -> list[dict[str, Any]]:
    env = [v.dump() for v in launch.env]
    env.append({"name": "KOPFLOW_OUTPUTS", "value": TERMINATION_LOG})
    if launch.script is not None:
        env.append({"name": "KOPFLOW_SCRIPT", "value": launch.script.source})
    return env


def _entrypoint(launch: Launch) -> dict[str, Any]:
    if launch.script is not None:
        argv = ["sh", "-c", SCRIPT_RUNNER, "kopflow-script", *launch.script.command, *launch.args]
        return {"command": argv}
    out: dict[str, Any] = {}
    if launch.command:
        out["command"] = list(launch.command)
    if launch.args:
        out["args"] = list(launch.args)
    return out


def _sidecars(template: PodTemplate, base: SecurityContext | None) -> list[dict[str, Any]]:
    """Native sidecars: init containers that keep running (restartPolicy Always)."""
    out = []
    for sidecar in template.sidecars or ():
        body = sidecar.dump()
        body["restartPolicy"] = "Always"
        security = merge_security(base, sidecar.security_context)
        body["securityContext"] = security.dump() if security else {}
        out.append(body)
    return out


def _apply_template(
    template: PodTemplate, pod_spec: dict[str, Any], pod_meta: dict[str, Any]
) -> None:
    """The template's pod fields (its security contexts are merged by the caller)."""
    if template.security_context is not None:
        pod_spec["securityContext"] = {**POD_SECURITY, **template.security_context.dump()}
    for key, value in (
        ("affinity", template.affinity),
        ("priorityClassName", template.priority_class_name),
        ("runtimeClassName", template.runtime_class_name),
    ):
        if value is not None:
            pod_spec[key] = value if isinstance(value, str) else value.dump()
    for key, items in (
        ("topologySpreadConstraints", template.topology_spread_constraints),
        ("imagePullSecrets", template.image_pull_secrets),
    ):
        if items:
            pod_spec[key] = [item.dump() for item in items]
    meta = template.metadata
    if meta is not None and meta.annotations:
        pod_meta["annotations"] = dict(meta.annotations)


def build_job(launch: Launch, run: Mapping[str, Any]) -> dict[str, Any]:
    """The Job of one attempt, owned by its WorkflowRun (run is the run's body or metadata
    holder with name, namespace and uid)."""
    meta = run["metadata"]
    pod = launch.pod
    template = pod.pod_template or PodTemplate()
    security = merge_security(SAFE_CONTAINER_SECURITY, template.container_security_context)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": launch.image,
        **_entrypoint(launch),
        "env": _env(launch),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": security.dump() if security else {},
    }
    if pod.env_from:
        container["envFrom"] = [e.dump() for e in pod.env_from]
    if pod.resources:
        container["resources"] = pod.resources
    if pod.volume_mounts:
        container["volumeMounts"] = [m.dump() for m in pod.volume_mounts]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": POD_SECURITY,
        "containers": [container],
    }
    sidecars = _sidecars(template, security)
    if sidecars:
        pod_spec["initContainers"] = sidecars
    account = template.service_account_name or launch.service_account_name
    if account:
        pod_spec["serviceAccountName"] = account
    else:
        pod_spec["automountServiceAccountToken"] = False
    if pod.node_selector:
        pod_spec["nodeSelector"] = pod.node_selector
    if pod.tolerations:
        pod_spec["tolerations"] = pod.tolerations
    if pod.volumes:
        pod_spec["volumes"] = [v.dump() for v in pod.volumes]
    labels = {**MANAGED_BY, **launch.labels}
    pod_meta: dict[str, Any] = {
        "labels": {**((template.metadata and template.metadata.labels) or {}), **labels}
    }
    _apply_template(template, pod_spec, pod_meta)
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {"metadata": pod_meta, "spec": pod_spec},
    }
    if launch.timeout_seconds:
        spec["activeDeadlineSeconds"] = launch.timeout_seconds
    if template.job_ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = template.job_ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": launch.job_name,
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(meta)],
        },
        "spec": spec,
    }


def _time(value: Any) -> datetime | None:
    return parse_time(value) if isinstance(value, str) and value else None


def _true_conditions(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = (job.get("status") or {}).get("conditions") or ()
    return {c.get("type", ""): c for c in conditions if c.get("status") == "True"}


STUCK_REASONS = frozenset({"CreateContainerError", "InvalidImageName", "ErrImageNeverPull"})
"""Waiting reasons a container never leaves by itself (a bad image name): the attempt failed,
though the Job will never say so. Not CreateContainerConfigError: the Secret or ConfigMap it
lacks may be created a second later; podPendingTimeoutSeconds bounds that wait."""


def waiting(pod: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The main container's waiting state, when it has one."""
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == CONTAINER:
            return (status.get("state") or {}).get("waiting") or None
    return None


def _container_state(pod: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == CONTAINER:
            state: Mapping[str, Any] = status.get("state") or {}
            return state
    return None


def pending(
    pod: Mapping[str, Any] | None, refused: str | None = None
) -> tuple[str, str | None] | None:
    """Why the attempt's container has not started, as (reason, the API's words); None once
    it runs. refused: the message of the Job's FailedCreate Event (the pod was refused at
    admission: Pod Security, a quota, a missing ServiceAccount)."""
    if pod is None:
        return ("FailedCreate", refused) if refused else ("PodNotCreated", None)
    state = _container_state(pod)
    if state is not None and ("running" in state or "terminated" in state):
        return None
    wait = (state or {}).get("waiting") or {}
    if wait.get("reason") and wait.get("reason") != "ContainerCreating":
        return str(wait["reason"]), wait.get("message")
    for condition in (pod.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return str(condition.get("reason") or "Unschedulable"), condition.get("message")
    if state is None and (pod.get("status") or {}).get("phase") not in (None, "Pending"):
        return None
    return str(wait.get("reason") or "PodPending"), wait.get("message")


def terminated(pod: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if not pod:
        return None
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == CONTAINER:
            terminated = (status.get("state") or {}).get("terminated")
            return terminated if terminated else None
    return None


FINISHED_CONDITIONS = ("Complete", "SuccessCriteriaMet", "Failed", "FailureTarget")


def finished(job: Mapping[str, Any]) -> bool:
    """The Job controller has declared the Job done, one way or the other."""
    return any(c in _true_conditions(job) for c in FINISHED_CONDITIONS)


def observe(
    job: Mapping[str, Any] | None, pod: Mapping[str, Any] | None, refused: str | None = None
) -> Observation:
    """What one attempt's Job and its Pod say; a terminated container decides first, because
    it is known before the Job controller writes its condition. refused: the message of a
    FailedCreate Event on the Job, when its pod was refused."""
    if job is None:
        return MISSING
    job_status = job.get("status") or {}
    started = _time(job_status.get("startTime"))
    pod_status = (pod or {}).get("status") or {}
    if pod_status.get("reason") in ("Evicted", "Preempting", "NodeLost", "Terminated"):
        return Observation(
            "lost", None, pod_status.get("reason"), pod_status.get("message"), None, started
        )
    term = terminated(pod)
    if term is not None:
        code = term.get("exitCode")
        started = _time(term.get("startedAt")) or started
        finished = _time(term.get("finishedAt"))
        message = term.get("message")
        if code == 0:
            return Observation("succeeded", 0, "Completed", None, message, started, finished)
        return Observation(
            "failed", code, term.get("reason") or "Error", None, message, started, finished
        )
    stuck = waiting(pod)
    if stuck is not None and stuck.get("reason") in STUCK_REASONS:
        return Observation("failed", None, stuck["reason"], stuck.get("message"), None, started)
    conditions = _true_conditions(job)
    finished = _time(job_status.get("completionTime"))
    if "Complete" in conditions or "SuccessCriteriaMet" in conditions:
        return Observation("succeeded", 0, "Completed", None, None, started, finished)
    failed = conditions.get("Failed") or conditions.get("FailureTarget")
    if failed is not None:
        reason = failed.get("reason") or "Error"
        when = _time(failed.get("lastTransitionTime"))
        if pod is None and reason == "BackoffLimitExceeded":
            # the pod vanished without exiting (node lost, deleted): nothing the task did
            message = "the attempt's pod vanished before it finished"
            return Observation("lost", None, "Lost", message, None, started, when)
        return Observation("failed", None, reason, failed.get("message"), None, started, when)
    why = pending(pod, refused)
    if why is not None:
        return Observation("running", None, why[0], why[1], started_at=started, pending=True)
    return Observation("running", started_at=started)
