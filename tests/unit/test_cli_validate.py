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
