"""Volumes for a task that runs as a local process: folders, and paths rewritten to reach them.

A local process cannot see `/etc/creds` the way a container sees its volume mount (no mount
namespace without root). What `kopflow run` and the simulated kubelets of the test suite do
instead, all three the same way:

1. every volume becomes a local folder: a Secret's or ConfigMap's keys written as files (with
   `items` paths and modes), an emptyDir a fresh folder, a PVC a folder that outlives the pod
   (the kubelets: a bound hostPath/local PersistentVolume's path, else one folder per claim;
   `kopflow run`: the `--volume NAME=PATH` folder);
2. a command argument, env value or workingDir that *is* a mount path, or starts with one
   followed by `/`, is rewritten to the folder (`/etc/creds/token` -> `<folder>/token`);
   `subPath` mounts point into the folder;
3. `KOPFLOW_MOUNTS` holds the whole map as JSON (mount path -> folder) for anything else.

So a task that takes its paths from args or env runs unchanged on a cluster and here; a path
written inside a script's source or glued into a longer argument (`--out=/data/x`) is not
rewritten. Read-only mounts are not enforced locally.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

MOUNTS_ENV = "KOPFLOW_MOUNTS"
DEFAULT_MODE = 0o644
Obj = Mapping[str, Any]
Data = Mapping[tuple[str, str], Mapping[str, bytes] | None]
"""("secret" | "configmap", name) -> key -> bytes; None when the object does not exist."""


class VolumeError(Exception):
    """A volume cannot be set up (the kubelet's `MountVolume.SetUp failed ...`)."""


def referenced_objects(volumes: list[Obj]) -> list[tuple[str, str]]:
    """The Secrets and ConfigMaps the volumes read, in order: ("secret" | "configmap", name)."""
    out: list[tuple[str, str]] = []
    for volume in volumes:
        if isinstance(volume.get("secret"), dict):
            out.append(("secret", str(volume["secret"].get("secretName", ""))))
        if isinstance(volume.get("configMap"), dict):
            out.append(("configmap", str(volume["configMap"].get("name", ""))))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if isinstance(source.get("secret"), dict):
                out.append(("secret", str(source["secret"].get("name", ""))))
            if isinstance(source.get("configMap"), dict):
                out.append(("configmap", str(source["configMap"].get("name", ""))))
    return list(dict.fromkeys(out))


def _safe(base: Path, relative: str) -> Path:
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or ".." in parts:
        raise VolumeError(f"path {relative!r} must be relative and without '..'")
    return base.joinpath(*parts)


def _write(path: Path, content: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode)


def write_keys(
    folder: Path,
    keys: Mapping[str, bytes],
    items: list[Obj] | None,
    mode: int | None,
    kind: str,
) -> None:
    """A Secret's or ConfigMap's keys as files: all, named by key, or `items` at their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    default = DEFAULT_MODE if mode is None else int(mode)
    if not items:
        for key, value in keys.items():
            _write(_safe(folder, key), value, default)
        return
    for item in items:
        key = str(item.get("key", ""))
        if key not in keys:
            raise VolumeError(f"{kind} references non-existent {kind} key: {key}")
        item_mode = item.get("mode")
        _write(_safe(folder, str(item.get("path", key))), keys[key], int(item_mode or default))


def _object_keys(
    data: Data, kind: str, name: str, optional: bool, volume: str
) -> Mapping[str, bytes] | None:
    found = data.get((kind, name))
    if found is None and not optional:
        raise VolumeError(
            f'MountVolume.SetUp failed for volume "{volume}" : {kind} "{name}" not found'
        )
    return found


def materialize(
    volumes: list[Obj],
    data: Data,
    root: Path,
    *,
    claim_folder: Callable[[str], Path],
    field: Callable[[str], str | None] = lambda path: None,
    given: Mapping[str, Path] | None = None,
) -> dict[str, Path]:
    """Volume name -> its local folder, written under `root` (one sub-folder per volume).

    `claim_folder(claimName)` is where a PVC's data lives; `field(fieldPath)` answers the
    downward API; `given` maps volume names to folders chosen by the user (used as they are).
    A missing Secret or ConfigMap raises VolumeError unless optional."""
    folders: dict[str, Path] = {}
    for volume in volumes:
        name = str(volume.get("name", ""))
        if given and name in given:
            folders[name] = given[name]
            continue
        folder = root / name
        if isinstance(volume.get("persistentVolumeClaim"), dict):
            folder = claim_folder(str(volume["persistentVolumeClaim"].get("claimName", "")))
            folder.mkdir(parents=True, exist_ok=True)
        elif isinstance(volume.get("secret"), dict):
            src = volume["secret"]
            keys = _object_keys(
                data, "secret", str(src.get("secretName")), bool(src.get("optional")), name
            )
            write_keys(folder, keys or {}, src.get("items"), src.get("defaultMode"), "secret")
        elif isinstance(volume.get("configMap"), dict):
            src = volume["configMap"]
            keys = _object_keys(
                data, "configmap", str(src.get("name")), bool(src.get("optional")), name
            )
            write_keys(folder, keys or {}, src.get("items"), src.get("defaultMode"), "configmap")
        elif isinstance(volume.get("projected"), dict):
            _projected(folder, volume["projected"], data, field, name)
        elif isinstance(volume.get("downwardAPI"), dict):
            src = volume["downwardAPI"]
            _downward(folder, src.get("items") or [], field, src.get("defaultMode"))
        else:  # emptyDir, and what has no local meaning (csi): an empty folder
            folder.mkdir(parents=True, exist_ok=True)
        folders[name] = folder
    return folders


def _projected(
    folder: Path, src: Obj, data: Data, field: Callable[[str], str | None], name: str
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    mode = src.get("defaultMode")
    for source in src.get("sources") or []:
        for key, kind, ref in (("secret", "secret", "name"), ("configMap", "configmap", "name")):
            if isinstance(source.get(key), dict):
                item = source[key]
                keys = _object_keys(
                    data, kind, str(item.get(ref)), bool(item.get("optional")), name
                )
                write_keys(folder, keys or {}, item.get("items"), mode, kind)
        if isinstance(source.get("downwardAPI"), dict):
            _downward(folder, source["downwardAPI"].get("items") or [], field, mode)
        # serviceAccountToken: no token is minted locally; the file is left out


def _downward(
    folder: Path, items: list[Obj], field: Callable[[str], str | None], mode: Any
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for item in items:
        path = (item.get("fieldRef") or {}).get("fieldPath")
        value = field(str(path)) if path else None
        if value is not None:
            _write(
                _safe(folder, str(item.get("path", ""))),
                value.encode(),
                int(item.get("mode") or mode or DEFAULT_MODE),
            )


def mount_map(mounts: list[Obj], folders: Mapping[str, Path]) -> dict[str, str]:
    """Mount path -> local path of each volumeMount (into the volume's folder at subPath)."""
    out: dict[str, str] = {}
    for mount in mounts:
        name = str(mount.get("name", ""))
        if name not in folders:
            raise VolumeError(f'volumeMount "{name}": no volume of that name in the pod')
        target = folders[name]
        if mount.get("subPath"):
            target = _safe(target, str(mount["subPath"]))
            if not target.exists():
                target.mkdir(parents=True, exist_ok=True)
        out[str(mount.get("mountPath", "")).rstrip("/") or "/"] = str(target)
    return out


def rewrite(value: str, mapping: Mapping[str, str]) -> str:
    """`value` with a leading mount path replaced by its local path (whole path segments only:
    `/data2` is not under `/data`)."""
    for mount in sorted(mapping, key=len, reverse=True):
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            return mapping[mount] + value[len(mount.rstrip("/")) :]
    return value


def mounts_env(mapping: Mapping[str, str]) -> dict[str, str]:
    """`KOPFLOW_MOUNTS`: the map as JSON, for tasks that build paths themselves."""
    return {MOUNTS_ENV: json.dumps(dict(mapping), sort_keys=True)} if mapping else {}


def private_dir(path: Path) -> Path:
    """Create a folder only this user can read (Secrets go there)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
