"""A pod's first container as a local process: what both simulated kubelets share.

`kubelet.py` (the node of the in-process emulator) and `remote_kubelet.py` (the node of a real
control plane) differ in how they read objects and write status; how they turn a container spec
into a process and a process into a container state is the same, and lives here:
`$(VAR)` expansion, the environment (plain values, valueFrom, envFrom, with the real kubelet's
CreateContainerConfigError messages when a referenced object or key is missing), the
termination-message file, starting the process in its own process group and signalling it,
the container states and statuses a kubelet reports, and volumes: each volume of the pod becomes
a local folder and a mount path in an argument, env value or workingDir is rewritten to it (the
same simulation as `kopflow run`: see kopflow.executors.mounts; `$KOPFLOW_MOUNTS` holds the map).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kopflow.executors import mounts as volumes

from . import container_logs

Obj = dict[str, Any]
MESSAGE_LIMIT = 4096
"""Bytes of the termination-message file a kubelet reports (the rest is cut)."""
LOG_FALLBACK = 2048
"""Bytes of log tail used as message under FallbackToLogsOnError (the kubelet: 80 lines/2 KiB)."""
HOST_IP = "127.0.0.1"
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_LABEL = re.compile(r"metadata\.(labels|annotations)\['(.+)'\]$")
Source = tuple[str, str]
"""A referenced object: ("configmap" | "secret", name)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion in command, args and env values (`$$` escapes)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(sub, text)


class ConfigError(Exception):
    """The container cannot be created yet (the kubelet's CreateContainerConfigError)."""


def sources(container: Obj) -> list[Source]:
    """The ConfigMaps and Secrets the container's env and envFrom refer to, in order."""
    out: list[Source] = []
    for item in container.get("envFrom") or []:
        for field, kind in (("configMapRef", "configmap"), ("secretRef", "secret")):
            if isinstance(item.get(field), dict):
                out.append((kind, str(item[field].get("name", ""))))
    for item in container.get("env") or []:
        value_from = item.get("valueFrom") or {}
        for field, kind in (("configMapKeyRef", "configmap"), ("secretKeyRef", "secret")):
            if isinstance(value_from.get(field), dict):
                out.append((kind, str(value_from[field].get("name", ""))))
    return list(dict.fromkeys(out))


def object_data(kind: str, obj: Obj | None) -> dict[str, str] | None:
    """A ConfigMap's data, or a Secret's decoded data (and stringData); None when missing."""
    if obj is None:
        return None
    if kind == "configmap":
        return {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
    decoded = {
        str(k): base64.b64decode(v).decode("utf-8", "replace")
        for k, v in (obj.get("data") or {}).items()
    }
    return {**decoded, **(obj.get("stringData") or {})}


_KIND_NAME = {"configmap": "ConfigMap", "secret": "Secret"}


def _lookup(
    data: Mapping[Source, dict[str, str] | None],
    kind: str,
    name: str,
    ref: Obj,
    key: str | None,
    pod: Obj,
) -> str | dict[str, str] | None:
    """The referenced data (or one key of it); None when optional and missing; else ConfigError
    with the message the real kubelet puts in the waiting state."""
    found = data.get((kind, name))
    if found is None:
        if ref.get("optional"):
            return None
        raise ConfigError(f'{kind} "{name}" not found')
    if key is None:
        return found
    if key not in found:
        if ref.get("optional"):
            return None
        namespace = pod["metadata"]["namespace"]
        raise ConfigError(f"couldn't find key {key} in {_KIND_NAME[kind]} {namespace}/{name}")
    return found[key]


def field_value(pod: Obj, path: str, node_name: str) -> str | None:
    """A `fieldRef` of the downward API."""
    m, spec = pod["metadata"], pod.get("spec") or {}
    label = _LABEL.match(path)
    if label:
        found = (m.get(label.group(1)) or {}).get(label.group(2))
        return None if found is None else str(found)
    values: dict[str, str | None] = {
        "metadata.name": m["name"],
        "metadata.namespace": m["namespace"],
        "metadata.uid": m["uid"],
        "spec.nodeName": spec.get("nodeName") or node_name,
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": HOST_IP,
        "status.hostIP": HOST_IP,
    }
    return values.get(path)


def object_files(kind: str, obj: Obj | None) -> dict[str, bytes] | None:
    """A ConfigMap's data and binaryData, or a Secret's data (and stringData), as file contents
    of a volume; None when missing."""
    if obj is None:
        return None
    binary = {str(k): base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
    if kind == "configmap":
        return {**binary, **{str(k): str(v).encode() for k, v in (obj.get("data") or {}).items()}}
    decoded = {str(k): base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    return {
        **decoded,
        **{str(k): str(v).encode() for k, v in (obj.get("stringData") or {}).items()},
    }


def volume_objects(pod: Obj) -> list[Source]:
    """The Secrets and ConfigMaps the pod's volumes read."""
    return volumes.referenced_objects((pod.get("spec") or {}).get("volumes") or [])


def claims(pod: Obj) -> list[str]:
    """The PersistentVolumeClaims the pod's volumes name."""
    out = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        claim = volume.get("persistentVolumeClaim")
        if isinstance(claim, dict):
            out.append(str(claim.get("claimName", "")))
    return out


def mount_volumes(
    pod: Obj,
    container: Obj,
    files: Mapping[Source, dict[str, bytes] | None],
    root: Path,
    claim_folders: Mapping[str, Path],
    node_name: str,
) -> dict[str, str]:
    """Write the pod's volumes under `root` and return mount path -> local path for the
    container's volumeMounts. Raises VolumeError (a missing Secret or ConfigMap) as the real
    kubelet keeps the pod ContainerCreating."""
    folders = volumes.materialize(
        (pod.get("spec") or {}).get("volumes") or [],
        files,
        root,
        claim_folder=lambda claim: claim_folders[claim],
        field=lambda path: field_value(pod, path, node_name),
    )
    return volumes.mount_map(container.get("volumeMounts") or [], folders)


def build_env(
    pod: Obj,
    container: Obj,
    data: Mapping[Source, dict[str, str] | None],
    *,
    node_name: str,
    home: str,
    message_path: str,
    strict: bool = True,
    mounts: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The process environment: a PATH that finds this venv's python, HOME, then the pod's env.

    `data` holds what `sources(container)` names (None for a missing object). With `strict`
    a missing non-optional object or key raises ConfigError, as the real kubelet refuses to
    create the container; without, the variable is left out. A value equal to the container's
    terminationMessagePath points at `message_path` instead (the process writes its message
    there). A value starting with a mount path of `mounts` points into its local folder."""
    m = pod["metadata"]
    mounted = mounts or {}
    path_var = os.environ.get("PATH", "/usr/bin:/bin")
    env = {
        "PATH": str(Path(sys.executable).parent) + os.pathsep + path_var,
        "HOSTNAME": m["name"],
        "HOME": home,
        "LANG": "C.UTF-8",
    }

    def look(kind: str, ref: Obj, key: str | None) -> str | dict[str, str] | None:
        try:
            return _lookup(data, kind, str(ref.get("name", "")), ref, key, pod)
        except ConfigError:
            if strict:
                raise
            return None

    for item in container.get("envFrom") or []:
        for field, kind in (("configMapRef", "configmap"), ("secretRef", "secret")):
            if isinstance(item.get(field), dict):
                found = look(kind, item[field], None)
                for key, value in (found if isinstance(found, dict) else {}).items():
                    env[str(item.get("prefix", "")) + key] = value
    for item in container.get("env") or []:
        name = str(item.get("name", ""))
        source = item.get("valueFrom")
        value: str | dict[str, str] | None = None
        if "value" in item:
            value = expand(volumes.rewrite(str(item["value"]), mounted), env)
        elif isinstance(source, dict):
            path = (source.get("fieldRef") or {}).get("fieldPath")
            if path:
                value = field_value(pod, str(path), node_name)
            for field, kind in (("configMapKeyRef", "configmap"), ("secretKeyRef", "secret")):
                if isinstance(source.get(field), dict):
                    value = look(kind, source[field], str(source[field].get("key", "")))
                    if isinstance(value, str):
                        value = volumes.rewrite(value, mounted)
        if isinstance(value, str):
            env[name] = value
    env.update(volumes.mounts_env(mounted))
    path = container.get("terminationMessagePath", "/dev/termination-log")
    for name, value in env.items():
        if value == path:
            env[name] = message_path
    return env


def command(
    container: Obj, env: Mapping[str, str], mounts: Mapping[str, str] | None = None
) -> list[str]:
    """command + args with mount paths rewritten, then `$(VAR)` expanded (a pod without
    command runs its args)."""
    argv = (container.get("command") or []) + (container.get("args") or [])
    return [expand(volumes.rewrite(str(a), mounts or {}), env) for a in argv]


def working_dir(container: Obj, home: Path, mounts: Mapping[str, str] | None = None) -> str:
    """The process's working directory: workingDir (rewritten into a mount), else home."""
    wd = container.get("workingDir")
    return volumes.rewrite(str(wd), mounts or {}) if wd else str(home)


async def spawn(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    log_path: Path,
    capture: container_logs.ContainerLog | None = None,
) -> asyncio.subprocess.Process:
    """Start the process in its own process group, never through a shell (unless argv names
    one). Its stdout+stderr are appended to `log_path`, or with `capture` read from pipes into
    that container log (which also appends to its plain file). Raises OSError when it cannot
    start."""
    if capture is not None:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        capture.task = container_logs.capture(proc, capture)
        return proc
    with log_path.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )


def signal_group(proc: asyncio.subprocess.Process | None, sig: int) -> None:
    """Signal the process's group (its children too) while it runs."""
    if proc is not None and proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


async def terminate(proc: asyncio.subprocess.Process | None, grace: float) -> None:
    """SIGTERM to the group, SIGKILL after `grace` seconds; returns when the process is gone."""
    if proc is None:
        return
    signal_group(proc, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
    except TimeoutError:
        signal_group(proc, signal.SIGKILL)
        await proc.wait()


def read_message(path: Path, container: Obj, log_path: Path, code: int) -> str:
    """The termination message: the file's first 4096 bytes, or under FallbackToLogsOnError the
    log's tail when the file is empty and the process failed."""
    data = b""
    with contextlib.suppress(OSError), path.open("rb") as f:
        data = f.read(MESSAGE_LIMIT)
    if (
        not data.strip()
        and code != 0
        and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
    ):
        with contextlib.suppress(OSError), log_path.open("rb") as f:
            f.seek(max(0, log_path.stat().st_size - LOG_FALLBACK))
            data = f.read()
    return data.decode("utf-8", "replace")


def terminated(
    returncode: int, *, signalled_by_us: bool, started: str, finished: str, message: str, cid: str
) -> Obj:
    """The `terminated` state of an exited process: exit code (128+signal when killed), reason
    Completed, Error, or OOMKilled for a SIGKILL nobody here sent (the kernel's OOM killer)."""
    exit_code = returncode if returncode >= 0 else 128 - returncode
    if returncode == -signal.SIGKILL and not signalled_by_us:
        reason = "OOMKilled"
    else:
        reason = "Completed" if returncode == 0 else "Error"
    state: Obj = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started,
        "finishedAt": finished,
        "containerID": cid,
    }
    if message:
        state["message"] = message
    return {"terminated": state}


def start_error(started: str, finished: str, message: str) -> Obj:
    """The state of a container whose process could not be started (as containerd reports it)."""
    return {
        "terminated": {
            "exitCode": 128,
            "reason": "StartError",
            "startedAt": started,
            "finishedAt": finished,
            "message": message,
        }
    }


def container_status(
    container: Obj, state: Obj, restarts: int, last: Obj | None = None, cid: str | None = None
) -> Obj:
    """One entry of status.containerStatuses."""
    image = str(container.get("image", ""))
    running = "running" in state
    status: Obj = {
        "name": container.get("name", ""),
        "image": image,
        "imageID": f"sim://{image}",
        "ready": running,
        "started": running,
        "restartCount": restarts,
        "state": state,
        "lastState": last or {},
    }
    if cid or "waiting" not in state:
        status["containerID"] = cid or f"sim://{container.get('name', '')}"
    return status
