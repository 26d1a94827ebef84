"""Workflow validation as status: condition Valid (True/False) with observedGeneration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kopflow.api.workflow import Condition, WorkflowSpec
from kopflow.engine.conditions import set_condition
from kopflow.engine.times import format_time
from kopflow.engine.validation import Issue, missing_images, pydantic_issues, validate_spec

MAX_ISSUES = 5


def issues_of(spec: Any) -> list[Issue]:
    try:
        model = WorkflowSpec.model_validate(spec or {})
    except ValidationError as err:
        return pydantic_issues(err, "spec")
    return validate_spec(model) + missing_images(model)


def validity(body: dict[str, Any], now: datetime) -> tuple[dict[str, Any], str | None]:
    """(status fields to merge, message when invalid)."""
    issues = issues_of(body.get("spec"))
    generation = body.get("metadata", {}).get("generation")
    old = [Condition.model_validate(c) for c in (body.get("status") or {}).get("conditions") or ()]
    if issues:
        message = "; ".join(map(str, issues[:MAX_ISSUES]))
        if len(issues) > MAX_ISSUES:
            message += f" (and {len(issues) - MAX_ISSUES} more)"
        conditions = set_condition(
            old, "Valid", "False", "Invalid", message, format_time(now), generation
        )
    else:
        message = None
        conditions = set_condition(
            old, "Valid", "True", "Valid", "the workflow is valid", format_time(now), generation
        )
    status = {
        "observedGeneration": generation,
        "conditions": [c.dump() for c in conditions],
    }
    return status, message
