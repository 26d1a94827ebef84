"""Run task attempts as local processes, each in its own process group.

Never through a shell: argv goes to exec directly, a script's source goes to the interpreter's
standard input. Stopping an attempt signals its whole group, so children die with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

OUTPUTS_READ_LIMIT = 64 * 1024
"""Read at most this much of an outputs file; the engine rejects anything over 4 KiB anyway."""


@dataclass(frozen=True)
class ProcessSpec:
    """One attempt, fully rendered: what to exec, with which environment and input."""

    job_name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    outputs_path: Path
    stdin: str | None = None


@dataclass
class ProcessResult:
    """What happened to one attempt, as far as the process table can tell."""

    started_at: datetime
    finished_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    stopped: bool = False
    outputs: str = ""
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.finished_at is None


@dataclass
class _Attempt:
    spec: ProcessSpec
    result: ProcessResult
    process: asyncio.subprocess.Process | None = None
    waiter: asyncio.Task[None] | None = None
    killer: asyncio.Task[None] | None = field(default=None, repr=False)


class ProcessExecutor:
    """Starts, stops and watches attempts; `changed` is set whenever one finishes."""

    def __init__(self, kill_grace_seconds: float = 3.0) -> None:
        self.kill_grace_seconds = kill_grace_seconds
        self.changed = asyncio.Event()
        self._attempts: dict[str, _Attempt] = {}
        self._dirs: set[Path] = set()

    def results(self) -> dict[str, ProcessResult]:
        """Every attempt started so far, by job name."""
        return {name: a.result for name, a in self._attempts.items()}

    async def start(self, spec: ProcessSpec) -> None:
        """Start an attempt; starting a job name twice is a no-op (like a 409 on a cluster)."""
        if spec.job_name in self._attempts:
            return
        for directory in {spec.log_path.parent, spec.outputs_path.parent} - self._dirs:
            directory.mkdir(parents=True, exist_ok=True)
            self._dirs.add(directory)
        with contextlib.suppress(FileNotFoundError):
            spec.outputs_path.unlink()  # a stale file from an earlier run must not count
        attempt = _Attempt(spec, ProcessResult(started_at=_now()))
        self._attempts[spec.job_name] = attempt
        with spec.log_path.open("wb") as log:
            try:
                attempt.process = await asyncio.create_subprocess_exec(
                    *spec.argv,
                    stdin=asyncio.subprocess.PIPE if spec.stdin is not None else None,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    env=spec.env,
                    start_new_session=True,
                )
            except OSError as err:
                attempt.result.error = f"cannot start {spec.argv[0]!r}: {err.strerror or err}"
                attempt.result.exit_code = 127
                attempt.result.finished_at = _now()
                log.write(f"kopflow: {attempt.result.error}\n".encode())
                self.changed.set()
                return
        attempt.waiter = asyncio.create_task(self._wait(attempt))

    async def _wait(self, attempt: _Attempt) -> None:
        process = attempt.process
        assert process is not None
        if attempt.spec.stdin is not None and process.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.write(attempt.spec.stdin.encode())
                await process.stdin.drain()
            process.stdin.close()
        code = await process.wait()
        self._kill_group(process.pid, signal.SIGKILL)  # leftovers of a finished leader
        result = attempt.result
        result.finished_at = _now()
        if code < 0:
            result.signal = -code
            result.exit_code = 128 - code
        else:
            result.exit_code = code
        with contextlib.suppress(OSError), attempt.spec.outputs_path.open("rb") as out:
            result.outputs = out.read(OUTPUTS_READ_LIMIT).decode("utf-8", "replace")
        if attempt.killer is not None:
            attempt.killer.cancel()
        self.changed.set()

    def stop(self, job_name: str) -> None:
        """SIGTERM the attempt's process group, SIGKILL it after the grace period."""
        attempt = self._attempts.get(job_name)
        if attempt is None or attempt.process is None or not attempt.result.running:
            return
        attempt.result.stopped = True
        self._kill_group(attempt.process.pid, signal.SIGTERM)
        if attempt.killer is None:
            attempt.killer = asyncio.create_task(self._kill_later(attempt.process.pid))

    async def _kill_later(self, pgid: int) -> None:
        await asyncio.sleep(self.kill_grace_seconds)
        self._kill_group(pgid, signal.SIGKILL)

    @staticmethod
    def _kill_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    async def shutdown(self) -> None:
        """Stop everything still running and wait until it is gone."""
        for name, attempt in self._attempts.items():
            if attempt.result.running:
                self.stop(name)
        waiters = [a.waiter for a in self._attempts.values() if a.waiter is not None]
        if waiters:
            await asyncio.gather(*waiters, return_exceptions=True)
        for attempt in self._attempts.values():
            if attempt.killer is not None:
                attempt.killer.cancel()


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
