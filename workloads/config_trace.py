"""Trace replay in the schema: which file, how to read it, and how to transform it.

``format: auto`` (the default) recognises the built-in formats from the
file's header or first record; ``columns`` maps a generic CSV or JSONL file.
Transforms run in a fixed order, documented on ``TransformsConfig``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from simulator.errors import RegistryError
from simulator.registry import is_import_path
from workloads.config_base import StrictModel
from workloads.registry import TRACE_READERS

FilterValue = str | int | float

# Bounds of time_scale and rate_scale: a billion either way is far beyond any real retiming.
SCALE_RANGE = (1e-9, 1e9)


class TraceColumns(StrictModel):
    """Column (CSV) or key (JSONL) names of a generic trace; the defaults are Vidur's.

    ``time_unit`` says what the arrival column holds: seconds, milli-, micro- or
    nanoseconds, or ISO date-times. ``prefix_hashes`` names a JSONL key holding a
    list of integer hashes of ``prefix_block_tokens``-token prompt blocks.
    The label columns copy a tenant, priority or SLO class onto each request.
    """

    arrival_s: str = Field(default="arrived_at", min_length=1)
    prompt_tokens: str = Field(default="num_prefill_tokens", min_length=1)
    output_tokens: str = Field(default="num_decode_tokens", min_length=1)
    time_unit: Literal["s", "ms", "us", "ns", "datetime"] = "s"
    session_id: str | None = None
    tenant: str | None = None
    priority: str | None = None
    slo_class: str | None = None
    prefix_hashes: str | None = None
    prefix_block_tokens: int | None = Field(default=None, gt=0, le=1 << 20)

    @model_validator(mode="after")
    def _block_size_with_hashes(self) -> TraceColumns:
        if (self.prefix_hashes is None) != (self.prefix_block_tokens is None):
            raise ValueError("give 'prefix_hashes' and 'prefix_block_tokens' together")
        return self

    def optional(self) -> dict[str, str]:
        """The label and hash columns that are set, by role."""
        roles = ("session_id", "tenant", "priority", "slo_class", "prefix_hashes")
        return {role: getattr(self, role) for role in roles if getattr(self, role) is not None}


class TransformsConfig(StrictModel):
    """What to keep of a trace and how to retime it, applied in this order:

    1. ``filter``: keep rows whose column holds one of the listed values;
    2. ``window_s: [start, end]``: keep rows arriving in ``[start, end)`` seconds
       (trace time, after the ``start_at_zero`` shift); ``start`` becomes time 0;
    3. ``first_n`` (the first N rows) or ``sample_n`` (N rows drawn at random
       without replacement, kept in time order);
    4. ``time_scale`` multiplies times (0.5 replays twice as fast), or
       ``rate_scale`` multiplies the rate (2 replays twice as fast).

    Both factors lie in ``SCALE_RANGE``: beyond it they only come from typos, and
    arrival times would overflow to infinity or collapse to one instant.
    """

    filter: dict[str, list[FilterValue]] | None = None
    window_s: tuple[float, float] | None = None
    first_n: int | None = Field(default=None, gt=0)
    sample_n: int | None = Field(default=None, gt=0)
    time_scale: float = Field(default=1.0, gt=0)
    rate_scale: float | None = Field(default=None, gt=0)

    @field_validator("time_scale", "rate_scale")
    @classmethod
    def _plausible_factor(cls, value: float | None) -> float | None:
        low, high = SCALE_RANGE
        if value is not None and not low <= value <= high:
            raise ValueError(f"expected a factor from {low:g} to {high:g}, got {value:g} (beyond them arrival "
                             "times overflow to infinity or collapse to one instant)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TransformsConfig:
        if self.window_s is not None and not 0 <= self.window_s[0] < self.window_s[1]:
            raise ValueError("window_s must be [start, end] with 0 <= start < end")
        if self.first_n is not None and self.sample_n is not None:
            raise ValueError("give at most one of 'first_n' and 'sample_n'")
        if self.rate_scale is not None and self.time_scale != 1.0:
            raise ValueError("give at most one of 'time_scale' and 'rate_scale'")
        if self.filter is not None and not all(self.filter.values()):
            raise ValueError("every filter column needs at least one value")
        return self

    @property
    def time_factor(self) -> float:
        """What arrival times are multiplied by."""
        return 1.0 / self.rate_scale if self.rate_scale is not None else self.time_scale


class TraceConfig(StrictModel):
    """A trace to replay (``.gz``, ``.bz2``, ``.xz`` are read transparently).

    ``on_unsorted``: rows out of time order are an error naming the first such
    line, or, with ``sort``, sorted stably in memory and counted.
    ``start_at_zero`` shifts times so the first row arrives at 0.
    ``time_scale`` directly under ``trace`` is accepted for older files and
    means ``transforms.time_scale``.
    """

    path: str = Field(min_length=1)
    format: str = "auto"
    columns: TraceColumns | None = None
    on_unsorted: Literal["error", "sort"] = "error"
    start_at_zero: bool = True
    transforms: TransformsConfig = TransformsConfig()

    @model_validator(mode="before")
    @classmethod
    def _legacy_time_scale(cls, data: Any) -> Any:
        if isinstance(data, dict) and "time_scale" in data:
            data = dict(data)
            transforms = dict(data.get("transforms") or {})
            if "time_scale" in transforms:
                raise ValueError("give time_scale once, under 'transforms'")
            transforms["time_scale"] = data.pop("time_scale")
            data["transforms"] = transforms
        return data

    @field_validator("format")
    @classmethod
    def _known_format(cls, name: str) -> str:
        known = TRACE_READERS.names()
        if is_import_path(name):
            try:  # refused unless --allow-import; then it must import a class
                TRACE_READERS.get(name)
            except RegistryError as err:
                raise ValueError(str(err)) from None
        elif name != "auto" and name not in known:
            raise ValueError(f"unknown trace format {name!r}; known: auto, {', '.join(known)}")
        return name

    @model_validator(mode="after")
    def _columns_for_generic_formats(self) -> TraceConfig:
        if self.columns is not None and self.format not in ("auto", "csv", "jsonl"):
            raise ValueError(f"'columns' applies to format csv or jsonl, not {self.format}")
        return self
