"""Resolving a run's parameter values from overrides, defaults, enums and required flags."""

from __future__ import annotations

from collections.abc import Mapping

from kopflow.api.workflow import WorkflowSpec
from kopflow.engine import templating
from kopflow.engine.validation import Issue


def resolve_parameters(
    spec: WorkflowSpec,
    given: Mapping[str, str] | None,
    run_values: Mapping[str, str],
) -> tuple[dict[str, str], list[Issue]]:
    """The final value of every parameter, or the issues that make the run Invalid.

    `run_values` holds `run.name`, `schedule.time`... for defaults such as
    `{{ schedule.date }}`. Values are strings; an override is taken literally.
    """
    given = dict(given or {})
    declared = {p.name: p for p in spec.parameters or ()}
    issues = []
    for name in sorted(set(given) - set(declared)):
        known = ", ".join(sorted(declared)) or "none"
        issues.append(
            Issue(f"spec.parameters.{name}", f"unknown parameter (declared: {known}); remove it")
        )
    values: dict[str, str] = {}
    for name, p in declared.items():
        if name in given:
            value = given[name]
        elif p.default is not None:
            value = templating.render(p.default, run_values)
        else:
            if p.required:
                issues.append(
                    Issue(
                        f"spec.parameters.{name}",
                        f'required parameter "{name}" is not set; add it under spec.parameters '
                        f"(or `-p {name}=VALUE`)",
                    )
                )
            value = ""
        if (
            p.enum is not None
            and value not in p.enum
            and not (name not in given and p.default is None)
        ):
            issues.append(
                Issue(
                    f"spec.parameters.{name}",
                    f'"{value}" is not an allowed value of "{name}"; use one of: '
                    + ", ".join(p.enum),
                )
            )
        values[name] = value
    return values, issues
