"""`kopflow validate` and `kopflow crds` as a user runs them: real process, real exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kopflow(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kopflow", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
    )


def test_validate_examples_exits_zero() -> None:
    result = kopflow("validate", *map(str, sorted((ROOT / "examples").glob("*.yaml"))))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": valid") == 6
    assert "warning" not in result.stderr  # every example is fit for Pod Security restricted


def test_validate_bad_manifest_exits_two_with_field_paths(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: kopflow.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n"
        "  tasks:\n  - {name: a, command: [echo], dependsOn: [b]}\n"
        "  - {name: b, command: [echo], dependsOn: [a]}\n"
        "---\nkind: Deployment\n"
    )
    result = kopflow("validate", str(bad))
    assert result.returncode == 2
    assert "spec.tasks[0].dependsOn: dependency cycle a -> b -> a" in result.stderr
    assert 'kind: unsupported kind "Deployment"' in result.stderr


def test_validate_reads_stdin_and_reports_yaml_errors() -> None:
    result = kopflow("validate", "-", stdin="kind: [unclosed\n")
    assert result.returncode == 2
    assert "-: not valid YAML" in result.stderr


def test_crds_command_writes_the_committed_files(tmp_path: Path) -> None:
    result = kopflow("crds", "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for path in (ROOT / "crds").glob("*.yaml"):
        assert (tmp_path / path.name).read_text() == path.read_text()


def test_validate_warns_about_pod_security_restricted_but_exits_zero(tmp_path: Path) -> None:
    path = tmp_path / "root.yaml"
    path.write_text(
        "apiVersion: kopflow.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n"
        "  taskDefaults:\n    podTemplate:\n      securityContext: {runAsUser: 0}\n"
        "  tasks:\n  - {name: a, image: busybox, command: [echo]}\n"
    )
    result = kopflow("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}#1 (Workflow w): valid\n"
    assert result.stderr == (
        f"{path}#1 (Workflow w): warning: spec.taskDefaults.podTemplate.securityContext.runAsUser:"
        " must not be 0 (root) under Pod Security restricted: in a namespace enforcing it the"
        " attempt's pod is not created\n"
    )


def test_pod_template_errors_name_the_field_and_the_fix(tmp_path: Path) -> None:
    """The pod template is validated by its own validator, built only when a document has one
    (kopflow validate starts faster): its errors still carry the full path and the hint of
    their kind, in a Workflow and in a run's inline workflow alike."""
    template = (
        "podTemplate:\n"
        "        securityContxt: {runAsUser: 1000}\n"
        "        sidecars: [{name: main, image: envoy}]\n"
        "        topologySpreadConstraints: [{maxSkew: 0, topologyKey: zone,"
        " whenUnsatisfiable: DoNotSchedule}]\n"
    )
    path = tmp_path / "bad.yaml"
    path.write_text(
        "apiVersion: kopflow.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n"
        "  tasks:\n"
        "    - name: a\n      image: busybox\n      command: [echo]\n      " + template + "---\n"
        "apiVersion: kopflow.dev/v1alpha1\nkind: WorkflowRun\nmetadata: {name: r}\nspec:\n"
        "  workflow:\n    tasks:\n"
        "    - name: a\n      image: busybox\n      command: [echo]\n      " + template
    )
    result = kopflow("validate", str(path))
    assert result.returncode == 2
    # The operator builds the pod template's validator first, so its models validate it inline:
    # the same issues, in the same order.
    operator = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from kopflow.controller.main import _build_models\n"
            "from kopflow.engine.validation import validate_document\n"
            "from kopflow.manifests import load\n"
            "_build_models()\n"
            "for doc in load(sys.argv[1]):\n"
            "    print(*validate_document(doc.body), sep='\\n')\n",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "".join(f"  {line}\n" for line in operator.stdout.splitlines()) == "".join(
        line + "\n" for line in result.stderr.splitlines() if line.startswith("  ")
    )
    for prefix in ("spec.tasks[0]", "spec.workflow.tasks[0]"):
        assert (
            f"  {prefix}.podTemplate.securityContxt: unknown field; check its spelling"
            " (`kubectl explain` lists the fields)\n" in result.stderr
        )
        assert (
            f'  {prefix}.podTemplate.sidecars[0].name: Value error, "main" is the task'
            " container's name; pick another\n" in result.stderr
        )
        assert (
            f"  {prefix}.podTemplate.topologySpreadConstraints[0].maxSkew: Input should be"
            " greater than or equal to 1\n" in result.stderr
        )
