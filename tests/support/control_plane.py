"""A real Kubernetes control plane for tests: `../shared/k8s/control-plane`, or envtest's binaries.

The script starts etcd, kube-apiserver and (unless `controllers=False`) the controller-manager
and scheduler on free loopback ports and prints a cluster-admin kubeconfig (client
certificate). It takes its binaries from `KUBEBUILDER_ASSETS` when that names a folder holding
them, else from the compressed ones beside it. There are no nodes: a simulated kubelet
(`tests.support.remote_kubelet`) plays the node.

Where neither is available, `unavailable()` says why; tests skip with that reason, except when
`KOPFLOW_REQUIRE_REAL_API=1` (set by `.ci/run`), where they fail: CI always has `../shared`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_ENV = "KOPFLOW_CONTROL_PLANE"
"""Path of a `control-plane` script to use instead of the one found beside the repository."""
REQUIRE_ENV = "KOPFLOW_REQUIRE_REAL_API"


def script(root: Path = ROOT) -> Path | None:
    """The control-plane script: $KOPFLOW_CONTROL_PLANE, else `shared/k8s/` next to the repo,
    or next to the local repository it was cloned from."""
    if os.environ.get(SCRIPT_ENV):
        given = Path(os.environ[SCRIPT_ENV])
        return given if given.is_file() else None
    for repo in (root, cloned_from(root)):
        for parent in repo.parents if repo else ():
            candidate = parent / "shared" / "k8s" / "control-plane"
            if candidate.is_file():
                return candidate
    return None


def cloned_from(root: Path) -> Path | None:
    """The local repository `root` was cloned from, if any: the README's clean-clone check
    (`git clone -q . $(mktemp -d)`) puts the clone in /tmp, away from `shared/`."""
    try:
        url = subprocess.run(
            ["git", "-C", str(root), "config", "--get", "remote.origin.url"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    url = url.removeprefix("file://")
    if not url or "://" in url or ":" in url.split("/")[0]:
        return None  # a remote (https://, ssh://, host:path): nothing beside it here
    path = root / url  # a relative url is relative to the clone
    return path.resolve() if path.is_dir() else None


def unavailable() -> str | None:
    """Why no real control plane can be started here, or None when one can."""
    path = script()
    if path is None:
        return (
            f"no control-plane script: set {SCRIPT_ENV} to its path, or keep shared/k8s beside "
            "the repository"
        )
    assets = os.environ.get("KUBEBUILDER_ASSETS", "")
    has_assets = bool(assets) and (Path(assets) / "kube-apiserver").exists()
    if not has_assets and not (path.parent / "bin" / "kube-apiserver.xz").exists():
        return f"no kube-apiserver binary beside {path} and KUBEBUILDER_ASSETS is unset"
    for tool in ("openssl", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (the control-plane script needs it)"
    return None


def required() -> bool:
    """True where a missing control plane is a failure, not a skip (CI)."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


class ControlPlane:
    """One started control plane in `workdir`; `stop()` ends exactly what `start()` began."""

    def __init__(self, workdir: Path, *, controllers: bool = True) -> None:
        self.workdir, self.controllers = workdir, controllers
        self.kubeconfig: Path | None = None

    def start(self, timeout: float = 180) -> ControlPlane:
        path = script()
        assert path is not None, unavailable()
        args = ["bash", str(path), "start", str(self.workdir)]
        if not self.controllers:
            args.append("--no-controllers")
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"control-plane start failed:\n{done.stderr[-4000:]}")
        self.kubeconfig = Path(done.stdout.strip().splitlines()[-1])
        return self

    @property
    def server(self) -> str:
        """The API server's https URL."""
        ports = dict(
            line.split() for line in (self.workdir / "ports").read_text().splitlines() if line
        )
        return f"https://127.0.0.1:{ports['apiserver']}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "certs" / "ca.crt"

    def stop(self) -> None:
        path = script()
        if path is not None:
            subprocess.run(
                ["bash", str(path), "stop", str(self.workdir)], capture_output=True, timeout=120
            )

    def logs(self, name: str = "kube-apiserver", tail: int = 40) -> str:
        """The last lines of one component's log, for failure messages."""
        log = self.workdir / "logs" / f"{name}.log"
        return "\n".join(log.read_text().splitlines()[-tail:]) if log.exists() else ""
