"""`kopflow run` end to end: real processes, real exit codes, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"


def run_argv(tmp_path: Path, *args: str) -> list[str]:
    """`kopflow run` with an isolated cache and log directory and json status on stdout."""
    cache, logs = str(tmp_path / "cache"), str(tmp_path / "logs")
    return [sys.executable, "-m", "kopflow", "run", "--output", "json", "--cache-dir", cache,
            "--logs-dir", logs, *args]  # fmt: skip


def kopflow_run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        run_argv(tmp_path, *args),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def status_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stdout, result.stderr
    return json.loads(result.stdout)["status"]  # type: ignore[no-any-return]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.parametrize(
    ("files", "tasks"),
    [
        (["hello.yaml"], 1),
        (["etl.yaml"], 5),
        (["etl.yaml", "etl-run.yaml"], 5),
        (["flaky.yaml"], 2),
        (["cron.yaml"], 1),
    ],
)
def test_every_example_succeeds(tmp_path: Path, files: list[str], tasks: int) -> None:
    result = kopflow_run(tmp_path, *(str(EXAMPLES / f) for f in files))
    assert result.returncode == 0, result.stderr
    status = status_of(result)
    assert status["phase"] == "Succeeded"
    assert status["progress"] == f"{tasks}/{tasks}"


def test_etl_passes_outputs_downstream_and_honours_when(tmp_path: Path) -> None:
    result = kopflow_run(
        tmp_path, str(EXAMPLES / "etl.yaml"), "-p", "date=2026-03-01", "-p", "mode=incremental"
    )
    status = status_of(result)
    tasks = status["tasks"]
    rows = int(tasks["extract"]["outputs"]["rows"])
    assert tasks["clean"]["outputs"] == {"rows": str(rows * 9 // 10)}
    assert tasks["vacuum"]["phase"] == "Skipped" and tasks["vacuum"]["reason"] == "WhenFalse"
    load_log = (tmp_path / "logs" / f"{tasks['load']['jobName']}.log").read_text()
    assert load_log == f"loading {rows * 9 // 10} rows x 12 columns in incremental mode\n"


def test_flaky_task_succeeds_on_its_third_attempt_after_backoff(tmp_path: Path) -> None:
    status = status_of(kopflow_run(tmp_path, str(EXAMPLES / "flaky.yaml")))
    task = status["tasks"]["unreliable"]
    assert task["phase"] == "Succeeded" and task["attempts"] == 3
    history = task["history"]
    assert [a["exitCode"] for a in history] == [3, 3, 0]
    # backoff 1s then 2s: the third attempt cannot start before 3s after the first finished
    from kopflow.engine.times import parse_time

    gap = parse_time(history[2]["startedAt"]) - parse_time(history[0]["finishedAt"])
    assert gap.total_seconds() >= 3 - 1  # whole-second timestamps


def test_timeout_kills_the_process_group_and_fails(tmp_path: Path) -> None:
    marker = tmp_path / "survivor"
    wf = write(
        tmp_path,
        f"""
        apiVersion: kopflow.dev/v1alpha1
        kind: Workflow
        metadata: {{name: slow}}
        spec:
          tasks:
            - name: sleepy
              timeoutSeconds: 1
              script:
                command: [python3]
                source: |
                  import subprocess, sys, time
                  subprocess.Popen([sys.executable, "-c",
                      "import time; time.sleep(4); open({str(marker)!r}, 'w').write('x')"])
                  time.sleep(60)
        """,
    )
    started = time.monotonic()
    result = kopflow_run(tmp_path, wf)
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    status = status_of(result)
    assert status["phase"] == "Failed"
    assert status["tasks"]["sleepy"]["reason"] == "Timeout"
    assert "sleepy" in status["message"]
    time.sleep(5)  # the grandchild would have written the marker by now had it survived
    assert not marker.exists()


def test_failing_dag_runs_on_failure_handlers_then_fails(tmp_path: Path) -> None:
    wf = write(
        tmp_path,
        """
        apiVersion: kopflow.dev/v1alpha1
        kind: Workflow
        metadata: {name: broken}
        spec:
          tasks:
            - {name: ok, command: [python3, -c, "print('fine')"]}
            - name: boom
              dependsOn: [ok]
              command: [python3, -c, "import sys; print('kaput'); sys.exit(4)"]
            - {name: after, dependsOn: [boom], command: [python3, -c, "print('never')"]}
          onFailure:
            - {name: notify, command: [python3, -c, "print('paging')"]}
        """,
    )
    result = kopflow_run(tmp_path, wf)
    assert result.returncode == 1
    status = status_of(result)
    tasks = status["tasks"]
    assert status["phase"] == "Failed" and "boom" in status["message"]
    assert tasks["boom"]["phase"] == "Failed" and tasks["boom"]["exitCode"] == 4
    assert tasks["after"]["phase"] == "Skipped" and tasks["after"]["reason"] == "UpstreamFailed"
    assert tasks["notify"]["phase"] == "Succeeded"
    assert "| kaput" in result.stderr  # the failed task's last log lines are shown


def test_second_run_is_a_cache_hit_unless_no_cache(tmp_path: Path) -> None:
    first = status_of(kopflow_run(tmp_path, str(EXAMPLES / "etl.yaml")))
    assert not first["tasks"]["extract"].get("cached")
    second = status_of(kopflow_run(tmp_path, str(EXAMPLES / "etl.yaml")))
    assert second["tasks"]["extract"]["cached"] is True
    assert second["tasks"]["extract"]["outputs"] == first["tasks"]["extract"]["outputs"]
    assert second["tasks"]["extract"]["attempts"] == 0
    third = status_of(kopflow_run(tmp_path, str(EXAMPLES / "etl.yaml"), "--no-cache"))
    assert not third["tasks"]["extract"].get("cached")


ENV_FROM = """
    apiVersion: kopflow.dev/v1alpha1
    kind: Workflow
    metadata: {name: creds}
    spec:
      tasks:
        - name: use
          envFrom: [{secretRef: {name: warehouse}}]
          command: [python3, -c, "import os; print('user=' + os.environ['WH_USER'])"]
"""


def test_missing_env_file_secret_is_a_clear_error_before_anything_starts(tmp_path: Path) -> None:
    result = kopflow_run(tmp_path, write(tmp_path, ENV_FROM))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        'spec.tasks[0].envFrom[0].secretRef: "warehouse" is not available locally; pass '
        "--env-file warehouse=PATH (a file of KEY=VALUE lines)"
    )
    assert not (tmp_path / "logs").exists()


def test_env_file_provides_the_secret(tmp_path: Path) -> None:
    env_file = tmp_path / "warehouse.env"
    env_file.write_text("WH_USER=etl\n")
    result = kopflow_run(tmp_path, write(tmp_path, ENV_FROM), "--env-file", str(env_file))
    status = status_of(result)
    log = (tmp_path / "logs" / f"{status['tasks']['use']['jobName']}.log").read_text()
    assert log == "user=etl\n"


def test_injection_in_a_parameter_stays_one_literal_argument(tmp_path: Path) -> None:
    evil = "x'; touch pwned; echo '$(id) `id` {{ run.name }}"
    result = kopflow_run(tmp_path, str(EXAMPLES / "hello.yaml"), "-p", f"who={evil}")
    status = status_of(result)
    log = (tmp_path / "logs" / f"{status['tasks']['greet']['jobName']}.log").read_text()
    assert log == f"hello, {evil}\n"
    assert not (Path.cwd() / "pwned").exists()


def test_invalid_input_exits_two_with_messages(tmp_path: Path) -> None:
    result = kopflow_run(tmp_path, str(EXAMPLES / "etl.yaml"), "-p", "mode=sometimes")
    assert result.returncode == 2
    assert 'spec.parameters.mode: "sometimes" is not an allowed value' in result.stderr
    result = kopflow_run(tmp_path, str(EXAMPLES / "etl-run.yaml"))
    assert result.returncode == 2
    assert "Workflow 'etl' is not in the input" in result.stderr


def test_ctrl_c_cancels_the_run_and_stops_its_processes(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    wf = write(
        tmp_path,
        f"""
        apiVersion: kopflow.dev/v1alpha1
        kind: Workflow
        metadata: {{name: long}}
        spec:
          tasks:
            - name: forever
              script:
                command: [python3]
                source: |
                  import os, time
                  open({str(pidfile)!r}, "w").write(str(os.getpid()))
                  time.sleep(120)
            - {{name: later, dependsOn: [forever], command: [python3, -c, "print(1)"]}}
        """,
    )
    proc = subprocess.Popen(
        run_argv(tmp_path, wf),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    task_pid = int(pidfile.read_text())
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    status = json.loads(out)["status"]
    assert status["phase"] == "Cancelled"
    assert status["tasks"]["forever"]["phase"] == "Cancelled"
    assert status["tasks"]["later"]["phase"] == "Cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(task_pid, 0)


def test_a_terminal_gets_the_live_table(tmp_path: Path) -> None:
    """Under a pseudo-terminal the runner draws a rich table instead of log lines."""
    import pty

    out = bytearray()

    def read(fd: int) -> bytes:
        data = os.read(fd, 4096)
        out.extend(data)
        return data

    argv = [sys.executable, "-m", "kopflow", "run", "--cache-dir", str(tmp_path / "c"),
            "--logs-dir", str(tmp_path / "l"), str(EXAMPLES / "etl.yaml")]  # fmt: skip
    status = pty.spawn(argv, read)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))
    assert os.waitstatus_to_exitcode(status) == 0
    assert "┃ task" in text and "phase" in text and "Succeeded" in text
    assert "run etl-" in text and " Succeeded in " in text


def test_podman_runtime_fails_clearly_without_podman(tmp_path: Path) -> None:
    result = kopflow_run(
        tmp_path, "--runtime", "podman", str(EXAMPLES / "hello.yaml"), env={"PATH": "/nonexistent"}
    )
    assert result.returncode == 2
    assert "--runtime podman: podman is not installed" in result.stderr


def _volumes_flags(tmp_path: Path) -> list[str]:
    """Local stand-ins for the volumes example: env files for its Secret and ConfigMap."""
    (tmp_path / "creds.env").write_text("token=s3cret\n")
    (tmp_path / "config.env").write_text("greeting=hello\n")
    return [
        "--env-file", f"report-creds={tmp_path / 'creds.env'}",
        "--env-file", f"report-config={tmp_path / 'config.env'}",
    ]  # fmt: skip


def test_volumes_example_reads_secret_and_config_files_and_writes_the_pvc_folder(
    tmp_path: Path,
) -> None:
    out = tmp_path / "report"
    result = kopflow_run(
        tmp_path, str(EXAMPLES / "volumes.yaml"), *_volumes_flags(tmp_path), "--volume",
        f"data={out}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    status = status_of(result)
    line = status["tasks"]["read"]["outputs"]["line"]
    assert re.fullmatch(r"hello from report-\w+; token as env and file agree: yes", line)
    assert (out / "report.txt").read_text() == line + "\n"  # /data was the --volume folder
    notes = [n for n in result.stderr.splitlines() if "ignored on this machine" in n]
    assert notes == [
        "ignored on this machine (cluster-only): jobTtlSecondsAfterFinished, "
        "labels/annotations, securityContext"
    ]


def test_a_pvc_without_a_local_folder_is_a_clear_error_before_anything_starts(
    tmp_path: Path,
) -> None:
    result = kopflow_run(tmp_path, str(EXAMPLES / "volumes.yaml"), *_volumes_flags(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "spec.tasks[0].volumes[0]: a persistentVolumeClaim volume needs a local folder: "
        "pass --volume data=FOLDER",
        "spec.tasks[1].volumes[0]: a persistentVolumeClaim volume needs a local folder: "
        "pass --volume data=FOLDER",
    ]
    assert not (tmp_path / "logs").exists()
