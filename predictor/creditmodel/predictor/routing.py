"""Which variant scores a request: an explicit `variant` parameter, else a deterministic A/B split
keyed by the applicant key (or request id), else the default. Pure."""

from __future__ import annotations

import hashlib

from creditmodel.predictor.bounds import show
from creditmodel.predictor.errors import RequestError

VARIANTS = ("int8", "fp32")
_BUCKETS = 10_000


def split_bucket(key: str) -> int:
    """Stable bucket in [0, 10000) for a key: the same in every process, restart and machine
    (Python's hash() is salted per process, so it cannot be used)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _BUCKETS


def choose_variant(requested: object, default: str, ab_percent: float, key: str) -> str:
    if requested is not None:
        if requested not in VARIANTS:
            raise RequestError(
                "unknown_variant",
                f"parameter 'variant': {show(requested)} is not a variant of this model"
                f" ({', '.join(VARIANTS)})",
            )
        return str(requested)
    if ab_percent > 0 and split_bucket(key) < ab_percent * (_BUCKETS // 100):
        return VARIANTS[1] if default == VARIANTS[0] else VARIANTS[0]
    return default
