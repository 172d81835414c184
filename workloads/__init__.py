"""Workloads: the requests a simulated cluster serves.

A workload is either replayed from a trace (CSV, optionally compressed) or
generated from an arrival process and length distributions, including
built-in profiles fitted to public traces. Either way the engine receives
``RequestSpec`` values in arrival order from ``build_workload``.
"""

from workloads.build import build_workload
from workloads.config import (
    ArrivalConfig, EmpiricalLength, FixedLength, GeneratorConfig, LengthDist, LengthsConfig, LognormalLength,
    TraceColumns, TraceConfig, UniformLength, WorkloadConfig,
)
from workloads.profiles import get_profile, profile_names
from workloads.stream import Workload, WorkloadStats

__all__ = [
    "ArrivalConfig", "EmpiricalLength", "FixedLength", "GeneratorConfig", "LengthDist", "LengthsConfig",
    "LognormalLength", "TraceColumns", "TraceConfig", "UniformLength", "Workload", "WorkloadConfig",
    "WorkloadStats", "build_workload", "get_profile", "profile_names",
]
