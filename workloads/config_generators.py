"""Open-loop generators in the schema: arrival processes and request lengths.

Every arrival process is described by its long-run mean ``rate_per_s`` plus
what shapes its burstiness: nothing (Poisson), the coefficient of variation
of the gaps (gamma, Weibull), or the mean lengths of on and off periods
(on/off: Poisson arrivals during "on", none during "off").
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from workloads.config_base import MAX_SECONDS, StrictModel, tagged_union
from workloads.config_dists import LengthDist
from workloads.profiles import get_profile

Rate = Field(gt=0, le=1e9)


class PoissonArrivals(StrictModel):
    """Exponential gaps: the memoryless baseline (CV of gaps = 1)."""

    process: Literal["poisson"]
    rate_per_s: float = Rate


class GammaArrivals(StrictModel):
    """Gamma gaps with coefficient of variation ``cv`` (1 is Poisson, larger is burstier)."""

    process: Literal["gamma"]
    rate_per_s: float = Rate
    cv: float = Field(default=1.0, gt=0)


class WeibullArrivals(StrictModel):
    """Weibull gaps, set by their ``cv`` or by the Weibull ``shape`` k (k < 1 is bursty); not both."""

    process: Literal["weibull"]
    rate_per_s: float = Rate
    cv: float | None = Field(default=None, gt=0.05, lt=50)
    shape: float | None = Field(default=None, gt=0.05, le=50)

    @model_validator(mode="after")
    def _one_shape(self) -> WeibullArrivals:
        if (self.cv is None) == (self.shape is None):
            raise ValueError("give exactly one of 'cv' and 'shape'")
        return self


class OnOffArrivals(StrictModel):
    """Bursts: Poisson arrivals during on periods, none during off periods.

    On and off periods are exponential with means ``on_s`` and ``off_s``;
    during "on" the rate is ``rate_per_s * (on_s + off_s) / on_s``, so the
    long-run mean rate is ``rate_per_s``.
    """

    process: Literal["onoff"]
    rate_per_s: float = Rate
    on_s: float = Field(gt=0, le=MAX_SECONDS)
    off_s: float = Field(gt=0, le=MAX_SECONDS)


ArrivalConfig = tagged_union("process", {"poisson": PoissonArrivals, "gamma": GammaArrivals,
                                         "weibull": WeibullArrivals, "onoff": OnOffArrivals})


class LengthsConfig(StrictModel):
    """Prompt and output lengths: a built-in fitted ``profile``, or one distribution for each."""

    profile: str | None = None
    prompt: LengthDist | None = None
    output: LengthDist | None = None

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, name: str | None) -> str | None:
        if name is not None:
            get_profile(name)  # raises ValueError naming the known profiles
        return name

    @model_validator(mode="after")
    def _one_source(self) -> LengthsConfig:
        given = (self.prompt is not None) + (self.output is not None)
        if self.profile is not None and given:
            raise ValueError("give either 'profile' or 'prompt' and 'output', not both")
        if self.profile is None and given < 2:
            raise ValueError("give either 'profile' or both 'prompt' and 'output'")
        return self


class GeneratorConfig(StrictModel):
    """A synthetic open-loop workload: an arrival process and the lengths of each request."""

    arrivals: ArrivalConfig
    lengths: LengthsConfig
