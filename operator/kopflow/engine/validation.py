"""Validation beyond the CRD schema, shared by the operator and `kopflow run`.

Every problem is an `Issue` naming the field path (`spec.tasks[2].dependsOn[0]`) and saying
how to fix it. Validation never raises on user input: whatever the document, it returns issues.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from kopflow.api.workflow import VERSION, Task, Workflow, WorkflowSpec
from kopflow.engine import dag, templating

if TYPE_CHECKING:
    from kopflow.api.run import WorkflowRun


@dataclass(frozen=True, order=True)
class Issue:
    """One validation problem: where, and what to do about it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def format_loc(loc: Sequence[int | str], prefix: str = "") -> str:
    """A pydantic location tuple as a field path: `spec.tasks[2].dependsOn[0]`."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_HINTS = {
    "extra_forbidden": "unknown field; check its spelling (`kubectl explain` lists the fields)",
    "missing": "required field is missing",
}


RENAMED = {("retry", "on"): "retry.reasons"}
"""Fields renamed while the API is v1alpha1: (parent, old key) -> new path. `retry.on` became
`retry.reasons` because YAML 1.1 (kubectl, Helm) reads a bare `on` key as the boolean true."""


def renamed(parent: str, key: str) -> str | None:
    """The message for a key that was renamed, or None."""
    new = RENAMED.get((parent, key))
    return f"renamed to {new} in {VERSION}" if new else None


def pydantic_issues(error: ValidationError, prefix: str = "") -> list[Issue]:
    """A pydantic error as issues with field paths and hints (shared with the operator)."""
    issues = []
    for err in error.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        message = _HINTS.get(err["type"], err["msg"])
        if err["type"] == "string_pattern_mismatch" and loc and loc[-1] == "name":
            message = "must be a lower-case DNS label (a-z, 0-9 and '-'), e.g. load-data"
        if err["type"] == "extra_forbidden" and len(loc) >= 2:
            message = renamed(str(loc[-2]), str(loc[-1])) or message
        issues.append(Issue(format_loc(loc, prefix), message))
    return issues


def _task_paths(spec: WorkflowSpec) -> Iterator[tuple[str, Task]]:
    for i, task in enumerate(spec.tasks):
        yield f"spec.tasks[{i}]", task
    for i, task in enumerate(spec.on_failure or ()):
        yield f"spec.onFailure[{i}]", task


def _templated_fields(task: Task) -> Iterator[tuple[str, str]]:
    """(relative path, text) of every field where templates are allowed."""
    for i, arg in enumerate(task.args or ()):
        yield f"args[{i}]", arg
    for i, env in enumerate(task.env or ()):
        if env.value is not None:
            yield f"env[{i}].value", env.value
    if task.cache is not None:
        yield "cache.key", task.cache.key
    for i, cond in enumerate(task.when or ()):
        yield f"when[{i}].input", cond.input


def _code_fields(task: Task) -> Iterator[tuple[str, str]]:
    """(relative path, text) of fields that are code or executables: never templated."""
    for i, part in enumerate(task.command or ()):
        yield f"command[{i}]", part
    if task.script is not None:
        for i, part in enumerate(task.script.command):
            yield f"script.command[{i}]", part
        yield "script.source", task.script.source


def _duplicates(names: Iterable[str]) -> Iterator[tuple[int, str, int]]:
    """(index, name, first index) of every repeated name."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            yield i, name, first[name]
        else:
            first[name] = i


def _check_names(spec: WorkflowSpec) -> list[Issue]:
    issues = []
    tasks = list(_task_paths(spec))
    for i, name, j in _duplicates(t.name for _, t in tasks):
        issues.append(
            Issue(
                f"{tasks[i][0]}.name",
                f'duplicate task name "{name}" (also {tasks[j][0]}); task names must be unique',
            )
        )
    for i, name, j in _duplicates(p.name for p in spec.parameters or ()):
        issues.append(
            Issue(
                f"spec.parameters[{i}].name",
                f'duplicate parameter "{name}" (also spec.parameters[{j}]); rename or remove one',
            )
        )
    for path, task in tasks:
        for i, name, _ in _duplicates(task.outputs or ()):
            issues.append(Issue(f"{path}.outputs[{i}]", f'output "{name}" is declared twice'))
        for i, name, _ in _duplicates(e.name for e in task.env or ()):
            issues.append(Issue(f"{path}.env[{i}].name", f'env var "{name}" is set twice'))
        if task.command is not None and task.script is not None:
            issues.append(Issue(f"{path}.script", "set either command or script, not both"))
    return issues


def _deps(group: Iterable[Task]) -> dict[str, list[str]]:
    """name -> dependencies (self-references dropped); a duplicate name keeps its first task."""
    deps: dict[str, list[str]] = {}
    for t in group:
        deps.setdefault(t.name, [d for d in t.depends_on or () if d != t.name])
    return deps


def _check_dependencies(spec: WorkflowSpec) -> list[Issue]:
    """Unknown names and cycles; onFailure tasks may depend only on other onFailure tasks."""
    issues = []
    main = [t.name for t in spec.tasks]
    handlers = [t.name for t in spec.on_failure or ()]
    for group, known, label in (
        (spec.tasks, set(main), "spec.tasks"),
        (spec.on_failure or [], set(handlers), "spec.onFailure"),
    ):
        for i, task in enumerate(group):
            for j, dep in enumerate(task.depends_on or ()):
                if dep == task.name:
                    issues.append(
                        Issue(
                            f"{label}[{i}].dependsOn[{j}]",
                            "a task cannot depend on itself; remove it from dependsOn",
                        )
                    )
                elif dep not in known:
                    names = ", ".join(sorted(known)) or "none"
                    issues.append(
                        Issue(
                            f"{label}[{i}].dependsOn[{j}]",
                            f'unknown task "{dep}"{_did_you_mean(dep, known)}; it must name a '
                            f"task in {label} ({names})",
                        )
                    )
        deps = _deps(group)
        cycle = dag.find_cycle(deps)
        if cycle:
            where = next(i for i, t in enumerate(group) if t.name == cycle[0])
            issues.append(
                Issue(
                    f"{label}[{where}].dependsOn",
                    f"dependency cycle {' -> '.join(cycle)}; remove one of these dependencies",
                )
            )
    return issues


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _check_templates(spec: WorkflowSpec) -> list[Issue]:
    issues: list[Issue] = []
    params = {p.name for p in spec.parameters or ()}
    main_deps = _deps(spec.tasks)
    handler_deps = _deps(spec.on_failure or ())
    outputs: dict[str, set[str]] = {}
    for _, t in _task_paths(spec):
        outputs.setdefault(t.name, set(t.outputs or ()))
    handler_names = set(handler_deps)
    for path, task in _task_paths(spec):
        if task.name in handler_names and path.startswith("spec.onFailure"):
            upstream = dag.ancestors(handler_deps, task.name) | set(main_deps)
        else:
            upstream = dag.ancestors(main_deps, task.name)
        for field, text in _templated_fields(task):
            for ref in templating.refs(text):
                problem = _ref_problem(ref, params, outputs, upstream, task.name)
                if problem:
                    issues.append(Issue(f"{path}.{field}", problem))
        for field, text in _code_fields(task):
            if templating.names_reference(text):
                issues.append(
                    Issue(
                        f"{path}.{field}",
                        "templates are not allowed here (injection risk); pass inputs as args "
                        "or env and read them from the environment (KOPFLOW_PARAM_<NAME>)",
                    )
                )
    for i, p in enumerate(spec.parameters or ()):
        for ref in templating.refs(p.default or ""):
            if ref.kind != "run":
                issues.append(
                    Issue(
                        f"spec.parameters[{i}].default",
                        f'"{{{{ {ref.text} }}}}" cannot be used in a default; only '
                        + ", ".join(f"{{{{ {r} }}}}" for r in sorted(templating.RUN_REFS)),
                    )
                )
    return issues


def _ref_problem(
    ref: templating.Ref,
    params: set[str],
    outputs: Mapping[str, set[str]],
    upstream: set[str],
    task: str,
) -> str | None:
    if ref.kind == "run":
        return None
    if ref.kind == "param":
        if ref.name in params:
            return None
        known = ", ".join(sorted(params)) or "none declared"
        return (
            f'unknown parameter "{ref.name}" in "{{{{ {ref.text} }}}}"'
            f"{_did_you_mean(ref.name, params)}; declare it under spec.parameters "
            f"(known: {known})"
        )
    if ref.kind == "output":
        if ref.name not in outputs:
            return f'"{{{{ {ref.text} }}}}" refers to unknown task "{ref.name}"'
        if ref.name == task or ref.name not in upstream:
            return (
                f'"{{{{ {ref.text} }}}}" reads outputs of "{ref.name}", which is not upstream '
                f'of "{task}"; add "{ref.name}" to dependsOn'
            )
        if ref.key not in outputs[ref.name]:
            declared = ", ".join(sorted(outputs[ref.name])) or "none"
            return (
                f'"{{{{ {ref.text} }}}}": task "{ref.name}" does not declare output '
                f'"{ref.key}" (declared: {declared}); add it to its outputs'
            )
        return None
    return (
        f'unknown reference "{{{{ {ref.text} }}}}"; use params.<name>, '
        "tasks.<task>.outputs.<key>, run.name, run.namespace, schedule.time or schedule.date"
    )


def _check_parameters(spec: WorkflowSpec) -> list[Issue]:
    issues = []
    for i, p in enumerate(spec.parameters or ()):
        if p.required and p.default is not None:
            issues.append(
                Issue(
                    f"spec.parameters[{i}].required",
                    "a required parameter cannot have a default; drop one of them",
                )
            )
        literal_default = p.default is not None and "{{" not in p.default
        if p.enum is not None and literal_default and p.default not in p.enum:
            issues.append(
                Issue(
                    f"spec.parameters[{i}].default",
                    f'"{p.default}" is not one of enum ({", ".join(p.enum)})',
                )
            )
    return issues


def check_schedule(cron: str, timezone: str) -> list[Issue]:
    """A cron expression croniter understands, in a time zone that exists."""
    issues = []
    from croniter import croniter  # here: `kopflow validate` of most files never needs it

    if len(cron.split()) not in (1, 5) or not croniter.is_valid(cron):
        issues.append(
            Issue(
                "spec.schedule.cron",
                f'invalid cron expression "{cron}"; use 5 fields (minute hour day month '
                'weekday), e.g. "0 3 * * *", or @hourly/@daily/@weekly/@monthly',
            )
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        issues.append(
            Issue(
                "spec.schedule.timezone",
                f'unknown time zone "{timezone}"; use an IANA name such as Europe/Berlin or UTC',
            )
        )
    return issues


def validate_spec(spec: WorkflowSpec) -> list[Issue]:
    """Everything the schema cannot check about a workflow spec, in field order."""
    issues = _check_names(spec) + _check_dependencies(spec) + _check_parameters(spec)
    issues += _check_templates(spec)
    from kopflow.engine.podchecks import mount_issues  # it builds on this module's Issue

    issues += mount_issues(spec)
    if spec.schedule is not None:
        issues += check_schedule(spec.schedule.cron, spec.schedule.timezone)
    return issues


def missing_images(spec: WorkflowSpec) -> list[Issue]:
    """Tasks with no image, neither their own nor taskDefaults': fatal on a cluster only."""
    if spec.task_defaults is not None and spec.task_defaults.image:
        return []
    return [
        Issue(f"{path}.image", "no image; set it on the task or in spec.taskDefaults.image")
        for path, task in _task_paths(spec)
        if not task.image
    ]


def parse_workflow(doc: Mapping[str, Any]) -> tuple[Workflow | None, list[Issue]]:
    """A Workflow document as a model plus its issues (model is None when unparseable)."""
    try:
        wf = Workflow.model_validate(doc)
    except ValidationError as err:
        return None, pydantic_issues(err)
    return wf, validate_spec(wf.spec)


def parse_run(doc: Mapping[str, Any]) -> tuple[WorkflowRun | None, list[Issue]]:
    """A WorkflowRun document as a model plus its issues."""
    from kopflow.api.run import WorkflowRun  # only for runs: `kopflow validate` starts faster

    try:
        run = WorkflowRun.model_validate(doc)
    except ValidationError as err:
        return None, pydantic_issues(err)
    issues = []
    if (run.spec.workflow is None) == (run.spec.workflow_ref is None):
        issues.append(Issue("spec", "set exactly one of spec.workflowRef or spec.workflow"))
    if run.spec.workflow is not None:
        issues += [
            Issue(i.path.replace("spec.", "spec.workflow.", 1), i.message)
            for i in validate_spec(run.spec.workflow)
        ]
    return run, issues


def validate_document(doc: Any) -> list[Issue]:
    """Issues of one YAML document of any kind; never raises."""
    if not isinstance(doc, Mapping):
        return [Issue("(document)", "expected a Kubernetes object (a YAML mapping)")]
    kind = doc.get("kind")
    if kind == "Workflow":
        return parse_workflow(doc)[1]
    if kind == "WorkflowRun":
        return parse_run(doc)[1]
    return [Issue("kind", f'unsupported kind "{kind}"; expected Workflow or WorkflowRun')]
