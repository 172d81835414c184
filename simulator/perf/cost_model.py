"""Step times for an instance: GPU roofline time plus host-CPU overhead.

``CostModel`` is the protocol the engine depends on; ``InstanceCostModel`` is
the roofline-based implementation. Both are pure: no state, no randomness, no
SimPy, so they can be property-tested and called on arrays of shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from simulator.perf.roofline import Roofline
from simulator.perf.shape import StepShape


class CostModel(Protocol):
    """Times engine steps and reports the work they do."""

    def step_time_s(self, shape: StepShape) -> Any: ...

    def work(self, shape: StepShape) -> tuple[Any, Any]: ...


@dataclass(frozen=True, slots=True)
class HostOverhead:
    """Per-step serving overhead beyond the GPU kernels: host CPU time and stack effects.

    ``per_step_s + per_sequence_s x sequences``, plus for steps that prefill
    (some sequence adds more than one token) ``per_prefill_step_s`` and
    ``per_prefill_token_s`` for every prefill token beyond
    ``prefill_knee_tokens``. The prefill terms describe what whole-iteration
    measurements show and kernel profiles do not: Splitwise's vLLM (2023)
    spent about 10 ms more on a prompt step than on a decode step, and its
    prefill throughput dropped beyond about 2k tokens per step.

    The defaults are uncalibrated round figures of the order vLLM shows
    without CPU/GPU overlap; ``servesim calibrate`` fits all five per GPU and
    tensor-parallel degree (``hardware_profiles/calibration/``).
    """

    per_step_s: float = 1e-3
    per_sequence_s: float = 1e-5
    per_prefill_step_s: float = 0.0
    per_prefill_token_s: float = 0.0
    prefill_knee_tokens: float = 0.0

    def __post_init__(self) -> None:
        if min(self.per_step_s, self.per_sequence_s, self.per_prefill_step_s, self.per_prefill_token_s,
               self.prefill_knee_tokens) < 0:
            raise ValueError("host overheads must be >= 0")

    def step_s(self, shape: StepShape) -> Any:
        base = self.per_step_s + self.per_sequence_s * shape.num_seqs
        if not (self.per_prefill_step_s or self.per_prefill_token_s):
            return base
        extra = shape.num_tokens - shape.num_seqs  # tokens beyond one per sequence: prefill work
        beyond = np.maximum(extra - self.prefill_knee_tokens, 0.0)
        return base + (extra > 0) * (self.per_prefill_step_s + self.per_prefill_token_s * beyond)


class InstanceCostModel:
    """Roofline GPU time plus host overhead: the cost model of an instance.

    The dense part of a step (everything but attention, plus the host
    overhead) depends only on the token, sequence and sample counts, which
    repeat step after step; it is memoised per count triple.
    """

    def __init__(self, roofline: Roofline, host: HostOverhead) -> None:
        self.roofline = roofline
        self.host = host
        self._dense: dict[tuple[Any, Any, Any], tuple[Any, Any, Any]] = {}

    def _dense_part(self, shape: StepShape) -> tuple[Any, Any, Any]:
        """(seconds incl. host overhead, FLOPs, bytes) of the dense part, cached by counts."""
        key = (shape.num_tokens, shape.num_seqs, shape.num_sampled)
        found = self._dense.get(key)
        if found is None:
            flops, hbm = self.roofline.dense_work(shape.num_tokens, shape.num_sampled)
            seconds = self.roofline.dense_time_s(shape.num_tokens, shape.num_sampled) + self.host.step_s(shape)
            found = (seconds, flops, hbm)
            if len(self._dense) < 4096:  # decode batch sizes repeat; prefill token counts rarely do
                self._dense[key] = found
        return found

    def step_time_s(self, shape: StepShape) -> Any:
        """(dense GPU time + host overhead) + attention: one order for steps and decode runs alike."""
        if isinstance(shape.num_tokens, np.ndarray):
            fixed = self.roofline.dense_time_s(shape.num_tokens, shape.num_sampled) + self.host.step_s(shape)
        else:
            fixed = self._dense_part(shape)[0]
        return fixed + self.roofline.attention_time_s(shape)

    def work(self, shape: StepShape) -> tuple[Any, Any]:
        if isinstance(shape.num_tokens, np.ndarray):
            return self.roofline.work(shape)
        _, flops, hbm = self._dense_part(shape)
        attention_flops, attention_bytes = self.roofline.attention_work(shape)
        return flops + attention_flops, hbm + attention_bytes

    def prefill_time_s(self, prompt_tokens: int) -> float:
        """Step time of a lone prompt computed in one step."""
        return self.step_time_s(StepShape.for_sequence(prompt_tokens, 0, samples=True))

    def decode_time_s(self, batch_size: int, context_tokens: int) -> float:
        """Step time of ``batch_size`` decodes, each with ``context_tokens`` cached."""
        one = StepShape.for_sequence(1, context_tokens, samples=True)
        return self.step_time_s(StepShape(batch_size, batch_size, batch_size,
                                          one.attention_pairs * batch_size,
                                          one.kv_read_tokens * batch_size))
