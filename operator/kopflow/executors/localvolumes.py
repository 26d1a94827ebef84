"""`kopflow run` and pod settings: which volumes it can give a task, and what it ignores.

`--volume NAME=PATH` gives the volume NAME (any kind) the folder PATH: a Secret or ConfigMap
volume reads its files from there, a PVC writes there. Without it, a Secret or ConfigMap volume
is written from the `--env-file` of that name, an emptyDir is a fresh folder per attempt, and a
PVC or CSI volume is an error that says which flag to pass. Mount paths reach the folders as
in the simulated kubelets (see mounts): arguments and env values starting with a mount path
are rewritten, `$KOPFLOW_MOUNTS` has the map; with `--runtime podman` the folders are mounted
at their mount paths instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from kopflow.api.pod import Volume
from kopflow.api.workflow import PodSettings, Task, WorkflowSpec
from kopflow.engine.defaults import merge_defaults
from kopflow.engine.validation import Issue
from kopflow.executors import mounts

CLUSTER_ONLY = {
    "node_selector": "nodeSelector",
    "tolerations": "tolerations",
    "resources": "resources",
}
CLUSTER_ONLY_TEMPLATE = {
    "metadata": "labels/annotations",
    "service_account_name": "serviceAccountName",
    "security_context": "securityContext",
    "container_security_context": "containerSecurityContext",
    "affinity": "affinity",
    "topology_spread_constraints": "topologySpreadConstraints",
    "image_pull_secrets": "imagePullSecrets",
    "priority_class_name": "priorityClassName",
    "runtime_class_name": "runtimeClassName",
    "sidecars": "sidecars",
    "job_ttl_seconds_after_finished": "jobTtlSecondsAfterFinished",
}


class VolumeFlagError(Exception):
    """A `--volume` flag that cannot be used."""


def parse_volume_flags(flags: list[str]) -> dict[str, Path]:
    """`NAME=PATH` pairs; the folder must exist (a PVC's may be created by the task)."""
    out: dict[str, Path] = {}
    for flag in flags:
        name, sep, path = flag.partition("=")
        if not sep or not name or not path:
            raise VolumeFlagError(f"--volume {flag}: expected NAME=PATH (a volume name, a folder)")
        folder = Path(path).expanduser()
        if folder.exists() and not folder.is_dir():
            raise VolumeFlagError(f"--volume {flag}: {path} is not a folder")
        out[name] = folder.resolve()
    return out


def _tasks(spec: WorkflowSpec) -> Iterator[tuple[str, Task]]:
    for label, group in (("spec.tasks", spec.tasks), ("spec.onFailure", spec.on_failure or [])):
        for i, raw in enumerate(group):
            yield f"{label}[{i}]", merge_defaults(raw, spec.task_defaults)


def volume_problems(
    spec: WorkflowSpec, sources: Mapping[str, Mapping[str, str]], given: Mapping[str, Path]
) -> list[Issue]:
    """Volumes `kopflow run` cannot provide, and `--volume` names no task has, before any start."""
    issues: list[Issue] = []
    used: set[str] = set()
    for path, task in _tasks(spec):
        for j, volume in enumerate(task.volumes or ()):
            used.add(volume.name)
            if volume.name in given:
                problem = _given_problem(volume, given[volume.name])
                if problem:
                    issues.append(Issue(f"{path}.volumes[{j}]", problem))
                continue
            issues += _unprovided(f"{path}.volumes[{j}]", volume, sources)
        names = {v.name for v in task.volumes or ()}
        for j, mount in enumerate(task.volume_mounts or ()):
            if mount.name not in names:
                issues.append(
                    Issue(f"{path}.volumeMounts[{j}].name", f'no volume "{mount.name}" in volumes')
                )
    for name in sorted(set(given) - used):
        issues.append(Issue(f"--volume {name}", "no task has a volume of that name"))
    return issues


def _given_problem(volume: Volume, folder: Path) -> str | None:
    if volume.source() in ("secret", "configMap", "projected") and not folder.is_dir():
        return f"--volume {volume.name}={folder}: the folder does not exist"
    return None


def _unprovided(path: str, volume: Volume, sources: Mapping[str, object]) -> list[Issue]:
    fix = f"pass --volume {volume.name}=FOLDER"
    if volume.persistent_volume_claim is not None or volume.csi is not None:
        return [Issue(path, f"a {volume.source()} volume needs a local folder: {fix}")]
    refs: list[tuple[str, str, bool | None]] = []
    if volume.secret is not None:
        refs.append(("Secret", volume.secret.secret_name, volume.secret.optional))
    if volume.config_map is not None:
        refs.append(("ConfigMap", volume.config_map.name, volume.config_map.optional))
    for src in volume.projected.sources if volume.projected else ():
        if src.secret is not None:
            refs.append(("Secret", src.secret.name, src.secret.optional))
        if src.config_map is not None:
            refs.append(("ConfigMap", src.config_map.name, src.config_map.optional))
    return [
        Issue(
            path,
            f'{kind} "{name}" is not available locally: {fix} (a folder of files) or '
            f"--env-file {name}=PATH (KEY=VALUE lines)",
        )
        for kind, name, optional in refs
        if name not in sources and not optional
    ]


def ignored_settings(spec: WorkflowSpec) -> list[str]:
    """Settings in the spec that mean nothing on this machine (sorted, each named once)."""
    found: set[str] = set()
    if spec.service_account_name:
        found.add("serviceAccountName")
    groups: list[PodSettings] = [*spec.tasks, *(spec.on_failure or [])]
    if spec.task_defaults is not None:
        groups.append(spec.task_defaults)
    for settings in groups:
        found |= {wire for name, wire in CLUSTER_ONLY.items() if getattr(settings, name)}
        template = settings.pod_template
        if template is not None:
            found |= {
                wire
                for name, wire in CLUSTER_ONLY_TEMPLATE.items()
                if getattr(template, name) is not None
            }
    return sorted(found)


def local_folders(
    pod: PodSettings,
    root: Path,
    sources: Mapping[str, Mapping[str, str]],
    given: Mapping[str, Path],
) -> dict[str, str]:
    """Write the attempt's volumes under `root`; mount path -> local folder."""
    if not pod.volumes:
        return {}
    data: dict[tuple[str, str], Mapping[str, bytes] | None] = {}
    for key in mounts.referenced_objects([v.dump() for v in pod.volumes or ()]):
        keys = sources.get(key[1])
        data[key] = None if keys is None else {k: v.encode() for k, v in keys.items()}
    folders = mounts.materialize(
        [v.dump() for v in pod.volumes or ()],
        data,
        mounts.private_dir(root),
        claim_folder=lambda claim: root / "pvc" / claim,
        given=given,
    )
    for name, folder in given.items():
        if name in folders:
            folder.mkdir(parents=True, exist_ok=True)
    return mounts.mount_map([m.dump() for m in pod.volume_mounts or ()], folders)
