"""Fixtures of the engine tests; the builders themselves live in builders.py (importable)."""

from __future__ import annotations

import pytest
from tests.unit.engine.builders import spec, task

from kopflow.api.workflow import WorkflowSpec


@pytest.fixture
def diamond() -> WorkflowSpec:
    """extract -> (clean, count) -> load: the shape of most real workflows."""
    return spec(
        task("extract", outputs=["rows"]),
        task("clean", "extract", args=["--rows", "{{ tasks.extract.outputs.rows }}"]),
        task("count", "extract"),
        task("load", "clean", "count"),
    )
