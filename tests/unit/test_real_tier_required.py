"""The real-API tier cannot be skipped silently in CI: KOPFLOW_REQUIRE_REAL_API turns its skip
into a failure (the flag .ci/run sets)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_a_clean_clone_away_from_shared_finds_the_control_plane_beside_its_origin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's clean-clone check clones into `mktemp -d`: the real tier must still run."""
    from tests.support.control_plane import script

    origin, clone = tmp_path / "work" / "main", tmp_path / "elsewhere" / "clone"
    plane = tmp_path / "work" / "shared" / "k8s" / "control-plane"
    plane.parent.mkdir(parents=True)
    plane.write_text("#!/bin/sh\n")
    subprocess.run(["git", "init", "-q", str(origin)], check=True, timeout=60)
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True, timeout=60)
    monkeypatch.delenv("KOPFLOW_CONTROL_PLANE", raising=False)
    assert script(clone) == plane
    set_url = ["git", "-C", str(clone), "remote", "set-url", "origin", "host:repo"]
    subprocess.run(set_url, check=True, timeout=60)
    assert script(clone) is None  # a remote origin: nothing beside it on this machine
