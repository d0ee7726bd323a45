"""The pure helpers of the Kubernetes adapter: merge patches and drift detection."""

from __future__ import annotations

import pytest

from creditmodel.operator.kube import _subset_differs, merge_patch

pytestmark = pytest.mark.unit


def test_merge_patch_of_equal_documents_is_none() -> None:
    assert merge_patch({"a": {"b": 1}}, {"a": {"b": 1}}) is None


def test_merge_patch_sets_changed_and_nulls_removed_keys() -> None:
    old = {"canary": {"version": "v2", "lastAnalysis": {"verdict": "failed"}}, "canaryWeight": 10}
    new = {"canary": {"version": "v2"}, "canaryWeight": 20, "stable": {"version": "v1"}}
    assert merge_patch(old, new) == {
        "canary": {"lastAnalysis": None},
        "canaryWeight": 20,
        "stable": {"version": "v1"},
    }


def test_merge_patch_removes_a_whole_object_and_replaces_lists() -> None:
    old = {"canary": {"version": "v2"}, "conditions": [{"type": "Ready"}]}
    new = {"conditions": [{"type": "Ready"}, {"type": "Degraded"}]}
    assert merge_patch(old, new) == {
        "canary": None,
        "conditions": [{"type": "Ready"}, {"type": "Degraded"}],
    }


def test_fields_added_by_other_controllers_are_not_drift() -> None:
    desired = {"spec": {"predictor": {"minReplicas": 1}}}
    actual = {"spec": {"predictor": {"minReplicas": 1, "defaulted": True}}, "status": {}}
    assert not _subset_differs(desired, actual)
    assert _subset_differs({"spec": {"predictor": {"minReplicas": 2}}}, actual)
    assert _subset_differs({"spec": {"args": ["a", "b"]}}, {"spec": {"args": ["a"]}})
