"""Building blocks shared by every part of the ``workload:`` schema.

All workload models are strict (unknown keys are refused), frozen and refuse
NaN and infinities. Tagged unions (``dist: ...``, ``process: ...``,
``kind: ...``) are built by ``tagged_union`` so that a wrong tag gives one
line listing the valid ones, and error locations never show the name of the
Python class that pydantic picked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from simulator.strict_numbers import refuse_booleans_as_numbers

# Large enough for any real request, small enough that token arithmetic never overflows int64.
TOKEN_CEILING = 2**31 - 1

# Durations (think times, tool latencies, on/off periods) and log-space spreads beyond these are
# not plausible, and they push simulated times past what float64 resolves.
MAX_SECONDS = 1e9
MAX_SIGMA = 10.0

# Token counts in a configuration are whole tokens, at least one.
Tokens = Annotated[int, Field(gt=0, le=TOKEN_CEILING)]


class StrictModel(BaseModel):
    """Frozen, closed to unknown keys, and refusing NaN and infinities in floats."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        return refuse_booleans_as_numbers(cls, data)


def tagged_union(key: str, members: dict[str, type[BaseModel]]) -> Any:
    """An annotated union of ``members`` chosen by the value of ``key`` in the mapping.

    Tags are capitalised because ``condense_validation_error`` drops
    capitalised location parts, which keeps the chosen member out of messages.
    """
    tags = {value: value[:1].upper() + value[1:] for value in members}

    def choose(data: Any) -> str | None:
        value = data.get(key) if isinstance(data, dict) else getattr(data, key, None)
        return tags.get(value) if isinstance(value, str) else None

    options = tuple(Annotated[cls, Tag(tags[value])] for value, cls in members.items())
    return Annotated[Union[options], Discriminator(  # noqa: UP007 - a runtime tuple needs Union[...]
        choose, custom_error_type=f"invalid_{key}",
        custom_error_message=f"expected '{key}' to be one of: {', '.join(members)}")]


def check_bounds(low: float, high: float | None, what: str = "min_tokens", other: str = "max_tokens") -> None:
    """``ValueError`` when a lower bound exceeds its upper bound."""
    if high is not None and low > high:
        raise ValueError(f"{what} ({low:g}) is greater than {other} ({high:g})")


def check_quantile_table(probabilities: Sequence[float], values: Sequence[float]) -> None:
    """A quantile table runs from probability 0 to 1, strictly increasing, with non-decreasing values."""
    if len(probabilities) != len(values) or len(values) < 2:
        raise ValueError("probabilities and values need the same length, at least 2")
    if probabilities[0] != 0 or probabilities[-1] != 1:
        raise ValueError("probabilities must start at 0 and end at 1")
    if any(b <= a for a, b in zip(probabilities, probabilities[1:])):
        raise ValueError("probabilities must be strictly increasing")
    if any(b < a for a, b in zip(values, values[1:])):
        raise ValueError("quantile values must be non-decreasing")
