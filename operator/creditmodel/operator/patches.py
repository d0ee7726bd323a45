"""Comparing and patching Kubernetes objects as JSON, pure: whether a child as read still holds
what the operator wrote (other controllers' fields and the API server's rewrites are no drift),
and the bodies of creates and JSON merge patches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from creditmodel.operator.validation import quantity_value

QUANTITY_MAPS = frozenset({"requests", "limits"})
"""Keys whose values are resource quantities: KServe's webhook and the API server canonicalise
them (`cpu: 1` comes back as "1", 0.5 as "500m"), so they are compared by value."""


def subset_differs(desired: Any, actual: Any, quantities: bool = False) -> bool:
    """True when `actual` does not contain `desired` (extra fields set by others are fine). A
    None in `desired` asks for the field to be absent (a builder's optional field left unset):
    a value there differs. Semantic where the API server rewrites what we wrote: quantities by
    value, an empty list by an absent one. A write on every resync would wake KServe and bump
    resourceVersion for nothing."""
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            return True
        return any(
            subset_differs(value, actual.get(key), quantities or key in QUANTITY_MAPS)
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not desired and actual is None:
            return False  # the API server may drop an empty list: absent is what we asked for
        if not isinstance(actual, list) or len(desired) != len(actual):
            return True
        return any(subset_differs(d, a) for d, a in zip(desired, actual, strict=True))
    if quantities and desired != actual:
        return not same_quantity(desired, actual)
    return bool(desired != actual)


def without_none(value: Any) -> Any:
    """`value` without the fields a builder left None (absent): the body of a create."""
    if isinstance(value, Mapping):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(item) for item in value]
    return value


def merge_patch_body(wanted: Any) -> Any:
    """`wanted` as a JSON merge patch: a None field of a map stays, and deletes the field (an
    optional field the spec no longer sets leaves the child); inside a list, which a merge patch
    replaces whole, a None field is left out (RFC 7386 would store the null itself)."""
    if isinstance(wanted, Mapping):
        return {k: merge_patch_body(v) for k, v in wanted.items()}
    return without_none(wanted)


def same_quantity(desired: Any, actual: Any) -> bool:
    try:
        wanted, found = quantity_value(desired), quantity_value(actual)
    except (TypeError, ValueError, KeyError, ArithmeticError):
        return False
    return wanted == found


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) turning `old` into `new`; None when they are equal."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None if old == new else new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
            continue
        sub = merge_patch(old[key], value)
        if sub is not None:
            patch[key] = sub
    return patch or None
