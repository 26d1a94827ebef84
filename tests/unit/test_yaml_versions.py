"""YAML 1.1 (kubectl, Helm) and YAML 1.2 (kopflow) read everything kopflow ships the same, and
`kopflow validate` refuses a manifest they would read differently, naming the path and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kopflow import manifests, yamlspec
from kopflow.api import crd
from kopflow.controller.workflows import issues_of as operator_issues
from kopflow.engine.validation import validate_document

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(
    [*ROOT.glob("crds/*.yaml"), *ROOT.glob("examples/*.yaml")]
    + [p for p in ROOT.glob("helm/**/*.yaml") if "templates" not in p.parts]
)
"""Every YAML file the project ships (a chart's templates/ are Go templates, not YAML yet)."""

MISREAD = ["on", "off", "y", "n", "N", "yes", "No", "0755", "0o17", "1_000", "1:30", "1e3", "+.5"]
"""Strings that YAML 1.1 or 1.2 reads as something else when written plain."""


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The path of the first place a and b differ (type-sensitive: True is not "on")."""
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            extra = [repr(k) for k in a if k not in b] + [repr(k) for k in b if k not in a]
            return f"{path or '.'}: keys {', '.join(extra)}"
        for key in a:
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    if type(a) is not type(b) or a != b:
        return f"{path or '.'}: YAML 1.1 reads {a!r}, YAML 1.2 reads {b!r}"
    return None


def test_shipped_files_are_found() -> None:
    names = {p.name for p in SHIPPED}
    assert {"workflows.kopflow.dev.yaml", "workflowruns.kopflow.dev.yaml", "etl.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_yaml_means_the_same_under_yaml_1_1_and_1_2(path: Path) -> None:
    text = path.read_text()
    old = list(yaml.load_all(text, Loader=yamlspec.Yaml11Loader))
    new = manifests.parse(text)
    difference = first_difference(old, new)
    assert difference is None, f"{path.relative_to(ROOT)}: {difference}"


def test_first_difference_names_the_key_path() -> None:
    text = "spec:\n  tasks:\n  - retry: {limit: 1, reasons: [Failed]}\n    image: x\n    tag: n\n"
    old = yaml.load(text, Loader=yamlspec.Yaml11Loader)
    assert first_difference(old, manifests.parse(text)[0]) == (
        ".spec.tasks[0].tag: YAML 1.1 reads False, YAML 1.2 reads 'n'"
    )


def test_crd_dumper_quotes_what_either_version_misreads() -> None:
    data = {word: [word, {"required": [word]}] for word in [*MISREAD, "plain", "python:3.12"]}
    text = yaml.dump(data, Dumper=yamlspec.Dumper, sort_keys=False)
    assert yaml.load(text, Loader=yamlspec.Yaml11Loader) == data
    assert manifests.parse(text) == [data]
    assert '"n":\n- "n"\n- required:\n  - "n"' in text
    assert "\nplain:\n- plain\n" in text  # and nothing else is quoted


def test_generated_crds_quote_the_misread_scalars() -> None:
    for name, text in crd.render().items():
        assert yaml.load(text, Loader=yamlspec.Yaml11Loader) == manifests.parse(text)[0], name


# --- kopflow validate --------------------------------------------------------------------------

WORKFLOW = """\
apiVersion: kopflow.dev/v1alpha1
kind: Workflow
metadata: {{name: w}}
spec:
  parameters:
  - {{name: mode, default: {default}}}
  taskDefaults: {{image: {image}}}
  tasks:
  - name: a
    command: [echo]
    env: [{{name: DEBUG, value: {env}}}]
    retry: {{limit: 1, {retry_key}: [Failed], backoff: {{seconds: 1.5}}}}
    timeoutSeconds: {timeout}
  schedule: {{cron: "0 3 * * *", suspend: {suspend}}}
"""
GOOD = {
    "default": '"no"',
    "image": '"python:3.12"',
    "env": '"yes"',
    "retry_key": "reasons",
    "timeout": "600",
    "suspend": "false",
}


def issues(tmp_path: Path, **change: str) -> list[str]:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW.format(**{**GOOD, **change}))
    (doc,) = manifests.load(path)
    return [str(i) for i in manifests.with_yaml_issues(doc, validate_document(doc.body))]


def test_quoted_manifest_is_valid(tmp_path: Path) -> None:
    assert issues(tmp_path) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"default": "no"},
            "spec.parameters[0].default: YAML 1.1 (kubectl, Helm) reads no as the boolean false, "
            'YAML 1.2 (kopflow) as the string "no" (line 6); quote it: "no"',
        ),
        (
            {"env": "yes"},
            "spec.tasks[0].env[0].value: YAML 1.1 (kubectl, Helm) reads yes as the boolean true, "
            'YAML 1.2 (kopflow) as the string "yes" (line 11); quote it: "yes"',
        ),
        (
            {"image": "1.10"},
            "spec.taskDefaults.image: YAML reads 1.10 as the number 1.1 but this field is a "
            'string (line 7); quote it: "1.10"',
        ),
        (
            {"suspend": "yes"},
            "spec.schedule.suspend: YAML 1.1 (kubectl, Helm) reads yes as the boolean true, "
            'YAML 1.2 (kopflow) as the string "yes" (line 14); write true or false',
        ),
        (
            {"timeout": "0600"},
            "spec.tasks[0].timeoutSeconds: YAML 1.1 (kubectl, Helm) reads 0600 as the number 384, "
            "YAML 1.2 (kopflow) as the number 600 (line 13); write the number in plain decimal",
        ),
    ],
    ids=["default-no", "env-yes", "image-1.10", "bool-yes", "octal"],
)
def test_values_yaml_1_1_reads_differently_are_refused(
    tmp_path: Path, change: dict[str, str], expected: str
) -> None:
    assert issues(tmp_path, **change) == [expected]


def test_bare_on_key_is_refused_with_the_new_name(tmp_path: Path) -> None:
    assert issues(tmp_path, retry_key="on") == [
        "spec.tasks[0].retry.on: renamed to retry.reasons in v1alpha1 (line 12)"
    ]


def test_quoted_on_key_is_refused_with_the_new_name_by_validate_and_operator(
    tmp_path: Path,
) -> None:
    assert issues(tmp_path, retry_key='"on"') == [
        "spec.tasks[0].retry.on: renamed to retry.reasons in v1alpha1"
    ]
    body = manifests.parse(WORKFLOW.format(**{**GOOD, "retry_key": '"on"'}))[0]
    assert [str(i) for i in operator_issues(body["spec"])] == [
        "spec.tasks[0].retry.on: renamed to retry.reasons in v1alpha1"
    ]


def test_other_keys_yaml_1_1_misreads_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    text = WORKFLOW.format(**GOOD).replace(
        "command: [echo]", "command: [echo]\n    nodeSelector: {y: a, 'n': b}"
    )
    path.write_text(text)
    (doc,) = manifests.load(path)
    assert [str(i) for i in doc.yaml_issues] == [
        "spec.tasks[0].nodeSelector.y: YAML 1.1 (kubectl, Helm) reads the key y as the boolean "
        'true (line 11); quote it: "y"'
    ]


def test_kopflow_validate_names_file_path_and_fix(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW.format(**{**GOOD, "retry_key": "on", "env": "off"}))
    result = subprocess.run(
        [sys.executable, "-m", "kopflow", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{path}#1 (Workflow w): invalid",
        "  spec.tasks[0].env[0].value: YAML 1.1 (kubectl, Helm) reads off as the boolean false, "
        'YAML 1.2 (kopflow) as the string "off" (line 11); quote it: "off"',
        "  spec.tasks[0].retry.on: renamed to retry.reasons in v1alpha1 (line 12)",
    ]
