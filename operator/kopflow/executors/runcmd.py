"""The `kopflow run` command: pick the document, validate, run, report, exit 0/1/2."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from kopflow import manifests, metrics
from kopflow.api.workflow import WorkflowSpec
from kopflow.engine.params import resolve_parameters
from kopflow.engine.render import run_values
from kopflow.engine.schedule import slot_text
from kopflow.engine.times import format_time
from kopflow.engine.validation import Issue, parse_run, parse_workflow
from kopflow.executors.display import Display, LiveDisplay, PlainDisplay
from kopflow.executors.envfiles import EnvFileError, load_env_files
from kopflow.executors.local import (
    LocalRun,
    RunOptions,
    missing_sources,
    podman_problems,
    run_name,
)
from kopflow.executors.localvolumes import (
    VolumeFlagError,
    ignored_settings,
    parse_volume_flags,
    volume_problems,
)

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


class Invalid(Exception):
    """Input that cannot run; carries the messages to print."""

    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__("\\n".join(messages))
        self.messages = list(messages)


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise Invalid([f"-p {pair}: expected NAME=VALUE"])
        out[name] = value
    return out


def select(docs: list[manifests.Document]) -> tuple[str, WorkflowSpec, dict[str, str]]:
    """(run name base, spec, run-level parameters) of the document to run.

    A WorkflowRun wins over Workflows (its workflowRef must name one in the same input); else
    the single Workflow.
    """
    workflows: dict[str, WorkflowSpec] = {}
    runs = []
    for doc in docs:
        kind = doc.body.get("kind") if isinstance(doc.body, dict) else None
        if kind == "Workflow":
            wf, issues = parse_workflow(doc.body)
            _raise(doc, issues)
            assert wf is not None
            workflows[wf.metadata.name or ""] = wf.spec
        elif kind == "WorkflowRun":
            runs.append(doc)
        else:
            raise Invalid(
                [f"{doc.label}: unsupported kind {kind!r}; expected Workflow or WorkflowRun"]
            )
    if runs:
        doc = runs[0]
        run, issues = parse_run(doc.body)
        _raise(doc, issues)
        assert run is not None
        base = run.metadata.name or run.metadata.generate_name or "run"
        if run.spec.workflow is not None:
            return base, run.spec.workflow, dict(run.spec.parameters or {})
        ref = run.spec.workflow_ref.name if run.spec.workflow_ref else ""
        if ref not in workflows:
            raise Invalid(
                [
                    f"{doc.label}: spec.workflowRef.name: Workflow {ref!r} is not in the input; "
                    "pass a file holding both documents"
                ]
            )
        return base, workflows[ref], dict(run.spec.parameters or {})
    if len(workflows) != 1:
        found = ", ".join(sorted(workflows)) or "none"
        raise Invalid([f"expected one Workflow or a WorkflowRun, found Workflows: {found}"])
    name, spec = next(iter(workflows.items()))
    return name or "run", spec, {}


def _raise(doc: manifests.Document, issues: list[Issue]) -> None:
    issues = manifests.with_yaml_issues(doc, issues)
    if issues:
        raise Invalid([f"{doc.label}: invalid", *(f"  {i}" for i in issues)])


def _schedule_time(text: str) -> str:
    """--schedule-time as RFC 3339 (a time without offset is UTC), or Invalid naming the flag."""
    try:
        return slot_text(text)
    except ValueError as err:
        raise Invalid(
            [f'--schedule-time "{text}": {err}; use RFC 3339 such as 2026-11-28T03:00:00Z']
        ) from err


def _prepare(args: argparse.Namespace) -> tuple[LocalRun, Any]:
    try:
        docs = [doc for file in args.files for doc in manifests.load(file)]
    except manifests.ManifestError as err:
        raise Invalid([str(err)]) from err
    base, spec, given = select(docs)
    if args.parallelism is not None:
        if args.parallelism < 1:
            raise Invalid(["--parallelism must be at least 1"])
        spec = spec.model_copy(update={"parallelism": args.parallelism})
    given.update(_params(args.param))
    name = run_name(base)
    scheduled = _schedule_time(args.schedule_time) if args.schedule_time else None
    values = run_values(name, "local", scheduled, format_time(datetime.now(UTC)))
    params, issues = resolve_parameters(spec, given, values)
    try:
        sources = load_env_files(args.env_file)
    except EnvFileError as err:
        raise Invalid([str(err)]) from err
    try:
        volumes = parse_volume_flags(args.volume)
    except VolumeFlagError as err:
        raise Invalid([str(err)]) from err
    issues += missing_sources(spec, sources)
    issues += volume_problems(spec, sources, volumes)
    if issues:
        raise Invalid([str(i) for i in issues])
    if args.runtime == "podman" and (problems := podman_problems(spec)):
        raise Invalid(problems)
    options = RunOptions(
        runtime=args.runtime,
        use_cache=not args.no_cache,
        cache_dir=args.cache_dir,
        logs_dir=args.logs_dir,
        env_sources=sources,
        volumes=volumes,
        scheduled_time=scheduled,
    )
    return LocalRun(name, spec, params, options, _display(args)), params


def _display(args: argparse.Namespace) -> Display:
    stream = sys.stderr if args.output == "json" else sys.stdout
    if stream.isatty():
        return LiveDisplay(Console(file=stream))
    return PlainDisplay(stream)


async def _run(local: LocalRun, metrics_port: int = 0) -> Any:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, local.cancel)
    stop = None
    if metrics_port:
        metrics.track(local)
        stop = await metrics.serve(metrics_port, host="127.0.0.1")
    try:
        return await local.run()
    finally:
        if stop is not None:
            await stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(args: argparse.Namespace) -> int:
    """Run and return the exit code: 0 Succeeded, 1 Failed or Cancelled, 2 invalid input."""
    try:
        local, _ = _prepare(args)
    except Invalid as err:
        for line in err.messages:
            print(line, file=sys.stderr)
        return EXIT_INVALID
    if args.runtime == "process" and args.output == "text":
        local.display.note("runtime process: task images are ignored; commands run on this machine")
    ignored = ignored_settings(local.spec)
    if ignored:
        local.display.note(f"ignored on this machine (cluster-only): {', '.join(ignored)}")
    status = asyncio.run(_run(local, getattr(args, "metrics_port", 0)))
    local.display.close()
    if args.output == "json":
        body = {"name": local.name, "status": status.model_dump(by_alias=True, exclude_none=True)}
        print(json.dumps(body, indent=2))
    else:
        summary = (
            f"run {local.name} {status.phase} in {status.duration or '0s'} ({status.progress})"
        )
        if status.message and status.phase != "Succeeded":
            summary += f": {status.message}"
        print(summary)
        print(f"logs: {local.logs_dir}")
    return EXIT_OK if status.phase == "Succeeded" else EXIT_FAILED
