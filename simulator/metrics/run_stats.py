"""Run-level aggregates the engine accumulates, beside the per-request table.

The per-request table (``requests.csv``) holds one row per request. Everything
that is not per request - busy time, FLOPs, bytes, energy, event counters, the
histogram of inter-token gaps - lives here, so the summary can be computed from
these two objects alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class InstanceStats:
    """Totals for one model instance (a group of ``gpu_count`` GPUs serving one replica)."""

    instance_id: int
    gpu: str
    gpu_count: int
    peak_flops_per_gpu: float
    hbm_bytes_per_s_per_gpu: float
    usd_per_hour_per_gpu: float
    kv_capacity_blocks: int
    busy_s: float = 0.0
    steps: int = 0
    flops: float = 0.0
    hbm_bytes: float = 0.0
    energy_j: float = 0.0
    # Time-weighted KV usage: integral of used/total blocks over time, and the peak.
    kv_usage_integral: float = 0.0
    kv_peak_fraction: float = 0.0
    # Seconds the instance was provisioned, when auto-scaling started or drained instances (None: the whole run).
    active_s: float | None = None


@dataclass(slots=True)
class EventCounts:
    """Counters of engine events that do not belong to one request."""

    preemptions: int = 0
    migrations: int = 0
    kv_transfer_bytes: float = 0.0
    prefix_hit_tokens: int = 0


@dataclass(slots=True)
class RunStats:
    """Everything the summary needs besides the per-request table.

    Attributes:
        simulated_s: virtual time at the end of the run.
        wall_s: wall-clock seconds the simulation took (excluded from determinism checks).
        steps: engine steps over all instances.
        instances: per-instance totals.
        events: event counters.
        token_gap_histogram: a ``LogHistogram`` of every inter-token gap, in seconds.
        extra: anything a mechanism wants to surface (kept in summary under its key).
    """

    simulated_s: float
    wall_s: float
    steps: int
    instances: list[InstanceStats]
    events: EventCounts
    token_gap_histogram: Any
    extra: dict[str, Any] = field(default_factory=dict)
