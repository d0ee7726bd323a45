"""rollout.child_edit: which watch events of a child make its CreditModel's next pass read and
correct it (the full re-read of every child is ten minutes apart), and which wake that pass."""

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
    assert edit.seen is not None
    assert not edit.edited


def test_a_status_update_is_no_edit() -> None:
    """KServe writing conditions moves resourceVersion, never generation, labels, annotations."""
    meta: dict[str, Any] = {"generation": 3, "labels": {"a": "b"}, "resourceVersion": "10"}
    seen = child_edit(None, "ADDED", meta).seen
    assert not child_edit(seen, "MODIFIED", {**meta, "resourceVersion": "11"}).edited


@pytest.mark.parametrize(
    "change",
    [{"generation": 4}, {"labels": {"a": "c"}}, {"annotations": {"x": "y"}}],
)
def test_spec_labels_and_annotations_are_edits(change: dict[str, Any]) -> None:
    meta: dict[str, Any] = {"generation": 3, "labels": {"a": "b"}}
    seen = child_edit(None, "ADDED", meta).seen
    assert child_edit(seen, "MODIFIED", {**meta, **change}).edited


def test_absent_and_empty_labels_and_annotations_are_the_same() -> None:
    """The API server may leave an empty map out of one answer and send it in the next."""
    seen = child_edit(None, "ADDED", {"generation": 1}).seen
    empty = {"generation": 1, "labels": {}, "annotations": {}}
    assert not child_edit(seen, "MODIFIED", empty).edited
    assert not child_edit(
        child_edit(None, "ADDED", empty).seen, "MODIFIED", {"generation": 1}
    ).edited


def test_a_deletion_is_an_edit_and_forgets_the_child() -> None:
    seen = child_edit(None, "ADDED", {"generation": 1}).seen
    edit = child_edit(seen, "DELETED", {"generation": 1})
    assert edit.edited
    assert edit.seen is None
    assert child_edit(None, "DELETED", {}).edited  # gone before we saw it: read it anyway


@given(metas, metas)
def test_edited_exactly_when_what_we_write_differs(
    first: dict[str, Any], then: dict[str, Any]
) -> None:
    seen = child_edit(None, "ADDED", first).seen
    assert not child_edit(seen, "MODIFIED", first).edited
    ours = ("generation", "labels", "annotations")
    differs = any(first[key] != then[key] for key in ours)
    assert child_edit(seen, "MODIFIED", then).edited == differs


def test_our_own_write_wakes_nobody_and_a_new_signal_wakes_the_owner() -> None:
    meta: dict[str, Any] = {"generation": 1, "labels": {"a": "b"}}
    written = child_edit(None, None, meta, "").seen  # remembered from our create's answer
    assert not child_edit(written, "ADDED", meta, "").wake
    assert not child_edit(written, "MODIFIED", {**meta, "resourceVersion": "9"}, "").wake
    ready = child_edit(written, "MODIFIED", meta, "Ready")
    assert ready.wake
    assert not ready.edited
    assert not child_edit(ready.seen, "MODIFIED", meta, "Ready").wake


def test_first_sight_and_deletion_wake() -> None:
    assert child_edit(None, "ADDED", {"generation": 1}).wake  # kopf's listing, or a lost race
    assert child_edit(("x", ""), "DELETED", {"generation": 1}).wake


@given(metas, metas, texts, texts)
def test_wakes_exactly_on_an_edit_or_a_moved_signal(
    first: dict[str, Any], then: dict[str, Any], before: str, after: str
) -> None:
    seen = child_edit(None, None, first, before).seen
    edit = child_edit(seen, "MODIFIED", then, after)
    assert edit.wake == (edit.edited or before != after)
