"""The pure helpers of the Kubernetes adapter: merge patches and drift detection."""

from __future__ import annotations

import pytest

from creditmodel.operator.patches import merge_patch, merge_patch_body, subset_differs, without_none

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
    assert not subset_differs(desired, actual)
    assert subset_differs({"spec": {"predictor": {"minReplicas": 2}}}, actual)
    assert subset_differs({"spec": {"args": ["a", "b"]}}, {"spec": {"args": ["a"]}})


def test_a_field_left_none_must_be_absent() -> None:
    desired = {"spec": {"predictor": {"minReplicas": 1, "serviceAccountName": None}}}
    assert not subset_differs(desired, {"spec": {"predictor": {"minReplicas": 1}}})
    set_by_us_before = {"spec": {"predictor": {"minReplicas": 1, "serviceAccountName": "old"}}}
    assert subset_differs(desired, set_by_us_before)
    in_a_list = {"spec": {"parentRefs": [{"name": "gw", "sectionName": None}]}}
    assert subset_differs(in_a_list, {"spec": {"parentRefs": [{"name": "gw", "sectionName": "a"}]}})
    assert not subset_differs(in_a_list, {"spec": {"parentRefs": [{"name": "gw"}]}})


def test_a_create_leaves_none_out_and_a_patch_deletes_it_except_inside_lists() -> None:
    """A merge patch deletes a field set to null in a map, but stores a null inside a list (which
    it replaces whole, so leaving the field out is what removes it there)."""
    wanted = {
        "spec": {
            "predictor": {"canaryTrafficPercent": None, "containers": [{"envFrom": None}]},
            "hostnames": None,
            "parentRefs": [{"name": "gw", "namespace": None}],
        }
    }
    assert without_none(wanted) == {
        "spec": {"predictor": {"containers": [{}]}, "parentRefs": [{"name": "gw"}]}
    }
    assert merge_patch_body(wanted) == {
        "spec": {
            "predictor": {"canaryTrafficPercent": None, "containers": [{}]},
            "hostnames": None,
            "parentRefs": [{"name": "gw"}],
        }
    }
