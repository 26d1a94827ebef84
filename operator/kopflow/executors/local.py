"""`kopflow run`: drive the engine with local processes until the run finishes.

The loop is the operator's loop with a process table instead of the API server: observe the
attempts status says are running, reconcile, carry out the actions, wait for a process to
finish or for the engine's requeue time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import string
import subprocess
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kopflow import metrics
from kopflow.api.run import WorkflowRunStatus
from kopflow.api.workflow import EnvVar, WorkflowSpec
from kopflow.engine.decisions import Decision, Launch, LookupCache, Stop, StoreCache
from kopflow.engine.defaults import merge_defaults
from kopflow.engine.observations import CacheEntry, Observation
from kopflow.engine.reconcile import reconcile
from kopflow.engine.state import RunState, jobs_to_observe
from kopflow.engine.validation import Issue
from kopflow.executors import mounts
from kopflow.executors.cache_store import FileCache
from kopflow.executors.display import Display
from kopflow.executors.localvolumes import local_folders
from kopflow.executors.process import ProcessExecutor, ProcessResult, ProcessSpec

LOG_TAIL_LINES = 15
CONTAINER_OUTPUTS = "/kopflow/outputs"


@dataclass
class RunOptions:
    """How to run locally; the CLI fills it from its flags."""

    runtime: str = "process"
    use_cache: bool = True
    cache_dir: Path | None = None
    logs_dir: Path | None = None
    env_sources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Secret/ConfigMap name -> keys, from --env-file."""
    volumes: Mapping[str, Path] = field(default_factory=dict)
    """Volume name -> local folder, from --volume."""
    kill_grace_seconds: float = 3.0
    scheduled_time: str | None = None
    """`{{ schedule.time }}` (--schedule-time); the run's start when unset."""


def run_name(base: str) -> str:
    """`base-xxxxx` like Kubernetes' generateName, so two local runs never share logs."""
    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
    return f"{base.rstrip('-')}-{suffix}"


def _lookup(sources: Mapping[str, Mapping[str, str]], ref: Mapping[str, object]) -> str | None:
    keys = sources.get(str(ref.get("name", "")))
    return None if keys is None else keys.get(str(ref.get("key", "")))


def missing_sources(spec: WorkflowSpec, sources: Mapping[str, Mapping[str, str]]) -> list[Issue]:
    """envFrom and valueFrom references no --env-file provides: reported before any start."""
    issues = []
    groups = [("spec.tasks", spec.tasks), ("spec.onFailure", spec.on_failure or [])]
    for label, tasks in groups:
        for i, raw in enumerate(tasks):
            task = merge_defaults(raw, spec.task_defaults)
            for j, src in enumerate(task.env_from or ()):
                for kind, ref in (
                    ("secretRef", src.secret_ref),
                    ("configMapRef", src.config_map_ref),
                ):
                    if ref is not None and ref.name not in sources and not ref.optional:
                        issues.append(
                            Issue(
                                f"{label}[{i}].envFrom[{j}].{kind}",
                                f'"{ref.name}" is not available locally; pass --env-file '
                                f"{ref.name}=PATH (a file of KEY=VALUE lines)",
                            )
                        )
            for j, env in enumerate(task.env or ()):
                problem = _value_from_problem(env, sources)
                if problem:
                    issues.append(Issue(f"{label}[{i}].env[{j}].valueFrom", problem))
    return issues


def _value_from_problem(env: EnvVar, sources: Mapping[str, Mapping[str, str]]) -> str | None:
    if env.value_from is None:
        return None
    for kind in ("secretKeyRef", "configMapKeyRef"):
        ref = env.value_from.get(kind)
        if isinstance(ref, dict):
            if _lookup(sources, ref) is None and not ref.get("optional"):
                return (
                    f'key "{ref.get("key")}" of "{ref.get("name")}" is not available locally; '
                    f"pass --env-file {ref.get('name')}=PATH containing {ref.get('key')}=..."
                )
            return None
    return "only secretKeyRef and configMapKeyRef can be resolved locally; set a value instead"


class LocalRun:
    """One run of a workflow on this machine."""

    def __init__(
        self,
        name: str,
        spec: WorkflowSpec,
        parameters: Mapping[str, str],
        options: RunOptions,
        display: Display,
    ) -> None:
        self.name, self.spec, self.parameters = name, spec, dict(parameters)
        self.options, self.display = options, display
        self.executor = ProcessExecutor(kill_grace_seconds=options.kill_grace_seconds)
        self.cache = FileCache(options.cache_dir)
        # private (0700) and new: other users cannot read logs nor plant links in it
        self.logs_dir = options.logs_dir or Path(tempfile.mkdtemp(prefix=f"kopflow-{name}-"))
        self.answers: dict[str, CacheEntry | None] = {}
        self.status: WorkflowRunStatus | None = None
        self.cancelled = asyncio.Event()
        self.uid = uuid.uuid4().hex
        """This run's id: hashed into its attempts' names (log files), like a run's uid."""
        self.base_env = dict(os.environ)
        """Tasks inherit the runner's environment (PATH, HOME...), then get their own."""

    active = True
    """For metrics.track(): a local run always acts."""

    @property
    def body(self) -> dict[str, Any]:
        """This run as the operator's watch would show it: the metrics label it by its base
        name (the Workflow's, or the WorkflowRun's generateName), like the operator does."""
        status = self.status.dump() if self.status else {}
        base = self.name.rsplit("-", 1)[0]
        return {"metadata": {"namespace": "local", "generateName": f"{base}-"}, "status": status}

    @property
    def bodies(self) -> dict[str, dict[str, Any]]:
        return {self.name: self.body}

    def log_path(self, job: str) -> Path:
        return self.logs_dir / f"{job}.log"

    async def run(self) -> WorkflowRunStatus:
        """Reconcile until the run finishes; Ctrl-C (cancel()) ends it Cancelled."""
        try:
            while True:
                decision = self._reconcile()
                await self._carry_out(decision)
                if decision.changed:
                    old = self.status.dump() if self.status else None
                    metrics.run_status_written("local", self.body, old, decision.status.dump())
                self.status = decision.status
                self.display.update(decision.status, _now())
                for event in decision.events:
                    if event.type == "Warning" or event.reason.startswith("Run"):
                        self.display.note(f"{event.reason}: {event.message}")
                if decision.finished:
                    return decision.status
                if not decision.lookups:
                    await self._wait(decision.requeue_at)
        finally:
            await self.executor.shutdown()

    def cancel(self) -> None:
        self.cancelled.set()

    def _reconcile(self) -> Decision:
        results = self.executor.results()
        observations = {
            job: _observe(results[job]) for job in jobs_to_observe(self.status) if job in results
        }
        state = RunState(
            name=self.name,
            namespace="local",
            spec=self.spec,
            parameters=self.parameters,
            status=self.status,
            cancel=self.cancelled.is_set(),
            use_cache=self.options.use_cache,
            uid=self.uid,
            scheduled_time=self.options.scheduled_time,
        )
        return reconcile(state, observations, self.answers, _now())

    async def _carry_out(self, decision: Decision) -> None:
        for action in decision.actions:
            if isinstance(action, Launch):
                await self.executor.start(self._process_spec(action))
                self.display.note(
                    f"{action.task}: attempt {action.attempt}, log {self.log_path(action.job_name)}"
                )
            elif isinstance(action, Stop):
                self.executor.stop(action.job_name)
            elif isinstance(action, StoreCache):
                self.cache.put(action.key, dict(action.outputs), action.expires_at)
            elif isinstance(action, LookupCache):
                for key in action.keys:
                    hit = self.cache.get(key, _now())
                    self.answers[key] = CacheEntry(hit[0], hit[1]) if hit else None
        for task, status in (decision.status.tasks or {}).items():
            old = (self.status.tasks or {}).get(task) if self.status else None
            if (
                status.phase == "Failed"
                and (old is None or old.phase != "Failed")
                and status.job_name
            ):
                self._show_tail(task, status.job_name)

    def _show_tail(self, task: str, job: str) -> None:
        path = self.log_path(job)
        with contextlib.suppress(OSError):
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            if lines:
                body = "\n".join(f"  | {line}" for line in lines)
                self.display.note(f"{task} failed; last lines of {path}:\n{body}")

    async def _wait(self, until: datetime | None) -> None:
        timeout = None if until is None else max(0.0, (until - _now()).total_seconds())
        changed = asyncio.ensure_future(self.executor.changed.wait())
        cancelled = asyncio.ensure_future(self.cancelled.wait())
        try:
            await asyncio.wait({changed, cancelled}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            changed.cancel()
            cancelled.cancel()
        self.executor.changed.clear()

    def _env(self, launch: Launch, outputs: str) -> dict[str, str]:
        env = dict(self.base_env)
        sources = self.options.env_sources
        for src in launch.pod.env_from or ():
            for ref in (src.secret_ref, src.config_map_ref):
                if ref is not None:
                    for key, value in sources.get(ref.name, {}).items():
                        env[(src.prefix or "") + key] = value
        for var in launch.env:
            if var.value is not None:
                env[var.name] = var.value
            elif var.value_from is not None:
                for kind in ("secretKeyRef", "configMapKeyRef"):
                    key_ref = var.value_from.get(kind)
                    if isinstance(key_ref, dict):
                        found = _lookup(sources, key_ref)
                        if found is not None:
                            env[var.name] = found
        env["KOPFLOW_OUTPUTS"] = outputs
        return env

    def _process_spec(self, launch: Launch) -> ProcessSpec:
        job = launch.job_name
        outputs = self.logs_dir / "outputs" / job
        env = self._env(launch, str(outputs))
        stdin = launch.script.source if launch.script else None
        program = list(launch.script.command if launch.script else launch.command or ())
        argv = [*program, *launch.args]
        folders = local_folders(
            launch.pod,
            self.logs_dir / "volumes" / job,
            self.options.env_sources,
            self.options.volumes,
        )
        if self.options.runtime == "podman":
            argv, env = _podman_argv(launch, argv, env, self.base_env, outputs, stdin is not None)
            argv = _podman_volumes(argv, folders)
        elif folders:
            # a process sees no mounts: paths that start with a mount path go to the folder
            argv = [*program, *(mounts.rewrite(a, folders) for a in launch.args)]
            declared = {v.name for v in launch.env if v.value is not None}
            env = {k: mounts.rewrite(v, folders) if k in declared else v for k, v in env.items()}
            env.update(mounts.mounts_env(folders))
        return ProcessSpec(job, argv, env, self.log_path(job), outputs, stdin)


def _podman_argv(
    launch: Launch,
    argv: list[str],
    env: dict[str, str],
    base_env: Mapping[str, str],
    outputs: Path,
    interactive: bool,
) -> tuple[list[str], dict[str, str]]:
    """`podman run --rm` of the task's image; env passed by name so values stay out of argv."""
    inner = {**env, "KOPFLOW_OUTPUTS": f"{CONTAINER_OUTPUTS}/{outputs.name}"}
    # every variable the task gets (declared env, envFrom files, kopflow's), by name only
    names = [k for k in inner if k not in base_env or inner[k] != base_env[k]]
    names += [n for n in ("KOPFLOW_OUTPUTS",) if n not in names]
    cmd = ["podman", "run", "--rm", "--init", "--pull=never", "--name", launch.job_name]
    cmd += ["-i"] if interactive else []
    cmd += ["-v", f"{outputs.parent}:{CONTAINER_OUTPUTS}:z"]  # shared label: parallel tasks
    for name in names:
        cmd += ["-e", name]
    if launch.script is not None or launch.command:
        # like a pod's `command`, the program replaces the image's entrypoint
        cmd += ["--entrypoint", argv[0]]
        argv = argv[1:]
    return [*cmd, launch.image or "", *argv], inner


def _podman_volumes(argv: list[str], folders: Mapping[str, str]) -> list[str]:
    """`-v folder:mountPath` for each volume mount, before the image (after `--name J`)."""
    at = argv.index("--name") + 2
    flags = [f for mount, folder in folders.items() for f in ("-v", f"{folder}:{mount}:z")]
    return [*argv[:at], *flags, *argv[at:]]


def podman_problems(spec: WorkflowSpec) -> list[str]:
    """Why the podman runtime cannot run this workflow (no podman, an image not present)."""
    if shutil.which("podman") is None:
        return ["--runtime podman: podman is not installed (or not on PATH)"]
    problems = []
    images = {
        merge_defaults(t, spec.task_defaults).image for t in [*spec.tasks, *(spec.on_failure or [])]
    }
    for image in sorted(i or "" for i in images):
        if not image:
            problems.append("--runtime podman: a task has no image; set spec.taskDefaults.image")
        elif subprocess.run(["podman", "image", "exists", image], check=False).returncode != 0:
            problems.append(f"--runtime podman: image {image} is not present; podman pull {image}")
    return problems


def _observe(result: ProcessResult) -> Observation:
    if result.running:
        return Observation("running", started_at=result.started_at)
    if result.exit_code == 0:
        return Observation(
            "succeeded", 0, "Completed", None, result.outputs, result.started_at, result.finished_at
        )
    message = result.error
    if result.signal is not None and not result.stopped:
        valid = result.signal in signal.valid_signals()
        message = f"killed by {signal.Signals(result.signal).name if valid else result.signal}"
    return Observation(
        "failed",
        result.exit_code,
        "Error",
        message,
        result.outputs,
        result.started_at,
        result.finished_at,
    )


def _now() -> datetime:
    return datetime.now(UTC)
