"""The operator as users run it (`python -m kopflow operator`), on two backends.

    def test_x(operator, kube): kube.apply(...); kube.wait_run(name, "Succeeded")

Every test here runs twice from the same code: on the in-process API emulator with its simulated
node (fast; fault injection and a request log) and on the real control plane of ../shared/k8s
with the remote simulated kubelet (the truth: CRD admission, RBAC, tokens, the real Job
controller and garbage collector). A test that needs the emulator's internals is marked
`emulator_only` and says why.

On both, the operator authenticates as the ServiceAccount `kopflow-operator` of the test's
namespace with a bearer token from the TokenRequest API, under exactly the rules the Helm chart
renders (helm/kopflow/files/rbac-rules.yaml): never as admin. The test itself acts as admin.
The real server is shared by the whole session, so there the operator watches only the test's
namespace (`-n`); on the emulator, fresh per test, it runs cluster-wide.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from tests.support import identities, kubectl
from tests.support.apiserver import ApiServer
from tests.support.apiserver_fixtures import WIDGET_CRD
from tests.support.control_plane import ControlPlane
from tests.support.informer import Cache, Obj
from tests.support.kubelet import Kubelet

from kopflow.engine.times import parse_time

ROOT = Path(__file__).resolve().parents[3]
GROUP, VERSION = "kopflow.dev", "v1alpha1"
FINISHED = ("Succeeded", "Failed", "Cancelled", "Invalid")
RBAC_RULES = ROOT / "helm" / "kopflow" / "files" / "rbac-rules.yaml"
OPERATOR_SA = "kopflow-operator"
BACKENDS = ("emulator", "real")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test that uses a cluster runs on both backends, or the emulator alone if marked."""
    if "backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("emulator_only")
        real = metafunc.definition.get_closest_marker("real_only")
        metafunc.parametrize(
            "backend", BACKENDS[:1] if only else BACKENDS[1:] if real else BACKENDS
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "emulator_only(why): needs the emulator's internals (faults, request log)"
    )
    config.addinivalue_line(
        "markers", "real_only(why): needs what only the real server has (Pod Security admission)"
    )


@dataclass
class Cluster:
    """One backend as a test sees it: admin access, a namespace, and the operator's identity."""

    backend: str
    admin_kubeconfig: Path
    client: kubernetes.client.ApiClient
    namespace: str
    operator_kubeconfig: Path
    operator_args: tuple[str, ...]
    emulator: ApiServer | None = None


def write_kubeconfig(path: Path, server: str, token: str, ca_file: Path | None) -> Path:
    """A kubeconfig with a static bearer token (tests/support/identities.py has the others)."""
    return identities.kubeconfig(path, server, ca_file, identities.token_user(token))


def grant_operator(client: kubernetes.client.ApiClient, namespace: str) -> str:
    """The chart's ClusterRole bound to a ServiceAccount of `namespace`; a token for it."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(client)
    core = kubernetes.client.CoreV1Api(client)
    role = {"metadata": {"name": OPERATOR_SA}, "rules": yaml.safe_load(RBAC_RULES.read_text())}
    try:
        rbac.create_cluster_role(role)
    except ApiException as err:
        if err.status != 409:
            raise
        rbac.replace_cluster_role(OPERATOR_SA, role)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": OPERATOR_SA}})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": f"{OPERATOR_SA}-{namespace}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": OPERATOR_SA,
            },
            "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": namespace}],
        }
    )
    request = core.create_namespaced_service_account_token(
        OPERATOR_SA, namespace, {"spec": {"expirationSeconds": 3600}}
    )
    return str(request.status.token)


def new_namespace(client: kubernetes.client.ApiClient) -> str:
    """A fresh namespace, once its `default` ServiceAccount exists (pods need it)."""
    core = kubernetes.client.CoreV1Api(client)
    name = str(core.create_namespace({"metadata": {"generateName": "test-"}}).metadata.name)
    cache = Cache(client)
    try:
        accounts = cache.informer(core.list_namespaced_service_account, name)
        cache.wait(lambda: "default" in accounts.items, 30, f"ServiceAccount {name}/default")
    finally:
        cache.stop()
    return name


@pytest.fixture(scope="session")
def real_crds(control_plane: ControlPlane) -> ControlPlane:
    """The repository's CRDs applied with the real kubectl, Established."""
    kubectl.install_crds(control_plane.kubeconfig)
    return control_plane


@pytest.fixture
def cluster(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    if backend == "real":
        yield from _real_cluster(request, tmp_path)
    else:
        yield from _emulated_cluster(tmp_path)


def _emulated_cluster(tmp_path: Path) -> Iterator[Cluster]:
    server = ApiServer(crds=[WIDGET_CRD]).start()
    node = Kubelet(server, kill_grace=1.0).start()
    client = None
    try:
        admin = server.kubeconfig(tmp_path / "admin.kubeconfig")
        client = kubernetes.config.new_client_from_config(config_file=str(admin))
        namespace = new_namespace(client)
        token = grant_operator(client, namespace)
        yield Cluster(
            backend="emulator",
            admin_kubeconfig=admin,
            client=client,
            namespace=namespace,
            operator_kubeconfig=server.kubeconfig(tmp_path / "operator.kubeconfig", token=token),
            operator_args=(),
            emulator=server,
        )
        account = f"system:serviceaccount:{namespace}:{OPERATOR_SA}"
        refused = {k: n for k, n in server.requests.forbidden.items() if k[0] == account}
        assert not refused, f"the chart's RBAC refused the operator: {refused}"
    finally:
        if client is not None:
            client.close()
        node.stop()
        server.stop()


def _real_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    plane: ControlPlane = request.getfixturevalue("real_crds")
    request.getfixturevalue("remote_kubelet")
    assert plane.kubeconfig is not None
    client = kubernetes.config.new_client_from_config(config_file=str(plane.kubeconfig))
    namespace = new_namespace(client)
    try:
        token = grant_operator(client, namespace)
        yield Cluster(
            backend="real",
            admin_kubeconfig=plane.kubeconfig,
            client=client,
            namespace=namespace,
            operator_kubeconfig=write_kubeconfig(
                tmp_path / "operator.kubeconfig", plane.server, token, plane.ca_file
            ),
            operator_args=("-n", namespace),
        )
    finally:
        rbac = kubernetes.client.RbacAuthorizationV1Api(client)
        rbac.delete_cluster_role_binding(f"{OPERATOR_SA}-{namespace}")
        kubernetes.client.CoreV1Api(client).delete_namespace(namespace)
        client.close()


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Operator:
    """A `kopflow operator` subprocess that can be killed and started again."""

    def __init__(
        self, cluster: Cluster, log: Path, *extra: str, env: dict[str, str | None] | None = None
    ) -> None:
        self.cluster, self.log, self.extra = cluster, log, extra
        self.env = env or {}
        """Changes to its environment (None: unset), e.g. the in-cluster variables, a proxy."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.metrics_port = free_port()

    def metrics(self) -> str:
        """Its /metrics now (Prometheus text format)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())

    def start(self) -> None:
        self.starts += 1
        out = self.log.open("ab")
        args = ["--health-port", "0", "--metrics-port", str(self.metrics_port)]
        args += ["--metrics-host", "127.0.0.1"]
        args += [*self.cluster.operator_args, *self.extra]
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.operator_kubeconfig),
            "POD_NAMESPACE": self.cluster.namespace,  # where its Lease lives
            **self.env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kopflow", "operator", *args],
            env={k: v for k, v in env.items() if v is not None},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class Kube:
    """Test-side admin client: create from YAML, and wait on what the API reports.

    Runs, Workflows, Jobs, Pods and Events of the namespace are watched from the start
    (informers), so waits are event-driven on both backends and `created_jobs` counts every Job
    creation by name.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster, self.ns = cluster, cluster.namespace
        client = cluster.client
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)
        self.coordination = kubernetes.client.CoordinationV1Api(client)
        self.cache = Cache(client)
        list_custom = self.custom.list_namespaced_custom_object
        self._runs = self.cache.informer(list_custom, GROUP, VERSION, self.ns, "workflowruns")
        self._workflows = self.cache.informer(list_custom, GROUP, VERSION, self.ns, "workflows")
        self._jobs = self.cache.informer(self.batch.list_namespaced_job, self.ns)
        self._events = self.cache.informer(self.core.list_namespaced_event, self.ns)
        self._pods = self.cache.informer(self.core.list_namespaced_pod, self.ns)

    @property
    def server(self) -> ApiServer:
        """The emulator, for tests marked emulator_only (faults, request log)."""
        assert self.cluster.emulator is not None, "mark the test emulator_only"
        return self.cluster.emulator

    @property
    def created_jobs(self) -> Counter[str]:
        """Job name -> times it was created (ADDED) since the test began."""
        return self._jobs.added

    def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        plural = {"Workflow": "workflows", "WorkflowRun": "workflowruns"}[doc["kind"]]
        body: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, plural, doc
        )
        return body

    def run_ref(self, name: str, workflow: str, **params: str) -> dict[str, Any]:
        """Create a WorkflowRun of a Workflow by reference, with parameter values."""
        spec: dict[str, Any] = {"workflowRef": {"name": workflow}}
        if params:
            spec["parameters"] = params
        return self.create(
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkflowRun",
             "metadata": {"name": name}, "spec": spec}
        )  # fmt: skip

    def create_file(self, name: str) -> list[dict[str, Any]]:
        docs = [d for d in yaml.safe_load_all((ROOT / "examples" / name).read_text()) if d]
        return [self.create(d) for d in docs]

    def run(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "workflowruns", name
        )
        return body

    def watched_runs(self) -> list[Obj]:
        """Every run of the namespace as the watch last saw it (cheap: for wait() checks)."""
        return list(self._runs.items.values())

    def watched_pods(self) -> list[Obj]:
        """Every Pod of the namespace as the watch last saw it (cheap: for wait() checks)."""
        return list(self._pods.items.values())

    def watched_jobs(self) -> list[Obj]:
        """Every Job of the namespace as the watch last saw it (cheap: for wait() checks)."""
        return list(self._jobs.items.values())

    def patch_run(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, "workflowruns", name, {"spec": spec}
        )

    def wait(self, check: Any, timeout: float = 60, what: str = "condition") -> Any:
        """check()'s first truthy value, re-evaluated on every watched change."""
        return self.cache.wait(check, timeout, what)

    def wait_run(self, name: str, *phases: str, timeout: float = 60) -> dict[str, Any]:
        """The run once its phase is one of phases (default: any finished phase)."""
        wanted = phases or FINISHED

        def reached() -> Obj | None:
            run = self._runs.items.get(name)
            return run if ((run or {}).get("status") or {}).get("phase") in wanted else None

        found: dict[str, Any] = self.wait(reached, timeout, f"run {name} in {wanted}")
        return found

    def run_record(self, name: str) -> Obj | None:
        """The latest version of the run the watch saw, kept after the run's deletion."""
        versions = [r for r in list(self._runs.last.values()) if r["metadata"]["name"] == name]
        newest = max(
            versions, key=lambda r: int(r["metadata"].get("resourceVersion") or 0), default=None
        )
        return newest

    def wait_run_ended(self, name: str, *phases: str, timeout: float = 60) -> dict[str, Any]:
        """The run once the watch saw it end in one of phases (default: any finished phase),
        deleted since or not: a schedule's history limit deletes its oldest finished runs,
        maybe before the test looks (a finished phase is final)."""
        wanted = phases or FINISHED
        assert set(wanted) <= set(FINISHED), "only a finished phase is kept after deletion"

        def ended() -> Obj | None:
            run = self.run_record(name)
            return run if ((run or {}).get("status") or {}).get("phase") in wanted else None

        found: dict[str, Any] = self.wait(ended, timeout, f"run {name} ended in {wanted}")
        return found

    def wait_task(self, name: str, task: str, phase: str, timeout: float = 60) -> dict[str, Any]:
        def reached() -> Obj | None:
            run = self._runs.items.get(name) or {}
            tasks = (run.get("status") or {}).get("tasks") or {}
            return run if (tasks.get(task) or {}).get("phase") == phase else None

        found: dict[str, Any] = self.wait(reached, timeout, f"task {name}/{task} {phase}")
        return found

    def wait_run_gone(self, name: str, timeout: float = 30) -> None:
        self.wait(lambda: name not in self._runs.items, timeout, f"run {name} deleted")

    def wait_workflow_status(self, name: str, timeout: float = 30) -> dict[str, Any]:
        def written() -> Obj | None:
            wf = self._workflows.items.get(name)
            return wf if (wf or {}).get("status") else None

        found: dict[str, Any] = self.wait(written, timeout, f"status of Workflow {name}")
        return found

    def attempt_spans(self) -> dict[tuple[str, str], list[tuple[datetime, datetime, str]]]:
        """(run, task) -> (start, end, pod) of every container that ran, from every Pod the
        watch saw (deleted ones too). A container runs from its startedAt until its
        finishedAt (or its pod's deletion plus grace, or now)."""
        runs: dict[tuple[str, str], list[tuple[datetime, datetime, str]]] = {}
        now = datetime.now(UTC)
        for pod in list(self._pods.last.values()):
            labels = pod["metadata"].get("labels") or {}
            key = (labels.get("kopflow.dev/run", ""), labels.get("kopflow.dev/task", ""))
            for c in (pod.get("status") or {}).get("containerStatuses") or ():
                state = c.get("state") or {}
                started = (state.get("running") or state.get("terminated") or {}).get("startedAt")
                if not started:
                    continue
                end = (state.get("terminated") or {}).get("finishedAt")
                meta = pod["metadata"]
                if end is None and meta.get("deletionTimestamp"):
                    grace = timedelta(seconds=meta.get("deletionGracePeriodSeconds") or 0)
                    stop = parse_time(meta["deletionTimestamp"]) + grace
                else:
                    stop = parse_time(end) if end else now
                runs.setdefault(key, []).append((parse_time(started), stop, meta["name"]))
        return runs

    def overlapping_attempts(self) -> list[tuple[str, str, str, str]]:
        """Pairs of pods of one task whose containers ran at the same time: (run, task, pod,
        pod). Empty when no task ever ran twice at once."""
        found = []
        for (run, task), spans in self.attempt_spans().items():
            spans.sort()
            for (_, end, first), (start, _, second) in itertools.pairwise(spans):
                if start < end:
                    found.append((run, task, first, second))
        return found

    def jobs(self) -> list[dict[str, Any]]:
        """The namespace's Jobs, read from the API now."""
        listing = self.batch.list_namespaced_job(self.ns)
        return [self.cluster.client.sanitize_for_serialization(j) for j in listing.items]  # type: ignore[no-any-return]

    def wait_no_jobs(self, timeout: float = 30) -> None:
        """Until every Job of the namespace is gone (deleted by the operator or GC)."""
        self.wait(lambda: not self._jobs.items, timeout, "no Jobs left")

    def wait_event(self, name: str, reason: str, timeout: float = 30) -> None:
        """Until an Event with this reason about the object exists."""

        def seen() -> bool:
            return any(
                e.get("reason") == reason and e["involvedObject"]["name"] == name
                for e in self._events.items.values()
            )

        self.wait(seen, timeout, f"Event {reason} about {name}")

    def events(self, name: str) -> list[tuple[str, str, str]]:
        return [
            (e.type, e.reason, e.message)
            for e in self.core.list_namespaced_event(self.ns).items
            if e.involved_object.name == name and e.involved_object.kind == "WorkflowRun"
        ]

    def lease(self, name: str = "kopflow-operator") -> Obj | None:
        try:
            lease = self.coordination.read_namespaced_lease(name, self.ns)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return self.cluster.client.sanitize_for_serialization(lease)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.cache.stop()


@pytest.fixture
def kube(cluster: Cluster) -> Iterator[Kube]:
    k = Kube(cluster)
    try:
        yield k
    finally:
        k.close()


@pytest.fixture
def operator(cluster: Cluster, tmp_path: Path) -> Iterator[Operator]:
    """A running operator; its log is printed when the test fails."""
    op = Operator(cluster, tmp_path / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()
        if op.log.exists():
            sys.stdout.write(op.log.read_text()[-20000:])
