"""The chart installed the way users install it, with the real helm on the real control plane.

`helm install` (no --wait: no container runtime runs the image, so the chart's pod is kept off
the simulated node by a nodeSelector and stays Pending) must create every object and the API
server must accept them all. The operator then runs as a local process with exactly the
arguments the installed Deployment carries and a token of the chart's own ServiceAccount, so
the RBAC the chart rendered is the RBAC under test. `helm upgrade` and `helm uninstall` follow.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from tests.integration.operator.conftest import (
    Cluster,
    Kube,
    Operator,
    new_namespace,
    write_kubeconfig,
)
from tests.support import helm
from tests.support.control_plane import ControlPlane

RULES = yaml.safe_load((helm.CHART / "files" / "rbac-rules.yaml").read_text())
OFF_NODE = ["--set-string", "nodeSelector.kopflow\\.dev/no-node=true"]
"""Keeps the chart's pod off the simulated node: it would try to run the image's entrypoint."""


@pytest.fixture
def plane(real_crds: ControlPlane, remote_kubelet: Any) -> ControlPlane:
    return real_crds


@pytest.fixture
def client(plane: ControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    c = kubernetes.config.new_client_from_config(config_file=str(plane.kubeconfig))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def namespaces(client: kubernetes.client.ApiClient) -> Iterator[list[str]]:
    """Fresh namespaces for the test (ask with .append(new_namespace(client))); deleted after."""
    made: list[str] = []
    try:
        yield made
    finally:
        core = kubernetes.client.CoreV1Api(client)
        for ns in made:
            core.delete_namespace(ns)


@pytest.fixture
def releases(plane: ControlPlane) -> Iterator[list[tuple[str, str]]]:
    """(release, namespace) of the test; uninstalled after it if the test did not (a failed
    test must not leave its ClusterRole behind in the shared control plane)."""
    made: list[tuple[str, str]] = []
    try:
        yield made
    finally:
        for release, namespace in made:
            helm.helm("uninstall", release, "-n", namespace, "--ignore-not-found",
                      kubeconfig=plane.kubeconfig)  # fmt: skip


def run_helm(plane: ControlPlane, *args: str) -> str:
    done = helm.helm(*args, kubeconfig=plane.kubeconfig)
    assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stderr}"
    return done.stdout


def manifest(plane: ControlPlane, release: str, namespace: str) -> list[dict[str, Any]]:
    """The objects of the release as helm recorded them."""
    text = run_helm(plane, "get", "manifest", release, "-n", namespace)
    return [d for d in yaml.safe_load_all(text) if d]


def live(client: kubernetes.client.ApiClient, obj: dict[str, Any]) -> dict[str, Any] | None:
    """The object as the API server has it now, or None."""
    api = kubernetes.dynamic.DynamicClient(client).resources.get(
        api_version=obj["apiVersion"], kind=obj["kind"]
    )
    meta = obj["metadata"]
    try:
        found = api.get(name=meta["name"], namespace=meta.get("namespace"))
    except kubernetes.dynamic.exceptions.NotFoundError:
        return None
    return dict(found.to_dict())


def operator_args(objects: list[dict[str, Any]]) -> tuple[str, ...]:
    """The installed Deployment's arguments, minus its ports (the test binds free local ones)."""
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "operator"
    return tuple(a for a in args[1:] if not a.startswith(("--health-port", "--metrics-port")))


def chart_token(client: kubernetes.client.ApiClient, objects: list[dict[str, Any]]) -> str:
    """A TokenRequest token of the ServiceAccount the chart created."""
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    meta = account["metadata"]
    request = kubernetes.client.CoreV1Api(client).create_namespaced_service_account_token(
        meta["name"], meta["namespace"], {"spec": {"expirationSeconds": 3600}}
    )
    return str(request.status.token)


def test_cluster_wide_install_is_accepted_and_uninstall_removes_it(
    plane: ControlPlane,
    client: kubernetes.client.ApiClient,
    namespaces: list[str],
    releases: list[tuple[str, str]],
) -> None:
    ops = new_namespace(client)
    namespaces.append(ops)
    release = f"kf-{uuid.uuid4().hex[:6]}"
    releases.append((release, ops))
    out = run_helm(plane, "install", release, str(helm.CHART), "-n", ops, *OFF_NODE)
    assert "STATUS: deployed" in out and "kubectl create -f -" in out
    objects = manifest(plane, release, ops)
    assert {o["kind"] for o in objects} == {
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"
    }  # fmt: skip
    for obj in objects:
        assert live(client, obj) is not None, f"{obj['kind']} {obj['metadata']['name']} missing"
    (role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    assert (live(client, role) or {})["rules"] == RULES

    run_helm(plane, "uninstall", release, "-n", ops)
    for obj in objects:
        if obj["kind"] != "Deployment":  # the Deployment goes by foreground GC, not at once
            assert live(client, obj) is None, f"{obj['kind']} survived helm uninstall"
    crds = kubernetes.client.ApiextensionsV1Api(client)
    assert crds.read_custom_resource_definition("workflowruns.kopflow.dev")  # never deleted


def test_namespaced_install_runs_examples_as_the_chart_account_then_upgrade_and_uninstall(
    plane: ControlPlane,
    client: kubernetes.client.ApiClient,
    namespaces: list[str],
    releases: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    ops, team_a, team_b = (new_namespace(client) for _ in range(3))
    namespaces.extend([ops, team_a, team_b])
    release = f"kf-{uuid.uuid4().hex[:6]}"
    releases.append((release, ops))
    chart = ["-n", ops, *OFF_NODE, "--set", "logFormat=text"]
    run_helm(plane, "install", release, str(helm.CHART), *chart,
             "--set-json", f'watchNamespaces=["{team_a}"]')  # fmt: skip
    objects = manifest(plane, release, ops)
    for obj in objects:
        assert live(client, obj) is not None, f"{obj['kind']} {obj['metadata']['name']} missing"
    roles = {o["metadata"]["namespace"] for o in objects if o["kind"] == "Role"}
    assert roles == {ops, team_a}

    token = chart_token(client, objects)
    config = write_kubeconfig(tmp_path / "op.kubeconfig", plane.server, token, plane.ca_file)

    def cluster(namespace: str, args: tuple[str, ...]) -> Cluster:
        return Cluster("real", plane.kubeconfig, client, namespace, config, args)  # type: ignore[arg-type]

    # POD_NAMESPACE (the downward API in the chart) is the Operator's cluster.namespace: the
    # release's namespace is where the Lease lives, so the Operator gets a Cluster of `ops`.
    op = Operator(cluster(ops, operator_args(objects)), tmp_path / "operator.log")
    kube = Kube(cluster(team_a, ()))
    try:
        op.start()
        (created,) = kube.create_file("hello.yaml")
        run = kube.wait_run(created["metadata"]["name"])
        assert run["status"]["phase"] == "Succeeded", run["status"]
    finally:
        op.stop()
        kube.close()

    # Upgrade: a second watched namespace and two replicas (leader election, a PDB).
    run_helm(plane, "upgrade", release, str(helm.CHART), *chart, "--set", "replicas=2",
             "--set-json", f'watchNamespaces=["{team_a}","{team_b}"]')  # fmt: skip
    upgraded = manifest(plane, release, ops)
    assert {o["metadata"]["namespace"] for o in upgraded if o["kind"] == "Role"} == {
        ops, team_a, team_b
    }  # fmt: skip
    (pdb,) = [o for o in upgraded if o["kind"] == "PodDisruptionBudget"]
    assert live(client, pdb) is not None
    args = operator_args(upgraded)
    assert "--leader-elect" in args and f"--namespace={team_b}" in args
    op = Operator(cluster(ops, args), tmp_path / "operator-2.log")
    kube = Kube(cluster(team_b, ()))
    try:
        op.start()
        (created,) = kube.create_file("hello.yaml")
        assert kube.wait_run(created["metadata"]["name"])["status"]["phase"] == "Succeeded"
        lease = kubernetes.client.CoordinationV1Api(client).read_namespaced_lease(
            "kopflow-operator", ops
        )
        assert lease.spec.holder_identity
    finally:
        op.stop()
        kube.close()

    # Uninstall: the chart's objects go; the CRDs and the users' runs stay.
    run_helm(plane, "uninstall", release, "-n", ops)
    for obj in upgraded:
        if obj["kind"] != "Deployment":
            assert live(client, obj) is None, f"{obj['kind']} survived helm uninstall"
    runs = kubernetes.client.CustomObjectsApi(client).list_namespaced_custom_object(
        "kopflow.dev", "v1alpha1", team_b, "workflowruns"
    )
    assert [r["status"]["phase"] for r in runs["items"]] == ["Succeeded"]
    with pytest.raises(ApiException) as gone:
        kubernetes.client.CoreV1Api(client).create_namespaced_service_account_token(
            release + "-kopflow", ops, {"spec": {"expirationSeconds": 600}}
        )
    assert gone.value.status == 404
