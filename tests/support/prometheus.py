"""Debian's Prometheus, Alertmanager and promtool for the tests, on 127.0.0.1 only.

`make test` installs them (the `prometheus` and `prometheus-alertmanager` packages). Without
them the tests that need them skip with the reason, except under KOPFLOW_REQUIRE_REAL_API=1
(`.ci/run`), where they fail: CI must run them.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.control_plane import required

READY_TIMEOUT = 30.0


def tool(name: str) -> str:
    """The path of a Prometheus tool, or skip (fail in CI) naming the package to install."""
    path = shutil.which(name)
    if path is None:
        why = (
            f"{name} is not installed: apt-get install prometheus prometheus-alertmanager "
            "(make system-deps)"
        )
        if required():
            pytest.fail(why)
        pytest.skip(why)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daemon:
    """One Prometheus or Alertmanager process on a free loopback port, in its own temp dir."""

    def __init__(self, program: str, workdir: Path, config: dict[str, Any], *flags: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "log"
        config_file = workdir / "config.yaml"
        config_file.write_text(yaml.safe_dump(config))
        args = [
            tool(program),
            f"--config.file={config_file}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *(f.format(dir=workdir) for f in flags),
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)

    def wait_ready(self) -> None:
        """Poll /-/ready (nothing to await: the daemon has no other signal), bounded."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.proc.args[0]} exited:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.url} not ready in {READY_TIMEOUT}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def alertmanager(workdir: Path, webhook: str) -> Daemon:
    """Alertmanager sending every alert at once to one webhook; gossip off."""
    config = {
        "route": {
            "receiver": "hook",
            "group_by": ["alertname", "namespace", "workflow"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "hook", "webhook_configs": [{"url": webhook}]}],
    }
    return Daemon(
        "prometheus-alertmanager",
        workdir,
        config,
        "--storage.path={dir}/data",
        "--cluster.listen-address=",
    )


def prometheus(workdir: Path, rules: Path, targets: list[str], alertmanager_url: str) -> Daemon:
    """Prometheus scraping `targets` as job kopflow-operator every second, evaluating `rules`
    every second and resending firing alerts every second."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}
            ]
        },
        "scrape_configs": [
            {"job_name": "kopflow-operator", "static_configs": [{"targets": targets}]}
        ],
    }
    return Daemon(
        "prometheus",
        workdir,
        config,
        "--storage.tsdb.path={dir}/data",
        "--rules.alert.resend-delay=1s",
    )


class Webhook:
    """An Alertmanager webhook receiver on 127.0.0.1: keeps every alert, and sets `arrived`
    when one matches the predicate."""

    def __init__(self, match: Callable[[dict[str, Any]], bool]) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                for alert in body.get("alerts", []):
                    hook.alerts.append(alert)
                    if match(alert):
                        hook.arrived.set()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
