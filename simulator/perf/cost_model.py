"""Step times for an instance: GPU roofline time plus host-CPU overhead.

``CostModel`` is the protocol the engine depends on; ``InstanceCostModel`` is
the roofline-based implementation. Both are pure: no state, no randomness, no
SimPy, so they can be property-tested and called on arrays of shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from simulator.perf.roofline import Roofline
from simulator.perf.shape import StepShape


class CostModel(Protocol):
    """Times engine steps and reports the work they do."""

    def step_time_s(self, shape: StepShape) -> Any: ...

    def work(self, shape: StepShape) -> tuple[Any, Any]: ...


@dataclass(frozen=True, slots=True)
class HostOverhead:
    """Per-step host CPU time (scheduling, input preparation, sampling, detokenisation).

    Defaults are uncalibrated round figures of the order vLLM shows without
    CPU/GPU overlap (Vidur's cpu_overheads.csv reports a few ms per step for
    CodeLlama-34B); the calibration issue fits them per GPU and TP.
    """

    per_step_s: float = 1e-3
    per_sequence_s: float = 1e-5

    def __post_init__(self) -> None:
        if self.per_step_s < 0 or self.per_sequence_s < 0:
            raise ValueError("host overheads must be >= 0")

    def step_s(self, shape: StepShape) -> Any:
        return self.per_step_s + self.per_sequence_s * shape.num_seqs


class InstanceCostModel:
    """Roofline GPU time plus host overhead: the v0 cost model of an instance."""

    def __init__(self, roofline: Roofline, host: HostOverhead) -> None:
        self.roofline = roofline
        self.host = host

    def step_time_s(self, shape: StepShape) -> Any:
        return self.roofline.gpu_time_s(shape) + self.host.step_s(shape)

    def work(self, shape: StepShape) -> tuple[Any, Any]:
        return self.roofline.work(shape)

    def prefill_time_s(self, prompt_tokens: int) -> float:
        """Step time of a lone prompt computed in one step."""
        return self.step_time_s(StepShape.for_sequence(prompt_tokens, 0, samples=True))

    def decode_time_s(self, batch_size: int, context_tokens: int) -> float:
        """Step time of ``batch_size`` decodes, each with ``context_tokens`` cached."""
        one = StepShape.for_sequence(1, context_tokens, samples=True)
        return self.step_time_s(StepShape(batch_size, batch_size, batch_size,
                                          one.attention_pairs * batch_size,
                                          one.kv_read_tokens * batch_size))
