"""The local process executor: exec without a shell, process groups, outputs, stop."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from kopflow.executors.process import ProcessExecutor, ProcessSpec


def spec(tmp_path: Path, name: str, argv: list[str], stdin: str | None = None) -> ProcessSpec:
    env = {"PATH": os.environ["PATH"], "KOPFLOW_OUTPUTS": str(tmp_path / f"{name}.out")}
    return ProcessSpec(
        job_name=name,
        argv=argv,
        env=env,
        log_path=tmp_path / f"{name}.log",
        outputs_path=tmp_path / f"{name}.out",
        stdin=stdin,
    )


async def wait_done(executor: ProcessExecutor, name: str, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while executor.results()[name].running:
            executor.changed.clear()
            await executor.changed.wait()


async def test_argv_is_not_shell_interpreted_and_outputs_are_read(tmp_path: Path) -> None:
    executor = ProcessExecutor()
    evil = "$(touch pwned); `id`; rm -rf /"
    code = (
        "import os, sys; print(sys.argv[1]);"
        "open(os.environ['KOPFLOW_OUTPUTS'], 'w').write('arg=' + sys.argv[1] + '\\n')"
    )
    await executor.start(spec(tmp_path, "a", [sys.executable, "-c", code, evil]))
    await wait_done(executor, "a")
    result = executor.results()["a"]
    assert result.exit_code == 0
    assert result.outputs == f"arg={evil}\n"
    assert (tmp_path / "a.log").read_text() == evil + "\n"
    assert not (Path.cwd() / "pwned").exists()


async def test_script_source_goes_to_stdin_and_exit_code_is_kept(tmp_path: Path) -> None:
    executor = ProcessExecutor()
    await executor.start(spec(tmp_path, "s", [sys.executable], stdin="import sys; sys.exit(7)"))
    await wait_done(executor, "s")
    assert executor.results()["s"].exit_code == 7


async def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    executor = ProcessExecutor(kill_grace_seconds=0.5)
    pidfile = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time;"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid)); print('ready', flush=True);"
        "time.sleep(60)"
    )
    await executor.start(spec(tmp_path, "g", [sys.executable, "-c", code]))
    async with asyncio.timeout(20):
        while not pidfile.exists() or not pidfile.read_text():
            await asyncio.sleep(0.05)
    child = int(pidfile.read_text())
    executor.stop("g")
    await wait_done(executor, "g")
    result = executor.results()["g"]
    assert result.stopped and result.signal is not None
    async with asyncio.timeout(10):
        while _alive(child):
            await asyncio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[1][0] != "Z"


async def test_missing_executable_fails_the_attempt_clearly(tmp_path: Path) -> None:
    executor = ProcessExecutor()
    await executor.start(spec(tmp_path, "m", ["/nonexistent/tool", "x"]))
    result = executor.results()["m"]
    assert result.exit_code == 127 and result.error is not None
    assert "/nonexistent/tool" in result.error
    assert "cannot start" in (tmp_path / "m.log").read_text()


async def test_starting_twice_is_harmless(tmp_path: Path) -> None:
    executor = ProcessExecutor()
    s = spec(tmp_path, "t", [sys.executable, "-c", "print('once')"])
    await executor.start(s)
    await executor.start(s)
    await wait_done(executor, "t")
    assert (tmp_path / "t.log").read_text() == "once\n"
