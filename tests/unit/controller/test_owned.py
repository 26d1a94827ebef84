"""The operator's inline outputs budget comes from its environment, or a clear refusal."""

from __future__ import annotations

import pytest

from kopflow.controller import owned
from kopflow.engine.spill import INLINE_BUDGET, TASK_INLINE_LIMIT, Budget


def test_the_budget_is_the_default_unless_the_environment_sets_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(owned.INLINE_ENV, raising=False)
    assert owned.budget() == Budget(INLINE_BUDGET, TASK_INLINE_LIMIT)
    monkeypatch.setenv(owned.INLINE_ENV, "2048")
    assert owned.budget().inline == 2048
    monkeypatch.setenv(owned.INLINE_ENV, "0")  # nothing inline: every output in a shard
    assert (owned.budget().inline, owned.budget().per_task) == (0, 0)


def test_a_bad_budget_names_the_variable_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(owned.INLINE_ENV, "128k")
    with pytest.raises(SystemExit) as err:
        owned.budget()
    assert "KOPFLOW_INLINE_OUTPUTS_BYTES='128k'" in str(err.value)
    assert "number of bytes" in str(err.value)
