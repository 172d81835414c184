"""The ``workload:`` section of an experiment, as strict pydantic models.

A workload is either a generator (an arrival process plus prompt and output
length distributions) or a trace to replay. The models only check shape and
numbers: every float must be finite, every bound positive and every minimum at
most its maximum. Files named here (traces, empirical CSVs) are opened later,
by ``build_workload``, and paths are relative to the experiment file's folder.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from workloads.profiles import get_profile

# Large enough for any real request, small enough that token arithmetic never overflows int64.
TOKEN_CEILING = 2**31 - 1

# Token counts in a configuration are whole tokens, at least one.
Tokens = Annotated[int, Field(gt=0, le=TOKEN_CEILING)]


class _Model(BaseModel):
    """Frozen, closed to unknown keys, and refusing NaN and infinities in floats."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ArrivalConfig(_Model):
    """When requests arrive: a Poisson process, or a gamma renewal process for burstiness.

    ``cv`` is the coefficient of variation of inter-arrival times; 1 is Poisson,
    larger is burstier. Only the gamma process reads it.
    """

    process: Literal["poisson", "gamma"]
    rate_per_s: float = Field(gt=0)
    cv: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _cv_needs_gamma(self) -> ArrivalConfig:
        # A cv given to a Poisson process would be silently ignored; refuse it instead.
        if self.process == "poisson" and "cv" in self.model_fields_set and self.cv != 1.0:
            raise ValueError("cv applies to process: gamma only (Poisson arrivals have cv 1)")
        return self


class FixedLength(_Model):
    """Every request has exactly ``tokens`` tokens."""

    dist: Literal["fixed"]
    tokens: Tokens


class UniformLength(_Model):
    """Whole numbers drawn uniformly from ``min_tokens`` to ``max_tokens``, both included."""

    dist: Literal["uniform"]
    min_tokens: Tokens
    max_tokens: Tokens

    @model_validator(mode="after")
    def _ordered(self) -> UniformLength:
        _check_bounds(self.min_tokens, self.max_tokens)
        return self


class LognormalLength(_Model):
    """A lognormal with the given median and log-space ``sigma``, rounded to whole tokens.

    Draws outside ``[min_tokens, max_tokens]`` are clipped to the nearer bound,
    not redrawn, so the distribution keeps its median; the workload counts
    every clipped draw in ``WorkloadStats`` so a badly chosen bound is visible.
    """

    dist: Literal["lognormal"]
    median_tokens: float = Field(gt=0)
    sigma: float = Field(gt=0)
    min_tokens: Tokens = 1
    max_tokens: Tokens | None = None

    @model_validator(mode="after")
    def _ordered(self) -> LognormalLength:
        _check_bounds(self.min_tokens, self.max_tokens)
        return self


class EmpiricalLength(_Model):
    """Draws with replacement from one column of a CSV file (relative to the experiment file)."""

    dist: Literal["empirical"]
    path: str = Field(min_length=1)
    column: str = Field(min_length=1)


_DIST_TAGS = {"fixed": "Fixed", "uniform": "Uniform", "lognormal": "Lognormal", "empirical": "Empirical"}


def _dist_tag(value: Any) -> str | None:
    # Capitalised tags keep error locations free of the union member's name
    # (condense_validation_error drops capitalised location parts).
    dist = value.get("dist") if isinstance(value, dict) else getattr(value, "dist", None)
    return _DIST_TAGS.get(dist) if isinstance(dist, str) else None


LengthDist = Annotated[
    Annotated[FixedLength, Tag("Fixed")]
    | Annotated[UniformLength, Tag("Uniform")]
    | Annotated[LognormalLength, Tag("Lognormal")]
    | Annotated[EmpiricalLength, Tag("Empirical")],
    Discriminator(
        _dist_tag,
        custom_error_type="invalid_length_dist",
        custom_error_message=f"expected 'dist' to be one of: {', '.join(_DIST_TAGS)}",
    ),
]


class LengthsConfig(_Model):
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


class GeneratorConfig(_Model):
    """A synthetic workload: an arrival process and the lengths of each request."""

    arrivals: ArrivalConfig
    lengths: LengthsConfig


class TraceColumns(_Model):
    """Column names in a trace CSV; the defaults match Vidur's processed traces."""

    arrival_s: str = Field(default="arrived_at", min_length=1)
    prompt_tokens: str = Field(default="num_prefill_tokens", min_length=1)
    output_tokens: str = Field(default="num_decode_tokens", min_length=1)


class TraceConfig(_Model):
    """A CSV trace to replay (``.gz`` and other pandas-inferred compressions are read transparently).

    Arrival times are in seconds. ``start_at_zero`` shifts them so the first
    request arrives at 0; ``time_scale`` then multiplies them (0.5 replays the
    trace at twice the rate).
    """

    path: str = Field(min_length=1)
    format: Literal["csv"] = "csv"
    columns: TraceColumns = TraceColumns()
    time_scale: float = Field(default=1.0, gt=0)
    start_at_zero: bool = True


class WorkloadConfig(_Model):
    """Where requests come from, and when to stop.

    Exactly one of ``generator`` and ``trace``. Generation stops at whichever
    of ``num_requests`` and ``duration_s`` (arrivals strictly before it) comes
    first; a generator needs one of them, a trace without either is replayed
    whole. ``max_output_tokens`` is the users' cap, copied onto every request.
    """

    generator: GeneratorConfig | None = None
    trace: TraceConfig | None = None
    num_requests: int | None = Field(default=None, gt=0)
    duration_s: float | None = Field(default=None, gt=0)
    max_output_tokens: Tokens | None = None

    @model_validator(mode="after")
    def _one_source(self) -> WorkloadConfig:
        if (self.generator is None) == (self.trace is None):
            raise ValueError("give exactly one of 'generator' and 'trace'")
        if self.generator is not None and self.num_requests is None and self.duration_s is None:
            raise ValueError("a generator needs 'num_requests' or 'duration_s' (or both) to stop")
        return self


def _check_bounds(low: int, high: int | None) -> None:
    if high is not None and low > high:
        raise ValueError(f"min_tokens ({low}) is greater than max_tokens ({high})")
