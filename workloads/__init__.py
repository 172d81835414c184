"""Workloads: the requests and sessions a simulated cluster serves.

A workload is replayed from a trace (Azure, BurstGPT, Mooncake, Vidur,
Splitwise or any CSV/JSONL, optionally compressed, with transforms),
generated (Poisson, gamma, Weibull or on/off arrivals with fitted or given
lengths; ServeGen per-client descriptions), made of sessions (multi-turn
conversations, agent tasks, closed-loop clients), or a mix of these. Either
way the engine receives ``RequestSpec`` and ``SessionSpec`` values in arrival
order from ``build_workload``.
"""

from workloads.build import build_workload
from workloads.config import (
    AgentConfig, ArrivalConfig, ClosedLoopConfig, ConversationConfig, EmpiricalLength, FixedLength,
    GeneratorConfig, LengthDist, LengthsConfig, LognormalLength, ServeGenConfig, SourceConfig, TraceColumns,
    TraceConfig, TransformsConfig, UniformLength, WorkloadConfig,
)
from workloads.prefix import implied_shared_prefix_tokens
from workloads.profiles import get_profile, profile_names
from workloads.readers import TraceReader
from workloads.registry import TRACE_READERS
from workloads.stream import Workload, WorkloadStats

__all__ = [
    "TRACE_READERS", "AgentConfig", "ArrivalConfig", "ClosedLoopConfig", "ConversationConfig", "EmpiricalLength",
    "FixedLength", "GeneratorConfig", "LengthDist", "LengthsConfig", "LognormalLength", "ServeGenConfig",
    "SourceConfig", "TraceColumns", "TraceConfig", "TraceReader", "TransformsConfig", "UniformLength",
    "Workload", "WorkloadConfig", "WorkloadStats", "build_workload", "get_profile", "implied_shared_prefix_tokens",
    "profile_names",
]
