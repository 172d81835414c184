"""GPU power between idle and TDP, from how hard a step drives compute and memory.

Busy power = idle + (TDP - idle) x load, where load is the larger of the
step's achieved compute fraction (FLOPs over the rate the GPU can sustain)
and ``memory_weight`` times its achieved bandwidth fraction. With
``memory_weight = 0.5`` this reproduces Splitwise's per-GPU constants: a
compute-bound prompt step draws about TDP (H100 700 W, A100 400 W) and a
memory-bound decode step about half-way (H100 380 W, A100 250 W; Patel et
al., ISCA 2024, via splitwise-sim). Idle time draws ``idle_w``.

Power capping (Splitwise's H100 capped at 70% of TDP): a GPU whose demand
would exceed ``cap x TDP`` lowers its clocks until it fits. We model dynamic
power (above idle) as proportional to ``clock ** gamma``, so the compute rate
the GPU can sustain at the cap is the fraction
``((cap x TDP - idle) / (TDP - idle)) ** (1 / gamma)`` of its peak (1 when
the cap is above TDP); memory bandwidth is not scaled. A compute-bound
prompt step therefore slows by about that factor, while a memory-bound decode
step, whose demand stays below the cap, barely changes - as Splitwise
measured. ``gamma`` is fitted to splitwise-sim's ``h100-80gb-pcap`` rows by
``servesim calibrate`` within the physical range [1, 3] (those rows, which scale
whole prompt times by 1.3, put it at 1: compute 1.5x slower at 70% of an
H100's TDP); busy power is clipped at the cap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.hardware import GpuProfile


@dataclass(frozen=True, slots=True)
class PowerModel:
    """Energy of steps on ``gpu_count`` GPUs of one type."""

    gpu: GpuProfile
    gpu_count: int
    sustained_flops_per_gpu: float
    sustained_bytes_per_s_per_gpu: float
    memory_weight: float = 0.5
    power_cap_w: float | None = None

    def busy_energy_j(self, duration_s: float, flops: float, hbm_bytes: float) -> float:
        """Joules drawn by all the instance's GPUs during one step (or an array of steps)."""
        compute = flops / (self.sustained_flops_per_gpu * self.gpu_count * duration_s)
        memory = hbm_bytes / (self.sustained_bytes_per_s_per_gpu * self.gpu_count * duration_s)
        # The builtins on floats (one step) give the same values as numpy's, several times faster.
        array = isinstance(compute, np.ndarray) or isinstance(memory, np.ndarray)
        minimum, maximum = (np.minimum, np.maximum) if array else (min, max)
        load = minimum(1.0, maximum(compute, self.memory_weight * memory))
        watts = self.gpu.idle_w + (self.gpu.tdp_w - self.gpu.idle_w) * load
        if self.power_cap_w is not None:
            watts = minimum(watts, self.power_cap_w)
        return watts * self.gpu_count * duration_s

    def idle_energy_j(self, duration_s: float) -> float:
        return self.gpu.idle_w * self.gpu_count * max(0.0, duration_s)


# Used only when no calibration provides a fitted exponent: the middle of the
# physical range, from 1 (clock scaling at fixed voltage) to 3 (voltage tracking clock).
DEFAULT_DYNAMIC_POWER_EXPONENT = 2.0


def capped_compute_scale(gpu: GpuProfile, cap_fraction: float | None,
                         exponent: float = DEFAULT_DYNAMIC_POWER_EXPONENT) -> float:
    """Fraction of peak FLOP/s ``gpu`` sustains when capped at ``cap_fraction`` of its TDP."""
    if cap_fraction is None:
        return 1.0
    if not 0 < cap_fraction <= 1 or exponent <= 0:
        raise ValueError("power cap fraction must be in (0, 1] and the exponent positive")
    headroom = (cap_fraction * gpu.tdp_w - gpu.idle_w) / (gpu.tdp_w - gpu.idle_w)
    if headroom <= 0:
        raise ValueError(f"a cap of {cap_fraction:.0%} of TDP is below {gpu.name}'s idle power")
    return min(1.0, headroom) ** (1.0 / exponent)
