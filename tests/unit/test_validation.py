"""Validation beyond the schema: every issue names its field and how to fix it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kopflow import manifests
from kopflow.api.workflow import WorkflowSpec
from kopflow.engine.params import resolve_parameters
from kopflow.engine.validation import Issue, validate_document

ROOT = Path(__file__).resolve().parents[2]


def etl() -> dict[str, Any]:
    return copy.deepcopy(manifests.load(ROOT / "examples" / "etl.yaml")[0].body)


def issues_of(doc: dict[str, Any]) -> list[str]:
    return [str(i) for i in validate_document(doc)]


def test_examples_are_valid() -> None:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in manifests.load(path):
            assert validate_document(doc.body) == [], doc.label


def test_cycle_is_named_with_its_path() -> None:
    doc = etl()
    doc["spec"]["tasks"][0]["dependsOn"] = ["load"]
    assert issues_of(doc) == [
        "spec.tasks[0].dependsOn: dependency cycle extract -> load -> clean -> extract; "
        "remove one of these dependencies"
    ]


def test_unknown_dependency_lists_the_known_tasks() -> None:
    doc = etl()
    doc["spec"]["tasks"][4]["dependsOn"] = ["load", "enrichh"]
    assert issues_of(doc) == [
        'spec.tasks[4].dependsOn[1]: unknown task "enrichh" (did you mean "enrich"?); it must '
        "name a task in spec.tasks (clean, enrich, extract, load, vacuum)"
    ]


def test_duplicate_names_across_tasks_and_on_failure() -> None:
    doc = etl()
    doc["spec"]["tasks"].append({"name": "clean", "command": ["true"]})
    doc["spec"]["onFailure"] = [{"name": "extract", "command": ["true"]}]
    assert issues_of(doc) == [
        'spec.tasks[5].name: duplicate task name "clean" (also spec.tasks[1]); task names must '
        "be unique",
        'spec.onFailure[0].name: duplicate task name "extract" (also spec.tasks[0]); task names '
        "must be unique",
    ]


@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        (
            ("args", 0),
            "{{ params.dat }}",
            'spec.tasks[0].args[0]: unknown parameter "dat" in "{{ params.dat }}" (did you mean '
            '"date"?); declare it under spec.parameters (known: date, mode)',
        ),
        (
            ("args", 0),
            "{{ tasks.load.outputs.rows }}",
            'spec.tasks[0].args[0]: "{{ tasks.load.outputs.rows }}" reads outputs of "load", '
            'which is not upstream of "extract"; add "load" to dependsOn',
        ),
        (
            ("args", 0),
            "{{ env.HOME }}",
            'spec.tasks[0].args[0]: unknown reference "{{ env.HOME }}"; use params.<name>, '
            "tasks.<task>.outputs.<key>, run.name, run.namespace, schedule.time or schedule.date",
        ),
        (
            ("command", 0),
            "{{ params.mode }}",
            "spec.tasks[3].command[0]: templates are not allowed here (injection risk); pass "
            "inputs as args or env and read them from the environment (KOPFLOW_PARAM_<NAME>)",
        ),
    ],
)
def test_template_references(where: tuple[str, int], value: str, expected: str) -> None:
    doc = etl()
    task = doc["spec"]["tasks"][3 if where[0] == "command" else 0]
    task[where[0]][where[1]] = value
    assert issues_of(doc) == [expected]


def test_undeclared_output_and_script_template() -> None:
    doc = etl()
    doc["spec"]["tasks"][1]["env"][0]["value"] = "{{ tasks.extract.outputs.row }}"
    doc["spec"]["tasks"][2]["script"]["source"] = "print('{{params.date}}')"
    assert issues_of(doc) == [
        'spec.tasks[1].env[0].value: "{{ tasks.extract.outputs.row }}": task "extract" does not '
        'declare output "row" (declared: rows, source); add it to its outputs',
        "spec.tasks[2].script.source: templates are not allowed here (injection risk); pass "
        "inputs as args or env and read them from the environment (KOPFLOW_PARAM_<NAME>)",
    ]


def test_bad_cron_and_timezone() -> None:
    doc = etl()
    doc["spec"]["schedule"] = {"cron": "61 * * * *", "timezone": "Europe/Atlantis"}
    assert issues_of(doc) == [
        'spec.schedule.cron: invalid cron expression "61 * * * *"; use 5 fields (minute hour '
        'day month weekday), e.g. "0 3 * * *", or @hourly/@daily/@weekly/@monthly',
        'spec.schedule.timezone: unknown time zone "Europe/Atlantis"; use an IANA name such as '
        "Europe/Berlin or UTC",
    ]


def test_schema_problems_name_the_field() -> None:
    doc = etl()
    doc["spec"]["tasks"][2]["dependson"] = ["extract"]
    doc["spec"]["tasks"][0]["name"] = "Extract"
    assert sorted(issues_of(doc)) == [
        "spec.tasks[0].name: must be a lower-case DNS label (a-z, 0-9 and '-'), e.g. load-data",
        "spec.tasks[2].dependson: unknown field; check its spelling (`kubectl explain` lists "
        "the fields)",
    ]


def test_inline_run_paths_point_into_spec_workflow() -> None:
    doc = manifests.load(ROOT / "examples" / "hello.yaml")[0].body
    doc["spec"]["workflow"]["tasks"][0]["dependsOn"] = ["nobody"]
    assert issues_of(doc) == [
        'spec.workflow.tasks[0].dependsOn[0]: unknown task "nobody"; it must name a task in '
        "spec.tasks (greet)"
    ]


def test_on_failure_may_read_main_outputs_but_not_depend_on_main_tasks() -> None:
    doc = etl()
    doc["spec"]["onFailure"] = [
        {"name": "notify", "args": ["{{ tasks.extract.outputs.rows }}"], "command": ["true"]},
        {"name": "page", "dependsOn": ["load"], "command": ["true"]},
    ]
    assert issues_of(doc) == [
        'spec.onFailure[1].dependsOn[0]: unknown task "load"; it must name a task in '
        "spec.onFailure (notify, page)"
    ]


def _spec() -> WorkflowSpec:
    return WorkflowSpec.model_validate(etl()["spec"])


def test_parameters_resolve_with_defaults_and_overrides() -> None:
    spec = _spec()
    spec.parameters[0].default = "{{ schedule.date }}"  # type: ignore[index]
    values, issues = resolve_parameters(spec, {"mode": "incremental"}, {"schedule.date": "d1"})
    assert issues == []
    assert values == {"date": "d1", "mode": "incremental"}


def test_parameters_enum_required_and_unknown() -> None:
    spec = _spec()
    spec.parameters[0].default = None  # type: ignore[index]
    spec.parameters[0].required = True  # type: ignore[index]
    _, issues = resolve_parameters(spec, {"mode": "fast", "dat": "x"}, {})
    assert [str(i) for i in issues] == [
        "spec.parameters.dat: unknown parameter (declared: date, mode); remove it",
        'spec.parameters.date: required parameter "date" is not set; add it under '
        "spec.parameters (or `-p date=VALUE`)",
        'spec.parameters.mode: "fast" is not an allowed value of "mode"; use one of: full, '
        "incremental",
    ]


def test_an_override_is_taken_literally() -> None:
    values, issues = resolve_parameters(_spec(), {"date": "{{ run.name }}; rm -rf /"}, {})
    assert issues == [] and values["date"] == "{{ run.name }}; rm -rf /"


# Property: whatever bad input, validation answers with issues and never raises.

BREAKERS = {
    "cycle": lambda s: s["tasks"][0].__setitem__("dependsOn", [s["tasks"][-1]["name"]]),
    "unknown dep": lambda s: s["tasks"][-1].setdefault("dependsOn", []).append("ghost"),
    "dup name": lambda s: s["tasks"].append(copy.deepcopy(s["tasks"][0])),
    "bad ref": lambda s: s["tasks"][0].setdefault("args", []).append("{{ params.nope }}"),
    "code template": lambda s: s["tasks"][0].__setitem__("command", ["{{ params.mode }}"]),
    "bad cron": lambda s: s.__setitem__("schedule", {"cron": "every day"}),
    "bad tz": lambda s: s.__setitem__("schedule", {"cron": "@daily", "timezone": "Nowhere"}),
    "no tasks": lambda s: s.__setitem__("tasks", []),
    "bad type": lambda s: s.__setitem__("parallelism", "many"),
    "unknown field": lambda s: s["tasks"][0].__setitem__("imagePullPolicy", "Always"),
    "bad name": lambda s: s["tasks"][0].__setitem__("name", "UPPER"),
    "dup param": lambda s: s.setdefault("parameters", []).extend([{"name": "p"}, {"name": "p"}]),
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(sorted(BREAKERS)), min_size=1, max_size=4),
    st.lists(
        st.tuples(st.sampled_from(["spec", "task"]), st.text(max_size=6), json_values), max_size=2
    ),
)
def test_bad_manifests_always_yield_issues_never_exceptions(
    breakers: list[str], noise: list[tuple[str, str, Any]]
) -> None:
    doc = etl()
    for name in sorted(breakers, key=lambda b: b == "no tasks"):  # emptying tasks goes last
        BREAKERS[name](doc["spec"])
    for where, key, value in noise:
        target = (
            doc["spec"] if where == "spec" or not doc["spec"]["tasks"] else doc["spec"]["tasks"][0]
        )
        target[key] = value
    issues = validate_document(doc)
    assert issues and all(isinstance(i, Issue) and i.path and i.message for i in issues)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_documents_never_raise(doc: Any) -> None:
    issues = validate_document(doc)
    assert issues  # nothing random is a valid Workflow
