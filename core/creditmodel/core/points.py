"""Points scaling, shared by training (the scores it reports and records in the bundle) and the
predictor (the INT32 `score` output): one definition, so a scaling training accepts is one the
predictor can serve. Pure."""

from __future__ import annotations

import math
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Probabilities are scored kept within [floor, 1 - floor] (the predictor's scoring.py): the
# log-odds stay finite, and so every score a model can produce lies between these two's scores.
PROBABILITY_FLOOR = 1e-9
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class PointsScaling(BaseModel):
    """`base_score` points at `base_odds` (good:bad); `points_to_double_odds` more points each
    time the odds double. Defaults to the bundle's own scaling (manifest lineage params).

    score = offset + factor * ln(good:bad odds), factor = pdo / ln 2. A scaling under which
    some probability would score outside the INT32 `score` output is refused: numpy's cast
    would turn every such score into -2147483648."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_score: float = 600.0
    base_odds: Annotated[float, Field(gt=0)] = 50.0
    points_to_double_odds: Annotated[float, Field(gt=0)] = 20.0

    @property
    def factor(self) -> float:
        return self.points_to_double_odds / math.log(2)

    @property
    def offset(self) -> float:
        return self.base_score - self.factor * math.log(self.base_odds)

    @model_validator(mode="after")
    def _scores_fit_int32(self) -> Self:
        floor = PROBABILITY_FLOOR
        # the scores of the most and the least likely default, as the predictor's scoring.py
        # computes them
        low, high = (self.offset + self.factor * math.log((1 - p) / p) for p in (1 - floor, floor))
        # Strictly inside: rounding can then not leave the range, whatever the last bit of a log.
        if not INT32_MIN < low <= high < INT32_MAX:  # NaN too (base_score nan, base_odds inf)
            raise ValueError(
                f"points scaling base_score {self.base_score:g}, base_odds {self.base_odds:g},"
                f" points_to_double_odds {self.points_to_double_odds:g} gives scores from"
                f" {low:.0f} to {high:.0f}; the score output is INT32 ({INT32_MIN} to"
                f" {INT32_MAX})"
            )
        return self
