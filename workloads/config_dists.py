"""Distributions in the schema: token lengths, durations and counts.

Three families, each a tagged union on ``dist``:

- lengths (``LengthDist``, whole tokens >= 1): fixed, uniform, lognormal,
  empirical (a CSV column) and quantiles (an inverse-CDF table);
- durations (``DurationDist``, seconds >= 0, for think times and tool
  latencies): fixed, exponential, uniform, lognormal and quantiles;
- counts (``CountDist``, whole numbers >= 1, for turns and calls per task):
  fixed, uniform, geometric and quantiles.

A quantile table lists probabilities from 0 to 1 and the values there;
sampling interpolates linearly between them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from workloads.config_base import (
    MAX_SECONDS, MAX_SIGMA, TOKEN_CEILING, StrictModel, Tokens, check_bounds, check_quantile_table, tagged_union,
)


class FixedLength(StrictModel):
    """Every request has exactly ``tokens`` tokens."""

    dist: Literal["fixed"]
    tokens: Tokens


class UniformLength(StrictModel):
    """Whole numbers drawn uniformly from ``min_tokens`` to ``max_tokens``, both included."""

    dist: Literal["uniform"]
    min_tokens: Tokens
    max_tokens: Tokens

    @model_validator(mode="after")
    def _ordered(self) -> UniformLength:
        check_bounds(self.min_tokens, self.max_tokens)
        return self


class LognormalLength(StrictModel):
    """A lognormal with the given median and log-space ``sigma``, rounded to whole tokens.

    Draws outside ``[min_tokens, max_tokens]`` are clipped to the nearer bound,
    not redrawn, so the distribution keeps its median; the workload counts
    every clipped draw in ``WorkloadStats`` so a badly chosen bound is visible.
    """

    dist: Literal["lognormal"]
    median_tokens: float = Field(gt=0, le=TOKEN_CEILING)
    sigma: float = Field(gt=0, le=MAX_SIGMA)
    min_tokens: Tokens = 1
    max_tokens: Tokens | None = None

    @model_validator(mode="after")
    def _ordered(self) -> LognormalLength:
        check_bounds(self.min_tokens, self.max_tokens)
        return self


class EmpiricalLength(StrictModel):
    """Draws with replacement from one column of a CSV file (relative to the experiment file)."""

    dist: Literal["empirical"]
    path: str = Field(min_length=1)
    column: str = Field(min_length=1)


class QuantileLength(StrictModel):
    """Inverse-CDF sampling from token counts at probabilities 0..1, rounded to whole tokens."""

    dist: Literal["quantiles"]
    probabilities: list[float]
    tokens: list[Tokens]

    @model_validator(mode="after")
    def _table(self) -> QuantileLength:
        check_quantile_table(self.probabilities, self.tokens)
        return self


LengthDist = tagged_union("dist", {"fixed": FixedLength, "uniform": UniformLength, "lognormal": LognormalLength,
                                   "empirical": EmpiricalLength, "quantiles": QuantileLength})


class FixedDuration(StrictModel):
    """Always ``seconds``."""

    dist: Literal["fixed"]
    seconds: float = Field(ge=0, le=MAX_SECONDS)


class ExponentialDuration(StrictModel):
    """Exponential with mean ``mean_s`` (memoryless think times)."""

    dist: Literal["exponential"]
    mean_s: float = Field(gt=0, le=MAX_SECONDS)


class UniformDuration(StrictModel):
    """Uniform between ``min_s`` and ``max_s``."""

    dist: Literal["uniform"]
    min_s: float = Field(ge=0, le=MAX_SECONDS)
    max_s: float = Field(ge=0, le=MAX_SECONDS)

    @model_validator(mode="after")
    def _ordered(self) -> UniformDuration:
        check_bounds(self.min_s, self.max_s, "min_s", "max_s")
        return self


class LognormalDuration(StrictModel):
    """Lognormal with median ``median_s`` and log-space ``sigma``, capped at ``max_s`` if given."""

    dist: Literal["lognormal"]
    median_s: float = Field(gt=0, le=MAX_SECONDS)
    sigma: float = Field(gt=0, le=MAX_SIGMA)
    max_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)


class QuantileDuration(StrictModel):
    """Inverse-CDF sampling from ``seconds`` at ``probabilities`` 0..1."""

    dist: Literal["quantiles"]
    probabilities: list[float]
    seconds: list[float]

    @model_validator(mode="after")
    def _table(self) -> QuantileDuration:
        check_quantile_table(self.probabilities, self.seconds)
        if self.seconds[0] < 0 or self.seconds[-1] > MAX_SECONDS:
            raise ValueError(f"durations must be from 0 to {MAX_SECONDS:g} s")
        return self


DurationDist = tagged_union("dist", {"fixed": FixedDuration, "exponential": ExponentialDuration,
                                     "uniform": UniformDuration, "lognormal": LognormalDuration,
                                     "quantiles": QuantileDuration})

Count = Field(gt=0, le=1_000_000)


class FixedCount(StrictModel):
    """Always ``value``."""

    dist: Literal["fixed"]
    value: int = Count


class UniformCount(StrictModel):
    """Whole numbers from ``min`` to ``max``, both included."""

    dist: Literal["uniform"]
    min: int = Count
    max: int = Count

    @model_validator(mode="after")
    def _ordered(self) -> UniformCount:
        check_bounds(self.min, self.max, "min", "max")
        return self


class GeometricCount(StrictModel):
    """Geometric on 1, 2, ... with the given mean (each further turn happens with probability 1 - 1/mean)."""

    dist: Literal["geometric"]
    mean: float = Field(ge=1, le=1_000_000)


class QuantileCount(StrictModel):
    """Inverse-CDF sampling from ``values`` at ``probabilities`` 0..1, rounded to whole numbers."""

    dist: Literal["quantiles"]
    probabilities: list[float]
    values: list[float]

    @model_validator(mode="after")
    def _table(self) -> QuantileCount:
        check_quantile_table(self.probabilities, self.values)
        if self.values[0] < 1 or self.values[-1] > 1_000_000:
            raise ValueError("counts must be from 1 to 1,000,000")
        return self


CountDist = tagged_union("dist", {"fixed": FixedCount, "uniform": UniformCount, "geometric": GeometricCount,
                                  "quantiles": QuantileCount})
