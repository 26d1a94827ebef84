"""The `{{ ... }}` template language: literal substitution of known references, nothing else.

There is no expression evaluation, no filters and no recursion: a value substituted into a
string is never scanned again, so a parameter containing `{{ ... }}` or shell syntax stays
literal text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
"""One template occurrence; group 1 is the reference."""

_PARAM = re.compile(r"^params\.([A-Za-z_][A-Za-z0-9_]*)$")
_OUTPUT = re.compile(r"^tasks\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.outputs\.([A-Za-z_][A-Za-z0-9_]*)$")
RUN_REFS = frozenset({"run.name", "run.namespace", "schedule.time", "schedule.date"})
"""References that come from the run itself rather than from parameters or tasks."""


@dataclass(frozen=True)
class Ref:
    """A parsed template reference."""

    text: str
    """The reference as written between the braces, whitespace trimmed."""
    kind: str
    """`param`, `output`, `run`, or `invalid`."""
    name: str = ""
    """The parameter name, or the task name for an output."""
    key: str = ""
    """The output key, for an output."""


def parse_ref(text: str) -> Ref:
    """Classify one reference; anything unrecognised is `invalid` (never evaluated)."""
    if m := _PARAM.match(text):
        return Ref(text, "param", m.group(1))
    if m := _OUTPUT.match(text):
        return Ref(text, "output", m.group(1), m.group(3))
    if text in RUN_REFS:
        return Ref(text, "run")
    return Ref(text, "invalid")


def refs(text: str) -> Iterator[Ref]:
    """Every reference in text, in order."""
    for m in TEMPLATE.finditer(text):
        yield parse_ref(m.group(1))


def names_reference(text: str) -> bool:
    """True when text holds a kopflow reference, even a misspelt one (`{{ params.x }}`).

    Used to refuse templates in code (command, script source) while leaving other `{{`
    syntax, such as a Go or Jinja template inside a script, alone.
    """
    return any(
        r.kind != "invalid" or r.text.startswith(("params", "tasks.", "run.", "schedule."))
        for r in refs(text)
    )


def render(text: str, values: Mapping[str, str]) -> str:
    """Substitute every reference by its value; a missing one becomes the empty string.

    Validation has already rejected unknown references, so a missing value here means a
    skipped or failed upstream task, whose outputs are defined to be empty.
    """
    if "{{" not in text:
        return text
    return TEMPLATE.sub(lambda m: values.get(m.group(1), ""), text)


def context(
    params: Mapping[str, str],
    outputs: Mapping[str, Mapping[str, str]],
    run: Mapping[str, str],
) -> dict[str, str]:
    """The flat reference -> value mapping render() reads."""
    values = {f"params.{k}": v for k, v in params.items()}
    for task, task_outputs in outputs.items():
        for key, value in task_outputs.items():
            values[f"tasks.{task}.outputs.{key}"] = value
    values.update(run)
    return values
