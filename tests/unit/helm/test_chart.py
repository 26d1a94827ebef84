"""The Helm chart as `helm lint --strict` and `helm template` (the real helm binary) see it, for
the default values and each documented mode: cluster-wide, namespaced, HA, monitoring."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support import helm
from tests.unit.test_yaml_versions import first_difference

from kopflow import manifests, yamlspec
from kopflow.api import crd

CHART = helm.CHART
RULES = yaml.safe_load((CHART / "files" / "rbac-rules.yaml").read_text())
ALERTS = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())

MODES: dict[str, list[str]] = {
    "default": [],
    "namespaced": ["--set-json", 'watchNamespaces=["team-a","team-b"]'],
    "ha": ["--set", "replicas=2"],
    "monitoring": ["--set", "monitoring.enabled=true,monitoring.dashboard=true"],
}


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec = only(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return dict(container)


@pytest.mark.parametrize("mode", MODES)
def test_lint_strict_passes(mode: str) -> None:
    done = helm.helm("lint", "--strict", str(CHART), *MODES[mode])
    assert done.returncode == 0, done.stdout + done.stderr


def test_chart_crds_are_the_generated_crds() -> None:
    """The models are the one source: crds/ and the chart's crds/ are both written from them
    (`make crds`), so the chart installs exactly what `kubectl apply -f crds/` does."""
    rendered = crd.render()
    chart_crds = CHART / "crds"
    assert sorted(rendered) == sorted(p.name for p in chart_crds.glob("*.yaml"))
    for name, text in rendered.items():
        assert (chart_crds / name).read_text() == text, f"helm/kopflow/crds/{name}: run make crds"
        top = (CHART.parents[1] / "crds" / name).read_bytes()
        assert (chart_crds / name).read_bytes() == top


def test_default_is_cluster_wide_and_hardened() -> None:
    objects = helm.template()
    assert kinds(objects) == [
        "ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"
    ]  # fmt: skip
    role = only(objects, "ClusterRole")
    assert role["rules"] == RULES
    binding = only(objects, "ClusterRoleBinding")
    account = only(objects, "ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": "kopflow"}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]

    deployment = only(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 1
    assert pod["serviceAccountName"] == account
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = operator_container(objects)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert c["args"][0] == "operator"
    assert not [a for a in c["args"] if a.startswith(("--namespace", "--leader-elect"))]
    assert {"name": "POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in c["env"]  # fmt: skip
    service = only(objects, "Service")
    assert service["spec"]["ports"][0]["port"] == 8081
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8080, "metrics": 8081}


@pytest.mark.parametrize("mode", MODES)
def test_rbac_is_least_privilege(mode: str) -> None:
    """No Secrets, no pods/log, no wildcard, nothing but files/rbac-rules.yaml, in every mode."""
    objects = helm.template(*MODES[mode])
    roles = [o for o in objects if o["kind"] in ("Role", "ClusterRole")]
    assert roles
    for role in roles:
        assert role["rules"] == RULES
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"wildcard in {field}: {rule}"
            assert "secrets" not in rule["resources"]
            assert "pods/log" not in rule["resources"]
            assert not rule.get("nonResourceURLs")
    assert "Secret" not in kinds(objects)


def test_namespaced_mode_renders_roles_only_where_watched() -> None:
    objects = helm.template(*MODES["namespaced"])
    assert "ClusterRole" not in kinds(objects) and "ClusterRoleBinding" not in kinds(objects)
    roles = {o["metadata"]["namespace"] for o in objects if o["kind"] == "Role"}
    bindings = {o["metadata"]["namespace"] for o in objects if o["kind"] == "RoleBinding"}
    # The release's own namespace too: the operator's Lease and its cache live there.
    assert roles == bindings == {"team-a", "team-b", "kopflow"}
    args = operator_container(objects)["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=team-a", "--namespace=team-b"
    ]  # fmt: skip


def test_namespaced_release_namespace_among_watched_gets_one_role() -> None:
    objects = helm.template("--set-json", 'watchNamespaces=["kopflow","b"]')
    roles = sorted(o["metadata"]["namespace"] for o in objects if o["kind"] == "Role")
    assert roles == ["b", "kopflow"]


def test_ha_mode_elects_a_leader_and_keeps_one_replica_in_a_drain() -> None:
    objects = helm.template(*MODES["ha"])
    assert only(objects, "Deployment")["spec"]["replicas"] == 2
    args = operator_container(objects)["args"]
    assert "--leader-elect" in args and "--lease-seconds=15" in args
    pdb = only(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert (
        pdb["spec"]["selector"]["matchLabels"]
        == (only(objects, "Deployment")["spec"]["selector"]["matchLabels"])
    )
    assert "PodDisruptionBudget" not in kinds(helm.template())


def test_client_rate_and_liveness_bound_reach_the_operator(tmp_path: Path) -> None:
    """The operator's client QPS is bounded and configurable (issue 12), as is how long a
    wedged watch may last before /healthz restarts it (issue 10)."""
    args = operator_container(helm.template())["args"]
    assert {"--qps=200", "--burst=400", "--health-bound=60"} <= set(args)
    values = tmp_path / "values.yaml"
    values.write_text("qps: 50\nburst: 80\nhealthBoundSeconds: 120\n")
    args = operator_container(helm.template("-f", str(values)))["args"]
    assert {"--qps=50", "--burst=80", "--health-bound=120"} <= set(args)
    from kopflow.cli import build_parser

    parsed = build_parser().parse_args(args)
    assert (parsed.qps, parsed.burst, parsed.health_bound) == (50, 80, 120)


def test_monitoring_mode_wraps_the_shipped_alerts_and_dashboard() -> None:
    objects = helm.template(*MODES["monitoring"])
    assert only(objects, "PrometheusRule")["spec"] == ALERTS
    monitor = only(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    # The alerts select job="kopflow-operator"; the scrape must carry that job label.
    relabel = monitor["spec"]["endpoints"][0]["relabelings"][0]
    assert (relabel["targetLabel"], relabel["replacement"]) == ("job", "kopflow-operator")
    assert 'job="kopflow-operator"' in (CHART / "files" / "alerts.yaml").read_text()
    dashboard = only(objects, "ConfigMap")
    shipped = json.loads((CHART / "files" / "dashboard.json").read_text())
    assert json.loads(dashboard["data"]["kopflow.json"]) == shipped
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    off = kinds(helm.template())
    assert "PrometheusRule" not in off and "ServiceMonitor" not in off and "ConfigMap" not in off


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ("replicas: two\n", "replicas"),
        ("replicas: 0\n", "replicas"),
        ("watchNamespaces: [Team_A]\n", "watchNamespaces"),
        ("image: {repository: kopflow, pullPolicy: Sometimes}\n", "pullPolicy"),
        ("monitoring: {enabled: yes-please}\n", "enabled"),
        ("replica: 2\n", "replica"),
        ("qps: 0\n", "qps"),
        ("healthBoundSeconds: 1\n", "healthBoundSeconds"),
    ],
)
def test_bad_values_are_refused_naming_the_value(values: str, named: str, tmp_path: Path) -> None:
    bad = tmp_path / "values.yaml"
    bad.write_text(values)
    done = helm.helm("template", "x", str(CHART), "-f", str(bad))
    assert done.returncode != 0, f"{values!r} was accepted"
    assert named in done.stderr, done.stderr


@pytest.mark.parametrize("mode", MODES)
def test_rendered_yaml_means_the_same_under_yaml_1_1_and_1_2(mode: str) -> None:
    """What helm renders reaches the API server through go-yaml; kopflow reads YAML 1.2."""
    done = helm.helm("template", "kopflow", str(CHART), *MODES[mode])
    assert done.returncode == 0, done.stderr
    old = list(yaml.load_all(done.stdout, Loader=yamlspec.Yaml11Loader))
    assert first_difference(old, manifests.parse(done.stdout)) is None


def test_notes_tell_how_to_submit_a_first_workflow() -> None:
    done = helm.helm("install", "kopflow", str(CHART), "--dry-run=client", "-n", "ops",
                     "--set-json", 'watchNamespaces=["team-a"]')  # fmt: skip
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "kubectl create -n team-a -f -" in notes
    assert "kind: WorkflowRun" in notes
    assert "kubectl get workflowruns -n team-a -w" in notes
