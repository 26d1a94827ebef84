"""The Grafana dashboard the chart ships is a dashboard: JSON with panels that query kopflow.

That every metric it queries exists is checked against the operator's own /metrics output in
tests/integration/operator/test_metrics.py."""

from __future__ import annotations

import json
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "kopflow" / "files" / "dashboard.json"


def test_dashboard_is_grafana_json_with_a_query_in_every_panel() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["title"] == "kopflow" and board["uid"]
    for panel in board["panels"]:
        exprs = [t["expr"] for t in panel["targets"]]
        assert exprs, panel["title"]
        assert all("kopflow_" in e or 'up{job="kopflow-operator"}' in e for e in exprs)
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables
