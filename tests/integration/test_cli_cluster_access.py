"""How the cluster commands find and reach a cluster, and `kubectl kopflow` as a kubectl plugin.

No operator is needed: these are about the kubeconfig, the namespace, and what the user is
told when the cluster cannot be reached or does not have kopflow's CRDs.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import yaml
from tests.support.apiserver import ApiServer

from kopflow.cli import main

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def server() -> Iterator[ApiServer]:
    api = ApiServer().start()
    try:
        yield api
    finally:
        api.stop()


def a_run(server: ApiServer, tmp_path: Path, namespace: str, name: str) -> None:
    client = kubernetes.config.new_client_from_config(
        config_file=str(server.kubeconfig(tmp_path / "admin-setup.kubeconfig"))
    )
    try:
        kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": namespace}})
        kubernetes.client.CustomObjectsApi(client).create_namespaced_custom_object(
            "kopflow.dev",
            "v1alpha1",
            namespace,
            "workflowruns",
            {
                "apiVersion": "kopflow.dev/v1alpha1",
                "kind": "WorkflowRun",
                "metadata": {"name": name},
                "spec": {"workflowRef": {"name": "etl"}},
            },
        )
    finally:
        client.close()


def test_the_namespace_is_the_flag_else_the_contexts_else_default(
    server: ApiServer, tmp_path: Path
) -> None:
    a_run(server, tmp_path, "data", "in-data")
    config = server.kubeconfig(tmp_path / "kc", namespace="data")
    code, out, _ = run("--kubeconfig", str(config), "list")
    assert code == 0 and "in-data" in out  # the context's namespace
    code, out, err = run("--kubeconfig", str(config), "list", "-n", "default")
    assert code == 0 and out == "" and 'no workflowruns in namespace "default"' in err
    plain = yaml.safe_load(config.read_text())
    del plain["contexts"][0]["context"]["namespace"]
    (tmp_path / "plain").write_text(yaml.safe_dump(plain))
    code, _, err = run("--kubeconfig", str(tmp_path / "plain"), "get", "in-data")
    assert code == 1 and err == 'error: workflowrun "in-data" not found in namespace "default"\n'
    code, out, _ = run("--kubeconfig", str(tmp_path / "plain"), "list", "-A")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert any(line.split()[:2] == ["data", "in-data"] for line in out.splitlines())


def test_missing_kubeconfig_context_and_unreachable_cluster_are_explained(
    tmp_path: Path,
) -> None:
    code, _, err = run("--kubeconfig", str(tmp_path / "none"), "list")
    assert code == 1 and f"no kubeconfig at {tmp_path / 'none'} (--kubeconfig)" in err
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    (tmp_path / "dead").write_text(yaml.safe_dump(dead))
    code, _, err = run("--kubeconfig", str(tmp_path / "dead"), "get", "x")
    assert code == 1 and f"error: cannot reach the cluster at http://127.0.0.1:{port}" in err
    code, _, err = run("--kubeconfig", str(tmp_path / "dead"), "--context", "other", "list")
    assert code == 1 and "check that context 'other' exists" in err


def test_a_cluster_without_the_crds_says_to_install_them(tmp_path: Path) -> None:
    bare = ApiServer(crd_dir=None).start()
    try:
        config = str(bare.kubeconfig(tmp_path / "kc"))
        for argv in (["list"], ["get", "x"], ["submit", "etl"]):
            code, _, err = run("--kubeconfig", config, *argv)
            assert code == 1, argv
            assert "the kopflow CRDs are not installed" in err, (argv, err)
            assert "kubectl apply -f crds/" in err
    finally:
        bare.stop()


def test_kubectl_runs_kopflow_as_its_plugin(server: ApiServer, tmp_path: Path) -> None:
    a_run(server, tmp_path, "data", "via-kubectl")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(server.kubeconfig(tmp_path / "kc")),
    }

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "kubectl"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
            cwd=ROOT,
        )

    plugins = kubectl("plugin", "list")
    assert str(BIN / "kubectl-kopflow") in plugins.stdout, plugins.stdout + plugins.stderr
    helped = kubectl("kopflow", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: kubectl kopflow")
    assert "submit" in helped.stdout and "retry" in helped.stdout
    listed = kubectl("kopflow", "list", "-n", "data")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[0] == "via-kubectl"
