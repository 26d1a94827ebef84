"""Container logs as a kubelet keeps and serves them: what both simulated kubelets share.

A pod's process writes stdout and stderr to pipes; `capture` reads them line by line and keeps
each container instance (each restart) in its own file in the CRI log format a container runtime
writes (`<RFC3339Nano> stdout|stderr F <line>`), and appends the plain text to the pod's
`log.txt` (what `Kubelet.logs()` returns, and the FallbackToLogsOnError tail).

`serve` answers the kubelet's `GET /containerLogs/{namespace}/{pod}/{container}` as
pkg/kubelet/server (getContainerLogs) and kubelet_pods (validateContainerLogStatus) do:
`follow`, `tailLines`, `timestamps`, `previous`, `limitBytes`, `sinceSeconds`, `sinceTime`;
the same status codes and plain-text error messages. The API server (real, or the emulator's
`_pod_log`) proxies it as `pods/log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
DRAIN_SECONDS = 2.0
"""How long, after the process exited, its pipes may still deliver output (its children may
hold them open: then the rest is dropped, as the runtime's shim would keep it no longer)."""
FOLLOW_POLL = 1.0
"""A follower re-reads the file at least this often (a bound, not the signal: writes wake it)."""


def cri_time(ns: int) -> str:
    """RFC 3339 with 9 fractional digits, as the kubelet prints timestamps (RFC3339NanoFixed)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def _parse_time(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class ContainerLog:
    """One container instance's output (one run of the process), in CRI format."""

    def __init__(self, path: Path, plain: Path | None = None) -> None:
        self.path = path
        self.plain = plain
        self.done = False
        self.version = 0
        """Bumped by every write and by the end: a follower waits for it to change."""
        self.task: asyncio.Future[None] | None = None
        """The capture of the process's pipes (set by pod_process.spawn)."""
        self._wake = asyncio.Event()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def write(self, stream: str, line: bytes) -> None:
        """Record one line (without its newline) of `stream` (stdout or stderr)."""
        stamp = cri_time(time.time_ns()).encode()
        with self.path.open("ab") as f:
            f.write(stamp + b" " + stream.encode() + b" F " + line + b"\n")
        if self.plain is not None:
            with self.plain.open("ab") as f:
                f.write(line + b"\n")
        self._notify()

    def _notify(self) -> None:
        self.version += 1
        self._wake.set()
        self._wake = asyncio.Event()

    def close(self) -> None:
        """The instance has ended: followers finish once they read everything."""
        self.done = True
        self._notify()

    async def drained(self) -> None:
        """Wait until the capture has written everything (bounded by DRAIN_SECONDS after the
        process exited)."""
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self.task)
        self.close()

    async def changed(self, seen: int, timeout: float) -> None:
        """Wait until something was written or the end came after version `seen` (at most
        `timeout` seconds)."""
        if self.version != seen:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)


async def _pump(reader: asyncio.StreamReader, stream: str, log: ContainerLog) -> None:
    buffer = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            log.write(stream, line)
    if buffer:  # a last line without newline: the runtime ends it (the kubelet adds one)
        log.write(stream, buffer)


def capture(proc: asyncio.subprocess.Process, log: ContainerLog) -> asyncio.Future[None]:
    """Copy the process's stdout and stderr pipes into `log`; the task ends (and closes the log)
    when both pipes are at their end, or DRAIN_SECONDS after the process exited."""

    async def run() -> None:
        pumps = [
            asyncio.ensure_future(_pump(reader, name, log))
            for reader, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
            if reader is not None
        ]
        try:
            await proc.wait()
            _, pending = await asyncio.wait(pumps, timeout=DRAIN_SECONDS)
            for task in pending:
                task.cancel()
        finally:
            for task in pumps:
                task.cancel()
            log.close()

    return asyncio.ensure_future(run())


# -- serving --------------------------------------------------------------------------------------


class LogError(Exception):
    """A refusal: HTTP status and the plain-text body the kubelet sends."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class LogOptions:
    """v1.PodLogOptions as query parameters."""

    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_seconds: int | None = None
    since_time: str | None = None
    stream: str | None = None


def _bool(text: str) -> bool:
    """Go's strconv.ParseBool."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def _int(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax') from None


def parse_options(query: Mapping[str, str]) -> LogOptions:
    """The options of a log request; ValueError with Go's parse message on a bad value."""
    opts = LogOptions()
    for key, attr in (("follow", "follow"), ("previous", "previous"), ("timestamps", "timestamps")):
        if key in query:
            setattr(opts, attr, _bool(query[key]))
    tail = query.get("tailLines", query.get("tail"))
    if tail is not None and tail != "all":
        opts.tail_lines = _int(tail)
    for key, attr in (("limitBytes", "limit_bytes"), ("sinceSeconds", "since_seconds")):
        if key in query:
            setattr(opts, attr, _int(query[key]))
    if "sinceTime" in query:
        try:
            _parse_time(query["sinceTime"])
        except ValueError:
            raise ValueError(f'parsing time "{query["sinceTime"]}" as RFC 3339') from None
        opts.since_time = query["sinceTime"]
    opts.stream = query.get("stream")
    return opts


def invalid_options(opts: LogOptions) -> list[tuple[str, str]]:
    """(field, message) of each invalid value, in the API server's words."""
    out = []
    if opts.tail_lines is not None and opts.tail_lines < 0:
        out.append(
            ("tailLines", f"Invalid value: {opts.tail_lines}: must be greater than or equal to 0")
        )
    if opts.limit_bytes is not None and opts.limit_bytes < 1:
        out.append(("limitBytes", f"Invalid value: {opts.limit_bytes}: must be greater than 0"))
    if opts.since_seconds is not None and opts.since_time is not None:
        out.append(("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
    elif opts.since_seconds is not None and opts.since_seconds < 1:
        out.append(("sinceSeconds", f"Invalid value: {opts.since_seconds}: must be greater than 0"))
    return out


def _status_of(pod: Obj, container: str) -> Obj | None:
    status = pod.get("status") or {}
    for field in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for item in status.get(field) or []:
            if item.get("name") == container:
                return dict(item)
    return None


def choose(pod: Obj, container: str, previous: bool) -> int:
    """Which instance (restart count) of the container to read, from the pod status the kubelet
    knows; LogError 400 with the kubelet's message when there is none (as the kubelet's
    validateContainerLogStatus)."""
    name = pod["metadata"]["name"]
    found = _status_of(pod, container)
    if found is None:
        raise LogError(400, f'container "{container}" in pod "{name}" is not available')
    restarts = int(found.get("restartCount") or 0)
    state, last = found.get("state") or {}, found.get("lastState") or {}
    last_done = (last.get("terminated") or {}).get("containerID")
    if previous:
        if not last_done:
            raise LogError(
                400, f'previous terminated container "{container}" in pod "{name}" not found'
            )
        return restarts - 1
    if "running" in state:
        return restarts
    if "terminated" in state:
        if state["terminated"].get("containerID"):
            return restarts
        if last_done:
            return restarts - 1
        raise LogError(400, f'container "{container}" in pod "{name}" is terminated')
    if last_done:
        return restarts - 1
    if "waiting" in state:
        reason = state["waiting"].get("reason") or ""
        if reason == "ErrImagePull":
            reason = "image can't be pulled"
        elif reason == "ImagePullBackOff":
            reason = "trying and failing to pull image"
        raise LogError(
            400, f'container "{container}" in pod "{name}" is waiting to start: {reason}'
        )
    raise LogError(
        400, f'container "{container}" in pod "{name}" is waiting to start - no logs yet'
    )


def _lines(data: bytes) -> list[tuple[float, str, bytes, bytes]]:
    """(time, stream, stamp, content with newline) of each complete CRI line."""
    out = []
    for raw in data.split(b"\n")[:-1]:
        stamp, stream, _tag, content = [*raw.split(b" ", 3), b"", b"", b""][:4]
        try:
            when = _parse_time(stamp.decode()[:26] + "Z")
        except ValueError:
            continue
        out.append((when, stream.decode(), stamp, content + b"\n"))
    return out


async def serve(log: ContainerLog, opts: LogOptions) -> AsyncIterator[bytes]:
    """The bytes of the kubelet's answer for one container instance. With `follow`, it keeps
    reading until the instance ends (then sends what is left)."""
    since: float | None = None
    if opts.since_seconds is not None:
        since = time.time() - opts.since_seconds
    elif opts.since_time is not None:
        since = _parse_time(opts.since_time)
    budget = opts.limit_bytes
    offset = 0
    first = True
    while True:
        done, seen = log.done, log.version
        with log.path.open("rb") as f:
            f.seek(offset)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        offset += cut
        lines = _lines(data[:cut])
        lines = [x for x in lines if (since is None or x[0] >= since)]
        if opts.stream in ("Stdout", "Stderr"):
            lines = [x for x in lines if x[1] == opts.stream.lower()]
        if first and opts.tail_lines is not None:
            lines = lines[len(lines) - opts.tail_lines :] if opts.tail_lines else []
        first = False
        chunk = b"".join((s + b" " if opts.timestamps else b"") + c for _, _, s, c in lines)
        if budget is not None:
            chunk = chunk[:budget]
            budget -= len(chunk)
        if chunk:
            yield chunk
        if budget == 0 or not opts.follow or done:
            return
        await log.changed(seen, FOLLOW_POLL)
