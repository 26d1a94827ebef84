"""What the cluster commands share: running them, parameters, task order, tables, times."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kopflow.api.run import FINISHED_RUN_PHASES
from kopflow.engine import dag
from kopflow.engine.times import format_duration, parse_time

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
RUN_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Cancelled", "Invalid")


def run_command(
    args: argparse.Namespace, body: Callable[[Any], Awaitable[int]], connect: bool = True
) -> int:
    """Run `body(kube)` in an event loop, connected with the user's kubeconfig; a CliError is
    printed as `error: ...` with its exit code, Ctrl-C ends quietly with 130."""
    from kopflow.cliclient import CliError
    from kopflow.cliclient import connect as open_cluster

    async def main() -> int:
        if not connect:
            return await body(None)
        async with open_cluster(args.kubeconfig, args.context, args.namespace) as kube:
            return await body(kube)

    try:
        return asyncio.run(main())
    except CliError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """`-p name=value` flags as a dict; CliError (exit 2) for a flag without `=`."""
    from kopflow.cliclient import CliError

    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"-p {pair}: expected NAME=VALUE", EXIT_INVALID)
        out[name] = value
    return out


def check_params(workflow: str, spec: Any, given: Mapping[str, str]) -> None:
    """Refuse, before anything is created, a parameter the workflow does not declare, a value
    outside its enum, or a missing required one (CliError, exit 2, naming the parameter)."""
    from kopflow.cliclient import CliError
    from kopflow.engine.params import resolve_parameters
    from kopflow.engine.render import run_values

    declared = [p.name for p in spec.parameters or ()]
    allowed = ", ".join(declared) if declared else "none"
    for name in given:
        if name not in declared:
            raise CliError(
                f'-p {name}: workflow "{workflow}" has no parameter "{name}" (its parameters: '
                f"{allowed})",
                EXIT_INVALID,
            )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _, issues = resolve_parameters(spec, given, run_values("check", "check", None, now))
    if issues:
        lines = []
        for issue in issues:
            name = issue.path.rpartition(".")[2]
            lines.append(f"-p {name}: {issue.message}")
        raise CliError("; ".join(lines), EXIT_INVALID)


def task_order(workflow: Mapping[str, Any] | None, tasks: Mapping[str, Any]) -> list[str]:
    """Task names in dependency order (the operator's start order: topological, ties in
    declaration order), main tasks then onFailure, then any name the spec does not know.

    The API server does not keep the key order of status.tasks, so it is rebuilt here."""
    order: list[str] = []
    for key in ("tasks", "onFailure"):
        group = (workflow or {}).get(key) or []
        deps = {t["name"]: list(t.get("dependsOn") or ()) for t in group if "name" in t}
        if dag.find_cycle(deps) is None:
            order += dag.topological_order(deps)
        else:
            order += list(deps)
    seen = set(order)
    return order + sorted(n for n in tasks if n not in seen)


def ordered_tasks(run: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, task status) of a run's tasks in dependency order; tasks not started yet
    appear as Pending."""
    status = run.get("status") or {}
    tasks = status.get("tasks") or {}
    workflow = status.get("workflow") or (run.get("spec") or {}).get("workflow")
    names = task_order(workflow, tasks)
    return [(n, tasks.get(n) or {"phase": "Pending"}) for n in names]


def now() -> datetime:
    return datetime.now(UTC)


def span(started: str | None, finished: str | None, at: datetime | None = None) -> str:
    """How long from started to finished (or to now), as status shows durations."""
    if not started:
        return ""
    end = parse_time(finished) if finished else (at or now())
    return format_duration((end - parse_time(started)).total_seconds())


def age(created: str | None, at: datetime | None = None) -> str:
    if not created:
        return ""
    return format_duration(((at or now()) - parse_time(created)).total_seconds())


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned with two spaces, as kubectl prints them."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = []
    for row in [list(headers), *rows]:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def finished(run: Mapping[str, Any]) -> bool:
    return ((run.get("status") or {}).get("phase")) in FINISHED_RUN_PHASES


def exit_code(phase: str | None) -> int:
    """As `kopflow run`: 0 Succeeded, 1 Failed or Cancelled, 2 Invalid."""
    if phase == "Succeeded":
        return EXIT_OK
    return EXIT_INVALID if phase == "Invalid" else EXIT_FAILED


def workflow_of(run: Mapping[str, Any]) -> str:
    """The Workflow a run belongs to: its workflowRef, else the workflow label, else ""."""
    from kopflow.engine.schedule import WORKFLOW_LABEL

    ref = ((run.get("spec") or {}).get("workflowRef") or {}).get("name")
    labels = (run.get("metadata") or {}).get("labels") or {}
    return str(ref or labels.get(WORKFLOW_LABEL) or "")
