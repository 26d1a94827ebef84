"""`kopflow run --metrics-port` serves the operator's metrics for the local run while it runs."""

from __future__ import annotations

import socket
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from tests.integration.local.test_kopflow_run import kopflow_run, status_of


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_serves_metrics_while_it_runs(tmp_path: Path) -> None:
    port, seen = free_port(), tmp_path / "seen.txt"
    manifest = tmp_path / "wf.yaml"
    manifest.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: kopflow.dev/v1alpha1
            kind: Workflow
            metadata: {{name: nightly}}
            spec:
              tasks:
                - name: flaky
                  retry: {{limit: 1, backoff: {{seconds: 0}}}}
                  command: [{sys.executable}, -c,
                            "import os; raise SystemExit(os.environ['KOPFLOW_ATTEMPT'] == '1')"]
                - name: scrape
                  dependsOn: [flaky]
                  command: [{sys.executable}, -c, "import sys, urllib.request as u;
                    open(sys.argv[1], 'wb').write(u.urlopen(sys.argv[2]).read())"]
                  args: ["{seen}", "http://127.0.0.1:{port}/metrics"]
            """
        )
    )
    result = kopflow_run(tmp_path, str(manifest), "--metrics-port", str(port))
    assert status_of(result)["phase"] == "Succeeded", result.stderr
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(seen.read_text())
        for s in family.samples
    }
    wf = (("namespace", "local"), ("workflow", "nightly"))

    def at(name: str, *labels: tuple[str, str]) -> float | None:
        return values.get((name, tuple(sorted((*wf, *labels)))))

    assert at("kopflow_task_attempts_total", ("result", "failed"), ("task", "flaky")) == 1
    assert at("kopflow_task_attempts_total", ("result", "succeeded"), ("task", "flaky")) == 1
    assert at("kopflow_task_retries_total", ("task", "flaky")) == 1
    assert at("kopflow_runs_active") == 1  # the scrape ran inside the run
    assert values[("kopflow_leader", ())] == 1
