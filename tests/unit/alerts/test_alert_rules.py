"""The shipped alerts (helm/kopflow/files/alerts.yaml) pass Prometheus' own checks, each has a
promtool unit test firing and not firing, and each links to its runbook section."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.prometheus import tool

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "helm" / "kopflow" / "files" / "alerts.yaml"
UNIT_TESTS = Path(__file__).with_name("alerts_test.yaml")
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def test_promtool_checks_the_rules() -> None:
    done = subprocess.run(
        [tool("promtool"), "check", "rules", str(ALERTS)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    done = subprocess.run(
        [tool("promtool"), "test", "rules", str(UNIT_TESTS)],
        capture_output=True,
        text=True,
        cwd=UNIT_TESTS.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = [
        case
        for group in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for case in group.get("alert_rule_test", ())
    ]
    for rule in rules():
        name = rule["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no test where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no test where it is quiet"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_alert_says_how_bad_what_and_where_to_read(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("warning", "critical")
    notes = rule["annotations"]
    assert notes["summary"] and notes["description"]
    url, _, anchor = notes["runbook_url"].partition("#")
    assert url.endswith("/docs/runbooks.md") and anchor == rule["alert"].lower()
    headings = re.findall(r"^## (\S+)", RUNBOOKS.read_text(), re.MULTILINE)
    assert rule["alert"] in headings, f"docs/runbooks.md has no section ## {rule['alert']}"
    section = RUNBOOKS.read_text().split(f"## {rule['alert']}\n", 1)[1].split("\n## ", 1)[0]
    for part in ("Meaning", "Impact", "Diagnosis", "Fix"):
        assert f"**{part}**" in section, f"{rule['alert']}: runbook lacks {part}"
    assert "kubectl" in section
