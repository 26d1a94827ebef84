"""Status merge patches: removed fields become null, unchanged ones are not resent."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.apiserver_patch import merge_patch as apply_merge_patch

from kopflow.controller.patches import merge_patch


def test_a_cleared_retry_time_is_sent_as_null_and_unchanged_tasks_are_not_sent() -> None:
    old = {
        "phase": "Running",
        "tasks": {
            "a": {"phase": "Retrying", "nextRetryAt": "T1"},
            "b": {"phase": "Succeeded", "outputs": {"x": "1"}},
        },
    }
    new = {
        "phase": "Running",
        "tasks": {
            "a": {"phase": "Running", "attempts": 2},
            "b": {"phase": "Succeeded", "outputs": {"x": "1"}},
        },
    }
    assert merge_patch(old, new) == {
        "tasks": {"a": {"phase": "Running", "nextRetryAt": None, "attempts": 2}}
    }
    assert merge_patch(new, new) == {}


leaf = st.one_of(
    st.text(max_size=3), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2)
)
docs = st.recursive(
    st.dictionaries(st.sampled_from("abcd"), leaf, max_size=4),
    lambda inner: st.dictionaries(st.sampled_from("abcd"), st.one_of(leaf, inner), max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(docs, docs)
def test_the_api_servers_merge_of_the_patch_into_old_gives_new(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    assert apply_merge_patch(old, merge_patch(old, new)) == new
