"""On a real cluster: the generated CRDs install and the examples pass server-side validation."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=120)


def test_crds_install_and_examples_dry_run() -> None:
    applied = kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    assert applied.returncode == 0, applied.stderr
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        result = kubectl("create", "--dry-run=server", "-f", str(path))
        assert result.returncode == 0, f"{path.name}: {result.stderr}"
