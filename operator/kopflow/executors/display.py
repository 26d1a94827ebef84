"""What `kopflow run` shows while it runs: a live table on a terminal, plain lines otherwise."""

from __future__ import annotations

from datetime import datetime
from typing import IO, Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kopflow.api.run import TaskStatus, WorkflowRunStatus
from kopflow.engine.times import format_duration, parse_time

PHASE_STYLE = {
    "Pending": "dim",
    "Running": "cyan",
    "Retrying": "yellow",
    "Succeeded": "green",
    "Failed": "red",
    "Skipped": "dim",
    "Cancelled": "magenta",
}


class Display(Protocol):
    """Receives every status the runner computes, and free-form notes."""

    def update(self, status: WorkflowRunStatus, now: datetime) -> None: ...

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...


def _seconds(task: TaskStatus, now: datetime) -> str:
    if not task.started_at:
        return ""
    end = parse_time(task.finished_at) if task.finished_at else now
    return format_duration((end - parse_time(task.started_at)).total_seconds())


def _detail(task: TaskStatus) -> str:
    if task.phase == "Retrying" and task.next_retry_at:
        return f"retry at {task.next_retry_at[11:19]} ({task.reason or 'failed'})"
    if task.phase in ("Failed", "Skipped", "Cancelled") and (task.reason or task.message):
        return " ".join(x for x in (task.reason, task.message) if x)
    return ""


class PlainDisplay:
    """One timestamped line per task phase change: made for logs and CI."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._seen: dict[str, tuple[str, int]] = {}

    def update(self, status: WorkflowRunStatus, now: datetime) -> None:
        for name, task in (status.tasks or {}).items():
            key = (task.phase, task.attempts)
            if self._seen.get(name) == key:
                continue
            self._seen[name] = key
            if task.phase == "Pending":
                continue
            parts = [f"{now:%H:%M:%S}", f"{name:<20}", f"{task.phase:<9}"]
            if task.attempts:
                parts.append(f"attempt {task.attempts}")
            if task.cached:
                parts.append("(cached)")
            elif task.reused:
                parts.append("(reused)")
            if task.finished_at:
                parts.append(_seconds(task, now))
            if detail := _detail(task):
                parts.append(f"- {detail}")
            self.out.write("  ".join(parts).rstrip() + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class LiveDisplay:
    """A rich table of every task, redrawn in place on a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live = Live(Table(), console=console, refresh_per_second=8, transient=False)
        self._live.start()

    def update(self, status: WorkflowRunStatus, now: datetime) -> None:
        table = Table(title=f"run {status.phase or 'Pending'}  {status.progress or ''}")
        for column in ("task", "phase", "attempt", "duration", "cached", "detail"):
            table.add_column(column)
        for name, task in (status.tasks or {}).items():
            table.add_row(
                name,
                Text(task.phase, style=PHASE_STYLE.get(task.phase, "")),
                str(task.attempts or ""),
                _seconds(task, now),
                "yes" if task.cached else "reused" if task.reused else "",
                _detail(task),
            )
        self._live.update(table, refresh=True)

    def note(self, text: str) -> None:
        self._live.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        self._live.stop()
