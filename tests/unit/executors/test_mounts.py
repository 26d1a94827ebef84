"""Volumes for local processes (kopflow run and the simulated kubelets): folders and paths."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from kopflow.executors import mounts
from kopflow.executors.mounts import VolumeError

MAP = {"/data": "/tmp/x/data", "/etc/creds": "/tmp/x/creds", "/etc": "/tmp/x/etc"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/data", "/tmp/x/data"),
        ("/data/out/report.txt", "/tmp/x/data/out/report.txt"),
        ("/data2/report.txt", "/data2/report.txt"),  # whole path segments only
        ("/etc/creds/token", "/tmp/x/creds/token"),  # the longest mount path wins
        ("/etc/hosts", "/tmp/x/etc/hosts"),
        ("--out=/data/x", "--out=/data/x"),  # glued into a longer argument: left alone
        ("relative/data", "relative/data"),
    ],
)
def test_a_value_starting_with_a_mount_path_points_into_its_folder(
    value: str, expected: str
) -> None:
    assert mounts.rewrite(value, MAP) == expected


def test_secret_keys_become_files_with_items_paths_and_modes(tmp_path: Path) -> None:
    volumes = [
        {"name": "all", "secret": {"secretName": "s"}},
        {
            "name": "some",
            "secret": {
                "secretName": "s",
                "defaultMode": 0o400,
                "items": [
                    {"key": "token", "path": "nested/t"},
                    {"key": "ca", "path": "ca", "mode": 0o444},
                ],
            },
        },
        {"name": "scratch", "emptyDir": {}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "c"}},
    ]
    data = {("secret", "s"): {"token": b"s3cret", "ca": b"pem"}}
    folders = mounts.materialize(
        volumes, data, tmp_path / "v", claim_folder=lambda c: tmp_path / "claims" / c
    )
    assert (folders["all"] / "token").read_bytes() == b"s3cret"
    assert (folders["some"] / "nested" / "t").read_bytes() == b"s3cret"
    assert stat.S_IMODE((folders["some"] / "nested" / "t").stat().st_mode) == 0o400
    assert stat.S_IMODE((folders["some"] / "ca").stat().st_mode) == 0o444
    assert not (folders["some"] / "token").exists()
    assert folders["scratch"].is_dir() and not any(folders["scratch"].iterdir())
    assert folders["data"] == tmp_path / "claims" / "c" and folders["data"].is_dir()
    mapping = mounts.mount_map(
        [
            {"name": "some", "mountPath": "/creds/"},
            {"name": "data", "mountPath": "/out", "subPath": "run-1"},
        ],
        folders,
    )
    assert mapping == {"/creds": str(folders["some"]), "/out": str(folders["data"] / "run-1")}
    assert json.loads(mounts.mounts_env(mapping)["KOPFLOW_MOUNTS"]) == mapping


def test_a_missing_secret_fails_like_the_kubelet_unless_optional(tmp_path: Path) -> None:
    volumes = [{"name": "creds", "secret": {"secretName": "gone"}}]
    with pytest.raises(VolumeError, match='volume "creds" : secret "gone" not found'):
        mounts.materialize(volumes, {}, tmp_path, claim_folder=lambda c: tmp_path)
    volumes[0]["secret"]["optional"] = True  # type: ignore[index]
    folders = mounts.materialize(volumes, {}, tmp_path, claim_folder=lambda c: tmp_path)
    assert folders["creds"].is_dir()


def test_projected_volumes_merge_their_sources_and_answer_the_downward_api(
    tmp_path: Path,
) -> None:
    volumes = [
        {
            "name": "all",
            "projected": {
                "sources": [
                    {"secret": {"name": "s"}},
                    {"configMap": {"name": "c", "items": [{"key": "k", "path": "conf/k"}]}},
                    {
                        "downwardAPI": {
                            "items": [
                                {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}
                            ]
                        }
                    },
                    {"serviceAccountToken": {"path": "token"}},
                ]
            },
        }
    ]
    data = {("secret", "s"): {"a": b"1"}, ("configmap", "c"): {"k": b"v"}}
    folders = mounts.materialize(
        volumes,
        data,
        tmp_path,
        claim_folder=lambda c: tmp_path,
        field=lambda path: "team-a" if path == "metadata.namespace" else None,
    )
    found = sorted(
        str(p.relative_to(folders["all"])) for p in folders["all"].rglob("*") if p.is_file()
    )
    assert found == ["a", "conf/k", "ns"]  # no token is minted locally


def test_paths_leaving_the_volume_are_refused(tmp_path: Path) -> None:
    volumes = [{"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "../k"}]}}]
    with pytest.raises(VolumeError, match=r"without '\.\.'"):
        mounts.materialize(
            volumes, {("configmap", "c"): {"k": b"v"}}, tmp_path, claim_folder=lambda c: tmp_path
        )
