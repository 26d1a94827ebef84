"""Session-wide fixtures: the real Kubernetes control plane (the `real` tier).

    def test_x(control_plane, remote_kubelet): kubeconfig = control_plane.kubeconfig

One control plane (etcd, kube-apiserver, controller-manager, scheduler) serves the whole test
session; tests isolate themselves by namespace. Without one the tests that need it skip with the
reason, except under `KOPFLOW_REQUIRE_REAL_API=1` (`.ci/run`), where they fail, and where any
skipped `real` test fails the session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.control_plane import ControlPlane, required, unavailable
from tests.support.remote_kubelet import RemoteKubelet

_skipped_real: list[str] = []


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A started real control plane for the session; stopped at its end."""
    reason = unavailable()
    if reason is not None:
        if required():
            pytest.fail(f"the real-API tier is required here but cannot start: {reason}")
        pytest.skip(f"real-API tier: {reason}")
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane")).start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def remote_kubelet(control_plane: ControlPlane) -> Iterator[RemoteKubelet]:
    """The node of the real control plane for the whole session; its processes die with it."""
    assert control_plane.kubeconfig is not None
    kubelet = RemoteKubelet(control_plane.kubeconfig, kill_grace=1.0).start()
    try:
        yield kubelet
    finally:
        kubelet.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the real control plane `real` (select with `-m real`)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_real = callspec is not None and callspec.params.get("backend") == "real"
        if on_real or "control_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "real" in report.keywords:
        _skipped_real.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under KOPFLOW_REQUIRE_REAL_API a skipped real-tier test fails the run: CI must run it."""
    if required() and _skipped_real and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\n{len(_skipped_real)} real-API tests were skipped, but the tier is required:")
        for nodeid in _skipped_real[:20]:
            print(f"  {nodeid}")
