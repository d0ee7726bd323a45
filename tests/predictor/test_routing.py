from __future__ import annotations

import pytest

from creditmodel.predictor.errors import RequestError
from creditmodel.predictor.routing import choose_variant, split_bucket

pytestmark = pytest.mark.unit


def test_explicit_variant_wins_over_the_split() -> None:
    assert choose_variant("fp32", "int8", 100.0, "key") == "fp32"
    assert choose_variant("int8", "int8", 100.0, "key") == "int8"


def test_unknown_variant_is_refused_naming_the_parameter() -> None:
    with pytest.raises(RequestError) as caught:
        choose_variant("fp16", "int8", 0.0, "key")
    assert caught.value.reason == "unknown_variant"
    assert "parameter 'variant': 'fp16'" in caught.value.message


def test_split_is_deterministic_and_close_to_the_percentage() -> None:
    keys = [f"applicant-{i}" for i in range(20_000)]
    first = [choose_variant(None, "int8", 25.0, k) for k in keys]
    assert first == [choose_variant(None, "int8", 25.0, k) for k in keys]
    share = first.count("fp32") / len(keys)
    assert 0.23 < share < 0.27


def test_split_extremes() -> None:
    assert {choose_variant(None, "int8", 0.0, str(i)) for i in range(500)} == {"int8"}
    assert {choose_variant(None, "int8", 100.0, str(i)) for i in range(500)} == {"fp32"}
    assert {choose_variant(None, "fp32", 100.0, str(i)) for i in range(500)} == {"int8"}


def test_bucket_is_stable_across_processes() -> None:
    # A fixed value: Python's salted hash() would differ between runs.
    assert split_bucket("applicant-42") == split_bucket("applicant-42")
    assert 0 <= split_bucket("applicant-42") < 10_000
    assert split_bucket("applicant-42") == 4592  # blake2b-64 of the key, mod 10000
