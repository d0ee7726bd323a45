"""rollout.child_edit: which watch events of a child make its CreditModel's next pass read and
correct it (the full re-read of every child is ten minutes apart)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditmodel.operator.rollout import child_edit

pytestmark = pytest.mark.unit

texts = st.text(min_size=1, max_size=12)
metas = st.fixed_dictionaries(
    {
        "generation": st.integers(min_value=1, max_value=10**6),
        "labels": st.dictionaries(texts, texts, max_size=4),
        "annotations": st.dictionaries(texts, texts, max_size=4),
        "resourceVersion": st.integers(min_value=1).map(str),
    }
)


def test_first_sight_is_remembered_not_edited() -> None:
    edit = child_edit(None, None, {"generation": 1, "labels": {"a": "b"}})
    assert edit.version is not None
    assert not edit.edited


def test_a_status_update_is_no_edit() -> None:
    """KServe writing conditions moves resourceVersion, never generation, labels, annotations."""
    meta: dict[str, Any] = {"generation": 3, "labels": {"a": "b"}, "resourceVersion": "10"}
    seen = child_edit(None, "ADDED", meta).version
    assert not child_edit(seen, "MODIFIED", {**meta, "resourceVersion": "11"}).edited


@pytest.mark.parametrize(
    "change",
    [{"generation": 4}, {"labels": {"a": "c"}}, {"annotations": {"x": "y"}}],
)
def test_spec_labels_and_annotations_are_edits(change: dict[str, Any]) -> None:
    meta: dict[str, Any] = {"generation": 3, "labels": {"a": "b"}}
    seen = child_edit(None, "ADDED", meta).version
    assert child_edit(seen, "MODIFIED", {**meta, **change}).edited


def test_a_deletion_is_an_edit_and_forgets_the_child() -> None:
    seen = child_edit(None, "ADDED", {"generation": 1}).version
    edit = child_edit(seen, "DELETED", {"generation": 1})
    assert edit.edited
    assert edit.version is None
    assert child_edit(None, "DELETED", {}).edited  # gone before we saw it: read it anyway


@given(metas, metas)
def test_edited_exactly_when_what_we_write_differs(
    first: dict[str, Any], then: dict[str, Any]
) -> None:
    seen = child_edit(None, "ADDED", first).version
    assert not child_edit(seen, "MODIFIED", first).edited
    ours = ("generation", "labels", "annotations")
    differs = any(first[key] != then[key] for key in ours)
    assert child_edit(seen, "MODIFIED", then).edited == differs
