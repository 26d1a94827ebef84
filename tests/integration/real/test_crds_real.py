"""The CRDs and examples on a real kube-apiserver, through the real kubectl.

What only a real server checks: YAML 1.1 as kubectl reads it, the structural-schema rules, the
CEL cost budget, and the exact 422 a user sees when a manifest breaks a rule.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from tests.support import kubectl
from tests.support.control_plane import ControlPlane

from kopflow import manifests
from kopflow.api import crd
from kopflow.api.workflow import MAX_TASKS

GROUP, VERSION = "kopflow.dev", "v1alpha1"
PLURALS = {"Workflow": "workflows", "WorkflowRun": "workflowruns"}


@pytest.fixture(scope="module")
def kubeconfig(control_plane: ControlPlane) -> Path:
    """The admin kubeconfig of a control plane with kopflow's CRDs installed (idempotent)."""
    assert control_plane.kubeconfig is not None
    kubectl.install_crds(control_plane.kubeconfig)
    return control_plane.kubeconfig


@pytest.fixture(scope="module")
def api(kubeconfig: Path) -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def custom(api: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api)


@pytest.fixture(scope="module")
def namespace(api: kubernetes.client.ApiClient) -> Iterator[str]:
    """A namespace of this module's own (dry-run requests still need one that exists)."""
    core = kubernetes.client.CoreV1Api(api)
    name = str(core.create_namespace({"metadata": {"generateName": "crds-real-"}}).metadata.name)
    try:
        yield name
    finally:
        core.delete_namespace(name)


def test_kubectl_apply_crds_succeeds_and_they_are_established(kubeconfig: Path) -> None:
    again = kubectl.kubectl(kubeconfig, "apply", "-f", str(kubectl.CRDS))  # a second apply
    assert again.returncode == 0, again.stderr
    for name in ("workflows.kopflow.dev", "workflowruns.kopflow.dev"):
        conditions = json.loads(
            "\n".join(kubectl.lines(kubeconfig, "get", "crd", name, "-o", "json"))
        )["status"]["conditions"]
        state = {c["type"]: c["status"] for c in conditions}
        assert state["Established"] == "True" and state["NamesAccepted"] == "True", conditions


def test_every_example_passes_server_side_dry_run(kubeconfig: Path, namespace: str) -> None:
    assert kubectl.dry_run_examples(kubeconfig, namespace) == {}


# --- what the server refuses --------------------------------------------------------------------


def _etl_spec() -> dict[str, Any]:
    body = manifests.load(kubectl.ROOT / "examples" / "etl.yaml")[0].body
    return copy.deepcopy(body["spec"])  # type: ignore[no-any-return]


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    if kind == "WorkflowRun":
        spec = {"workflow": spec}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def _refusal(
    custom: kubernetes.client.CustomObjectsApi, namespace: str, doc: dict[str, Any]
) -> tuple[int, list[dict[str, str]]]:
    """(HTTP status, causes) of a server-side dry-run create that must fail."""
    try:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[doc["kind"]], doc, dry_run="All"
        )
    except kubernetes.client.ApiException as err:
        body = json.loads(err.body)
        return err.status, body.get("details", {}).get("causes", [])
    raise AssertionError(f"the server accepted {doc['metadata']['name']}")


def _script_task(spec: dict[str, Any]) -> int:
    return next(i for i, t in enumerate(spec["tasks"]) if "script" in t)


def _xor_in_tasks(spec: dict[str, Any]) -> str:
    i = _script_task(spec)
    spec["tasks"][i]["command"] = ["python3"]
    return f"tasks[{i}].script"


def _xor_in_on_failure(spec: dict[str, Any]) -> str:
    script = {"command": ["sh"], "source": "echo failed"}
    spec["onFailure"] = [{"name": "notify", "command": ["echo"], "script": script}]
    return "onFailure[0].script"


def _default_not_in_enum(spec: dict[str, Any]) -> str:
    i = next(i for i, p in enumerate(spec["parameters"]) if "enum" in p)
    spec["parameters"][i]["default"] = "everything"
    return f"parameters[{i}].default"


def _required_with_default(spec: dict[str, Any]) -> str:
    spec["parameters"][0]["required"] = True
    return "parameters[0].required"


def _on_failure_named_like_a_task(spec: dict[str, Any]) -> str:
    spec["onFailure"] = [{"name": spec["tasks"][0]["name"], "command": ["echo"]}]
    return "onFailure"


XOR = "set either command or script, not both"
# case -> (where the rule sits in the Workflow schema, its message, how to break it)
CEL_CASES: dict[str, tuple[str, str, Callable[[dict[str, Any]], str]]] = {
    "command-xor-script": ("spec.tasks[]", XOR, _xor_in_tasks),
    "command-xor-script-on-failure": ("spec.onFailure[]", XOR, _xor_in_on_failure),
    "default-in-enum": ("spec.parameters[]", "default must be one of enum", _default_not_in_enum),
    "required-without-default": (
        "spec.parameters[]",
        "a required parameter cannot have a default; drop one of them",
        _required_with_default,
    ),
    "on-failure-names": (
        "spec",
        "onFailure task names must differ from the names in tasks",
        _on_failure_named_like_a_task,
    ),
}
RUN_SOURCE = "set exactly one of spec.workflowRef or spec.workflow"


def _rule_locations(schema: dict[str, Any], path: str) -> Iterator[tuple[str, str]]:
    """(schema path, rule message) of every CEL rule under schema."""
    for rule in schema.get("x-kubernetes-validations", ()):
        yield path, rule["message"]
    for key, sub in schema.get("properties", {}).items():
        yield from _rule_locations(sub, f"{path}.{key}".lstrip("."))
    if isinstance(schema.get("items"), dict):
        yield from _rule_locations(schema["items"], f"{path}[]")


def _prefix(kind: str) -> str:
    return "spec.workflow" if kind == "WorkflowRun" else "spec"


def test_every_remaining_cel_rule_has_a_breaking_case() -> None:
    """A rule added to the CRDs without a case here fails: each must be shown refused."""
    wanted = set()
    for kind, made in (("Workflow", crd.workflow_crd()), ("WorkflowRun", crd.workflow_run_crd())):
        schema = made["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        wanted |= {(kind, loc, msg) for loc, msg in _rule_locations(schema, "")}
    covered = {
        (kind, location.replace("spec", _prefix(kind), 1), message)
        for location, message, _ in CEL_CASES.values()
        for kind in PLURALS
    }
    covered.add(("WorkflowRun", "spec", RUN_SOURCE))
    # the transition rules: each refused on update in test_run_size_real.py
    # (test_what_a_run_runs_is_immutable_and_its_switches_are_not)
    covered |= {("WorkflowRun", "spec", r["message"]) for r in crd._RUN_IMMUTABLE_RULES}
    assert covered == wanted


@pytest.mark.parametrize("kind", list(PLURALS))
@pytest.mark.parametrize("case", list(CEL_CASES))
def test_each_cel_rule_is_refused_with_its_field(
    custom: kubernetes.client.CustomObjectsApi, namespace: str, case: str, kind: str
) -> None:
    _, message, breaker = CEL_CASES[case]
    spec = _etl_spec()
    field = f"{_prefix(kind)}.{breaker(spec)}"
    status, causes = _refusal(custom, namespace, _doc(kind, f"cel-{case}", spec))
    assert status == 422
    assert [(c["field"], message in c["message"]) for c in causes] == [(field, True)], causes


def test_run_with_both_or_neither_workflow_source_is_refused(
    custom: kubernetes.client.CustomObjectsApi, namespace: str
) -> None:
    both = _doc("WorkflowRun", "both", _etl_spec())
    both["spec"]["workflowRef"] = {"name": "etl"}
    neither = _doc("WorkflowRun", "neither", _etl_spec())
    neither["spec"] = {"parameters": {"mode": "full"}}
    for doc in (both, neither):
        status, causes = _refusal(custom, namespace, doc)
        assert status == 422
        assert [c["field"] for c in causes] == ["spec"]
        assert RUN_SOURCE in causes[0]["message"]


def _schema_causes(causes: list[dict[str, str]]) -> list[dict[str, str]]:
    """The causes that name a field: a schema error also brings a field-less `<nil>` cause
    saying the CEL rules were not checked."""
    skipped = [c for c in causes if c["field"] == "<nil>"]
    assert all("validation rules were not checked" in c["message"] for c in skipped), skipped
    return [c for c in causes if c["field"] != "<nil>"]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        node: Any = spec
        parts = path.replace("[", ".").replace("]", "").split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        last = parts[-1]
        node[int(last) if last.isdigit() else last] = value

    return change


SCHEMA_CASES = {
    "string-parallelism": ("parallelism", "four", "Invalid value"),
    "negative-retry-limit": ("tasks[0].retry.limit", -1, "greater than or equal to 0"),
    "retry-reason-not-in-enum": ("tasks[0].retry.reasons", ["Crashed"], "Unsupported value"),
    "task-name-not-a-dns-label": ("tasks[0].name", "Extract_Data", "should match"),
    "boolean-default": ("parameters[1].default", False, "must be of type string"),
    "number-image": ("taskDefaults.image", 1.1, "must be of type string"),
    "timeout-zero": ("tasks[0].timeoutSeconds", 0, "greater than or equal to 1"),
}


@pytest.mark.parametrize("case", list(SCHEMA_CASES))
def test_schema_refuses_wrong_types_and_bounds_naming_the_field(
    custom: kubernetes.client.CustomObjectsApi, namespace: str, case: str
) -> None:
    path, value, words = SCHEMA_CASES[case]
    spec = _etl_spec()
    _set(path, value)(spec)
    status, causes = _refusal(custom, namespace, _doc("Workflow", f"schema-{case}", spec))
    field = f"spec.{path}" + ("[0]" if case == "retry-reason-not-in-enum" else "")
    assert status == 422
    assert [c["field"] for c in _schema_causes(causes)] == [field], causes
    assert words in causes[0]["message"]


def test_too_many_tasks_is_refused(
    custom: kubernetes.client.CustomObjectsApi, namespace: str
) -> None:
    spec = {"tasks": [{"name": f"t{i}", "command": ["true"]} for i in range(MAX_TASKS + 1)]}
    status, causes = _refusal(custom, namespace, _doc("Workflow", "too-many", spec))
    assert status == 422
    assert [c["field"] for c in _schema_causes(causes)] == ["spec.tasks"]
    assert f"must have at most {MAX_TASKS} items" in causes[0]["message"]


def test_run_parameter_values_must_be_strings(
    custom: kubernetes.client.CustomObjectsApi, namespace: str
) -> None:
    doc = _doc("WorkflowRun", "param-types", _etl_spec())
    doc["spec"]["parameters"] = {"mode": True}  # what kubectl sends for `mode: yes`
    status, causes = _refusal(custom, namespace, doc)
    assert status == 422
    assert [c["field"] for c in _schema_causes(causes)] == ["spec.parameters.mode"]
    assert "must be of type string" in causes[0]["message"]


def test_kubectl_refuses_a_bare_on_key_as_the_unknown_field_true(
    kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    """What a manifest written for the old `retry.on` meets on a cluster (kubectl reads YAML
    1.1 and validates fields strictly); `kopflow validate` names the new key instead."""
    path = tmp_path / "old.yaml"
    path.write_text(
        "apiVersion: kopflow.dev/v1alpha1\nkind: Workflow\nmetadata: {name: old}\nspec:\n"
        "  tasks:\n  - {name: a, image: busybox, command: [echo],\n"
        "     retry: {limit: 1, on: [Failed]}}\n"
    )
    done = kubectl.kubectl(
        kubeconfig, "create", "--dry-run=server", "-n", namespace, "-f", str(path)
    )
    assert done.returncode != 0
    assert 'unknown field "spec.tasks[0].retry.true"' in done.stderr


POD_TEMPLATE_CASES = {
    "negative-run-as-user": (
        "taskDefaults.podTemplate.securityContext",
        {"runAsUser": -1},
        "taskDefaults.podTemplate.securityContext.runAsUser",
        "greater than or equal to 0",
    ),
    "seccomp-type": (
        "tasks[0].podTemplate.containerSecurityContext",
        {"seccompProfile": {"type": "Permissive"}},
        "tasks[0].podTemplate.containerSecurityContext.seccompProfile.type",
        "Unsupported value",
    ),
    "relative-mount-path": (
        "tasks[0].volumeMounts",
        [{"name": "data", "mountPath": "data"}],
        "tasks[0].volumeMounts[0].mountPath",
        "should match",
    ),
    "spread-policy": (
        "tasks[0].podTemplate.topologySpreadConstraints",
        [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Sometimes"}],
        "tasks[0].podTemplate.topologySpreadConstraints[0].whenUnsatisfiable",
        "Unsupported value",
    ),
    "label-value": (
        "taskDefaults.podTemplate.metadata",
        {"labels": {"team": "data team"}},
        "taskDefaults.podTemplate.metadata.labels.team",
        "should match",
    ),
    "negative-job-ttl": (
        "taskDefaults.podTemplate",
        {"jobTtlSecondsAfterFinished": -5},
        "taskDefaults.podTemplate.jobTtlSecondsAfterFinished",
        "greater than or equal to 0",
    ),
}


@pytest.mark.parametrize("kind", list(PLURALS))
@pytest.mark.parametrize("case", list(POD_TEMPLATE_CASES))
def test_pod_template_and_volumes_are_typed_and_refused_with_their_field(
    custom: kubernetes.client.CustomObjectsApi, namespace: str, case: str, kind: str
) -> None:
    path, value, field, words = POD_TEMPLATE_CASES[case]
    spec = _etl_spec()
    _set(path, value)(spec)
    status, causes = _refusal(custom, namespace, _doc(kind, f"pod-{case}", spec))
    assert status == 422
    named = _schema_causes(causes)
    assert [c["field"] for c in named] == [f"{_prefix(kind)}.{field}"], causes
    assert words in named[0]["message"]


def test_the_server_refuses_a_privileged_container_that_may_not_escalate(
    api: kubernetes.client.ApiClient, namespace: str
) -> None:
    """Why a privileged podTemplate drops kopflow's default allowPrivilegeEscalation false."""
    container = {
        "name": "main",
        "image": "busybox",
        "securityContext": {"privileged": True, "allowPrivilegeEscalation": False},
    }
    job = {
        "metadata": {"name": "priv"},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }
    with pytest.raises(kubernetes.client.ApiException) as err:
        kubernetes.client.BatchV1Api(api).create_namespaced_job(namespace, job, dry_run="All")
    assert err.value.status == 422
    causes = json.loads(err.value.body)["details"]["causes"]
    assert [c["field"] for c in causes] == ["spec.template.spec.containers[0].securityContext"]
    assert (
        "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"
        in (causes[0]["message"])
    )
