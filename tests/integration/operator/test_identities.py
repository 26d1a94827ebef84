"""Every way users authenticate the operator works against the real API server.

Each test starts `kopflow operator` (the process users run) with one identity and runs a short
workflow to Succeeded: a client certificate signed through the CSR API; a static bearer token;
the in-cluster layout (KUBERNETES_SERVICE_HOST/PORT and a projected token directory given by
KOPFLOW_SERVICEACCOUNT_ROOT) whose token rotates and is revoked mid-run; an exec credential
plugin whose credential expires and which must not stall the event loop; an exec plugin whose
client certificate expires mid-run; `tls-server-name` for a
server address outside the certificate's SANs; HTTPS_PROXY and `proxy-url` through a CONNECT
proxy; and a token revoked mid-run that the plugin replaces (401 -> login again).

Every identity gets exactly the chart's rules (helm/kopflow/files/rbac-rules.yaml), never admin.
Real server only: the emulator has no CSR signer, no bound-token revocation and no certificate
of its own to mismatch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from tests.integration.operator.conftest import OPERATOR_SA, Cluster, Kube, Operator
from tests.integration.operator.test_semantics import PY, run_doc, sleeper
from tests.support import identities
from tests.support.control_plane import ControlPlane
from tests.support.tunnels import ConnectProxy, TcpForwarder

pytestmark = pytest.mark.real_only("CSR signing, bound-token revocation, the server's own TLS")

SAN_NAME = "kubernetes.default.svc"
"""A name in the API server certificate's SANs that this machine cannot resolve."""
GATE = (
    "import os, sys, time\n"
    "for _ in range(600):\n"
    "    if os.path.exists(sys.argv[1]): sys.exit(0)\n"
    "    time.sleep(0.05)\n"
    "sys.exit(1)\n"
)
"""A task that waits (30 s at most) until the test creates a file: the run stays active, with
its next task still to start, while the test changes the operator's credentials."""

StartOperator = Callable[..., Operator]


@pytest.fixture
def plane(cluster: Cluster, request: pytest.FixtureRequest) -> ControlPlane:
    found: ControlPlane = request.getfixturevalue("control_plane")
    return found


@pytest.fixture
def start_operator(cluster: Cluster, tmp_path: Path) -> Iterator[StartOperator]:
    """start_operator(kubeconfig=None, env=None): an operator authenticated another way (its
    kubeconfig, or environment changes); all are stopped and their logs printed at the end."""
    started: list[Operator] = []

    def start(kubeconfig: Path | None = None, env: dict[str, str | None] | None = None) -> Operator:
        config = dataclasses.replace(
            cluster, operator_kubeconfig=kubeconfig or Path("/nonexistent")
        )
        op = Operator(config, tmp_path / f"operator-{len(started)}.log", env=env)
        started.append(op)
        op.start()
        return op

    try:
        yield start
    finally:
        for op in started:
            op.stop()
            if op.log.exists():
                print(f"== {op.log.name}\n{op.log.read_text()[-20000:]}")


def gated_run(kube: Kube, name: str, gate: Path) -> None:
    """A run whose first task waits for `gate`; its second starts only after."""
    tasks = [
        {"name": "gate", "command": [PY, "-c", GATE, str(gate)]},
        sleeper("after", 0.2, dependsOn=["gate"]),
    ]
    kube.create(run_doc(name, {"tasks": tasks}))


def succeeded(kube: Kube, name: str, timeout: float = 30) -> None:
    run = kube.wait_run(name, timeout=timeout)
    assert run["status"]["phase"] == "Succeeded", run["status"]


def hello(kube: Kube, timeout: float = 30) -> str:
    """examples/hello.yaml, to Succeeded; its name."""
    (created,) = kube.create_file("hello.yaml")
    name = str(created["metadata"]["name"])
    succeeded(kube, name, timeout)
    return name


def token_for(cluster: Cluster) -> str:
    """A new TokenRequest token of the operator's ServiceAccount (valid an hour)."""
    core = kubernetes.client.CoreV1Api(cluster.client)
    request = core.create_namespaced_service_account_token(
        OPERATOR_SA, cluster.namespace, {"spec": {"expirationSeconds": 3600}}
    )
    return str(request.status.token)


def log_until(op: Operator, words: tuple[str, ...], timeout: float) -> str:
    """The operator's log once it contains one of `words` (polled: a file has no watch)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = op.log.read_text(errors="replace") if op.log.exists() else ""
        if any(w in text for w in words):
            return text
        if op.proc is not None and op.proc.poll() is not None:
            break  # exited: its log is complete
        time.sleep(0.1)
    raise AssertionError(f"the operator never logged any of {words}:\n{text[-3000:]}")


def configured(path: Path, plane: ControlPlane, user: dict[str, Any], **cluster: Any) -> Path:
    """A kubeconfig at path for the control plane (its CA) and `user`."""
    return identities.kubeconfig(path, plane.server, plane.ca_file, user, **cluster)


def server_port(plane: ControlPlane) -> int:
    return int(plane.server.rsplit(":", 1)[1])


@contextlib.contextmanager
def operator_rights(cluster: Cluster, user: str) -> Iterator[None]:
    """The chart's rules for the certificate user `user` (its ClusterRole, bound to the User);
    afterwards the binding and the user's CertificateSigningRequest, if any, are deleted."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(cluster.client)
    binding = {
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": OPERATOR_SA},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }  # fmt: skip
    rbac.create_cluster_role_binding(binding)
    try:
        yield
    finally:
        rbac.delete_cluster_role_binding(user)
        with contextlib.suppress(kubernetes.client.ApiException):
            certificates = kubernetes.client.CertificatesV1Api(cluster.client)
            certificates.delete_certificate_signing_request(user)


def test_client_certificate_from_the_csr_api(
    cluster: Cluster, kube: Kube, plane: ControlPlane, start_operator: StartOperator, tmp_path: Path
) -> None:
    user = f"kopflow-operator.{cluster.namespace}"
    with operator_rights(cluster, user):
        crt, key = identities.client_certificate(cluster.client, user, tmp_path)
        start_operator(configured(tmp_path / "cert", plane, identities.cert_user(crt, key)))
        hello(kube)


def test_static_bearer_token(
    cluster: Cluster, kube: Kube, plane: ControlPlane, start_operator: StartOperator, tmp_path: Path
) -> None:
    user = identities.token_user(token_for(cluster))
    start_operator(configured(tmp_path / "t", plane, user))
    hello(kube)


def test_in_cluster_token_rotated_and_revoked_mid_run(
    cluster: Cluster, kube: Kube, plane: ControlPlane, start_operator: StartOperator, tmp_path: Path
) -> None:
    """The kubelet's projected token: replaced by a symlink swap while a run is active, the old
    one revoked (its bound Secret deleted, so the server answers 401 for it). The active run
    and a later one succeed."""
    ns = cluster.namespace
    first = identities.bound_token(cluster.client, ns, OPERATOR_SA, "token-1")
    volume = identities.ServiceAccountDir(tmp_path / "serviceaccount")
    volume.write(first, plane.ca_file.read_bytes(), ns)
    env: dict[str, str | None] = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(server_port(plane)),
        "KOPFLOW_SERVICEACCOUNT_ROOT": str(volume.root),
        "KUBECONFIG": None,
        "HOME": str(tmp_path),  # no ~/.kube/config to fall back on
    }
    start_operator(env=env)
    gate = tmp_path / "gate"
    gated_run(kube, "rotated", gate)
    kube.wait_task("rotated", "gate", "Running", timeout=30)

    second = identities.bound_token(cluster.client, ns, OPERATOR_SA, "token-2")
    volume.write(second, plane.ca_file.read_bytes(), ns)
    kubernetes.client.CoreV1Api(cluster.client).delete_namespaced_secret("token-1", ns)
    identities.wait_revoked(plane.server, plane.ca_file, first)
    gate.touch()
    succeeded(kube, "rotated")
    hello(kube)


def test_exec_plugin_called_again_after_expiry_off_the_event_loop(
    cluster: Cluster, kube: Kube, plane: ControlPlane, start_operator: StartOperator, tmp_path: Path
) -> None:
    """A credential plugin that takes 1 s and whose credential lives 3 s: it is run again once
    the credential expired, and /metrics (served on the operator's event loop) answers within
    200 ms all the while it runs."""
    ttl, slow = 3.0, 1.0
    token_file, calls = tmp_path / "token", tmp_path / "plugin.log"
    token_file.write_text(token_for(cluster))
    user = identities.exec_user(token_file, calls, ttl=ttl, sleep=slow)
    op = start_operator(configured(tmp_path / "x", plane, user))
    with LoopProbe(op) as probe:
        hello(kube)
        for _ in range(3):  # until every credential handed out so far has expired
            before = plugin_calls(calls)
            expired = max(c["end"] for c in before) + ttl
            if time.time() >= expired:
                break
            time.sleep(expired - time.time())  # a clock to pass, nothing to watch
        hello(kube)
    runs = plugin_calls(calls)
    assert runs[len(before) :], f"not run again after its credentials expired: {runs}"
    assert len(before) <= 3, f"run again while its credential was valid: {before}"
    # judged once running (at start-up, imports and first lists load a busy machine's loop)
    probe.assert_responsive(runs[len(before) :], bound=0.2)


def test_401_mid_run_logs_in_again_with_the_plugins_new_token(
    cluster: Cluster, kube: Kube, plane: ControlPlane, start_operator: StartOperator, tmp_path: Path
) -> None:
    """The token in use is revoked while a run is active (the server answers 401); the exec
    plugin, run again, hands out the new one: the run and a later one succeed."""
    ns = cluster.namespace
    token_file, calls = tmp_path / "token", tmp_path / "plugin.log"
    token_file.write_text(identities.bound_token(cluster.client, ns, OPERATOR_SA, "token-1"))
    user = identities.exec_user(token_file, calls, ttl=3600, sleep=0)
    op = start_operator(configured(tmp_path / "x", plane, user))
    gate = tmp_path / "gate"
    gated_run(kube, "relogin", gate)
    kube.wait_task("relogin", "gate", "Running", timeout=30)

    old = token_file.read_text()
    new = identities.bound_token(cluster.client, ns, OPERATOR_SA, "token-2")
    token_file.write_text(new)
    kubernetes.client.CoreV1Api(cluster.client).delete_namespaced_secret("token-1", ns)
    identities.wait_revoked(plane.server, plane.ca_file, old)
    gate.touch()
    succeeded(kube, "relogin")
    hello(kube)
    assert new[-8:] in {c["token"] for c in plugin_calls(calls)}
    assert "401" in op.log.read_text(), "the server never refused the old token"


def test_exec_plugin_client_certificate_renewed_when_the_old_one_expires(
    cluster: Cluster, kube: Kube, plane: ControlPlane, start_operator: StartOperator, tmp_path: Path
) -> None:
    """An exec plugin that hands out client certificates (Teleport's does): the operator starts
    with one valid 25 s. Once it expired, the server refuses it (401) on every connection
    opened with it, so the plugin's next certificate must reach new connections: the run
    active across the expiry and a later one succeed."""
    user = f"kopflow-exec.{cluster.namespace}"
    with operator_rights(cluster, user):
        lasting = identities.client_certificate(cluster.client, user, tmp_path)
        certs = plane.workdir / "certs"
        short = identities.short_lived_certificate(
            certs / "ca.crt", certs / "ca.key", user, 25, tmp_path
        )
        expires = time.time() + 25
        crt, key, calls = tmp_path / "plugin.crt", tmp_path / "plugin.key", tmp_path / "calls"
        crt.write_bytes(short[0].read_bytes())
        key.write_bytes(short[1].read_bytes())
        op = start_operator(configured(tmp_path / "x", plane, identities.exec_cert_user(
            crt, key, calls)))  # fmt: skip
        gate = tmp_path / "gate"
        gated_run(kube, "renewed", gate)
        kube.wait_task("renewed", "gate", "Running", timeout=30)
        assert time.time() < expires, "too slow a start: the first certificate expired already"
        crt.write_bytes(lasting[0].read_bytes())  # what the plugin hands out from now on
        key.write_bytes(lasting[1].read_bytes())
        time.sleep(max(0.0, expires + 1 - time.time()))  # a clock to pass, nothing to watch
        gate.touch()
        succeeded(kube, "renewed")
        hello(kube)
        handed = [c["token"] for c in plugin_calls(calls)]
        assert handed[-1] == lasting[0].read_text().strip().splitlines()[-2][-8:], handed
        assert "401" in op.log.read_text(), "the server never refused the expired certificate"


def test_tls_server_name_for_an_address_outside_the_certificate(
    cluster: Cluster, kube: Kube, plane: ControlPlane, start_operator: StartOperator, tmp_path: Path
) -> None:
    """The server is reached at 127.0.0.2 (a forwarder on the loopback network): not in the
    certificate's SANs, so verification fails, until `tls-server-name` names a SAN."""
    user = identities.token_user(token_for(cluster))
    with TcpForwarder(("127.0.0.1", server_port(plane)), host="127.0.0.2") as forwarder:
        server = f"https://{forwarder.address}"
        (created,) = kube.create_file("hello.yaml")
        name = created["metadata"]["name"]

        plain = identities.kubeconfig(tmp_path / "plain.kubeconfig", server, plane.ca_file, user)
        refused = start_operator(plain)
        log = log_until(refused, ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed"), 30)
        assert "127.0.0.2" in log
        refused.stop()
        assert not (kube.run(name).get("status") or {}).get("phase"), "it ran unverified"

        named = identities.kubeconfig(
            tmp_path / "named.kubeconfig", server, plane.ca_file, user, tls_server_name=SAN_NAME
        )
        before = len(forwarder.snapshot())
        start_operator(named)
        succeeded(kube, name)
        assert len(forwarder.snapshot()) > before


@pytest.mark.parametrize("how", ["HTTPS_PROXY", "proxy-url"])
def test_through_a_connect_proxy(
    how: str,
    cluster: Cluster,
    kube: Kube,
    plane: ControlPlane,
    start_operator: StartOperator,
    tmp_path: Path,
) -> None:
    """The server's name resolves only at the proxy (as a cluster name behind a corporate
    proxy): any connection that bypassed the proxy would fail, so a run that succeeds proves
    that kopf's watches and kopflow's own calls all went through it."""
    user = identities.token_user(token_for(cluster))
    routes = {f"{SAN_NAME}:443": ("127.0.0.1", server_port(plane))}
    with ConnectProxy(routes) as proxy:
        by_config = how == "proxy-url"
        config = identities.kubeconfig(
            tmp_path / "p.kubeconfig", f"https://{SAN_NAME}", plane.ca_file, user,
            proxy_url=proxy.url if by_config else None,
        )  # fmt: skip
        env: dict[str, str | None] = {"NO_PROXY": None, "no_proxy": None, "HTTP_PROXY": None}
        env |= {"HTTPS_PROXY": None if by_config else proxy.url, "https_proxy": None}
        op = start_operator(config, env=env)
        hello(kube)
        op.stop()  # before the proxy: its connections end cleanly
        tunnels = proxy.snapshot()
    assert {t.target for t in tunnels} == {f"{SAN_NAME}:443"}
    assert len(tunnels) >= 2, tunnels  # kopf's session and kopflow's client
    assert not proxy.refused


def plugin_calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


class LoopProbe:
    """Scrapes the operator's /metrics (served on its event loop) every 50 ms from a thread,
    recording (start, seconds taken): a blocked loop shows as slow answers."""

    def __init__(self, op: Operator) -> None:
        self.op = op
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        url = f"http://127.0.0.1:{self.op.metrics_port}/metrics"
        for _ in range(2400):  # 2 minutes at most
            if self._stop.wait(0.05):
                return
            start = time.time()
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    resp.read()
            except ConnectionRefusedError:
                continue  # not listening yet
            except OSError:
                pass  # a timeout: the loop did not answer within 5 s
            self.samples.append((start, time.time() - start))

    def __enter__(self) -> LoopProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def assert_responsive(self, calls: list[dict[str, Any]], bound: float) -> None:
        """While each of these plugin calls ran, /metrics answered within `bound`, and no
        scrape begun during it stalled for most of the call (a loop blocked by the plugin
        answers only once it returns)."""
        assert calls, "no plugin call to judge"
        for call in calls:
            span = call["end"] - call["start"]
            near = [(round(s - call["start"], 2), round(t, 3)) for s, t in self.samples]
            near = [(into, t) for into, t in near if into <= span and into + t >= 0]
            inside = [t for into, t in near if into >= 0 and into + t <= span]
            assert inside and min(inside) < bound, (
                f"/metrics did not answer within {bound} s while the plugin ran {call}: the "
                f"event loop was blocked (scrapes: begun s into the call, took s: {near})"
            )
            slowest = max((t, into) for into, t in near if into >= 0)
            assert slowest[0] < span * 0.6, (
                f"a scrape begun {slowest[1]:.2f} s into the plugin's {span:.2f} s took "
                f"{slowest[0]:.2f} s: the event loop was blocked"
            )
