"""Achieved fractions of peak (efficiencies) for each operator class.

The roofline divides FLOPs by ``peak x eta_compute`` and bytes by
``bandwidth x eta_memory``. Efficiencies depend on the operator class and, in
reality, on its size (small GEMMs do not fill the GPU). ``Efficiencies`` holds
one constant per class; ``eta`` takes the size so that calibrated curves can
replace the constants without touching the roofline.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

OPERATOR_CLASSES = ("gemm", "attention", "elementwise", "collective", "p2p")


@dataclass(frozen=True, slots=True)
class Efficiencies:
    """Default efficiencies, uncalibrated.

    The defaults are round numbers chosen so that Vidur's H100 Llama-2-7B
    per-layer GEMM timings (../shared/data/vidur_profiling) are matched within
    about 10% at 512 tokens; the calibration issue replaces them with fitted
    curves per GPU.
    """

    gemm_compute: float = 0.70
    gemm_memory: float = 0.80
    attention_compute: float = 0.50
    attention_memory: float = 0.70
    elementwise_compute: float = 0.50
    elementwise_memory: float = 0.70
    collective_bandwidth: float = 0.75
    p2p_bandwidth: float = 0.80
    kernel_launch_s: float = 2e-6

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "kernel_launch_s" and not 0 < value <= 1:
                raise ValueError(f"efficiency {f.name} must be in (0, 1], got {value}")
        if self.kernel_launch_s < 0:
            raise ValueError("kernel_launch_s must be >= 0")

    def compute(self, op_class: str, size: Any = None) -> float:
        """Fraction of peak FLOP/s an operator of ``op_class`` achieves (size unused here)."""
        return getattr(self, f"{op_class}_compute")

    def memory(self, op_class: str, size: Any = None) -> float:
        """Fraction of peak bandwidth an operator of ``op_class`` achieves (size unused here)."""
        if op_class in ("collective", "p2p"):
            return getattr(self, f"{op_class}_bandwidth")
        return getattr(self, f"{op_class}_memory")
