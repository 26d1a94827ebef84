"""The real-API tier cannot be skipped silently in CI: KOPFLOW_REQUIRE_REAL_API turns its skip
into a failure (the flag .ci/run sets)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
def test_needs_the_real_server(control_plane):
    assert control_plane.kubeconfig is not None
"""
SKIPPING = """
import pytest

@pytest.mark.real
def test_skips_itself():
    pytest.skip("not today")
"""


def run_probe(tmp_path: Path, code: str = PROBE, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest on one real-tier test, with no control plane to be found."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(code)
    environ = {**os.environ, "KOPFLOW_CONTROL_PLANE": str(tmp_path / "missing")}
    environ.pop("KOPFLOW_REQUIRE_REAL_API", None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-c", str(ROOT / "pyproject.toml"),
         "-p", "tests.conftest", "-p", "no:cacheprovider", str(probe)],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_without_a_control_plane_the_real_tier_skips_with_the_reason(tmp_path: Path) -> None:
    done = run_probe(tmp_path)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "no control-plane script" in done.stdout


def test_when_required_a_missing_control_plane_fails_the_run(tmp_path: Path) -> None:
    done = run_probe(tmp_path, KOPFLOW_REQUIRE_REAL_API="1")
    assert done.returncode == 1, done.stdout
    assert "the real-API tier is required here but cannot start" in done.stdout


def test_when_required_a_real_test_that_skips_itself_fails_the_run(tmp_path: Path) -> None:
    done = run_probe(tmp_path, SKIPPING, KOPFLOW_REQUIRE_REAL_API="1")
    assert done.returncode == 1, done.stdout
    assert "1 real-API tests were skipped, but the tier is required" in done.stdout
    assert run_probe(tmp_path, SKIPPING).returncode == 0
