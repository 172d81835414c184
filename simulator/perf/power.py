"""GPU power between idle and TDP, from how hard a step drives compute and memory.

Busy power = idle + (TDP - idle) x load, where load is the larger of the
step's achieved compute fraction (FLOPs over the rate the GPU can sustain)
and ``memory_weight`` times its achieved bandwidth fraction. With
``memory_weight = 0.5`` this reproduces Splitwise's per-GPU constants: a
compute-bound prompt step draws about TDP (H100 700 W, A100 400 W) and a
memory-bound decode step about half-way (H100 380 W, A100 250 W; Patel et
al., ISCA 2024, via splitwise-sim). Idle time draws ``idle_w``.
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

    def busy_energy_j(self, duration_s: float, flops: float, hbm_bytes: float) -> float:
        """Joules drawn by all the instance's GPUs during one step (or an array of steps)."""
        compute = flops / (self.sustained_flops_per_gpu * self.gpu_count * duration_s)
        memory = hbm_bytes / (self.sustained_bytes_per_s_per_gpu * self.gpu_count * duration_s)
        load = np.minimum(1.0, np.maximum(compute, self.memory_weight * memory))
        watts = self.gpu.idle_w + (self.gpu.tdp_w - self.gpu.idle_w) * load
        return watts * self.gpu_count * duration_s

    def idle_energy_j(self, duration_s: float) -> float:
        return self.gpu.idle_w * self.gpu_count * max(0.0, duration_s)
