"""Achieved fractions of peak (efficiencies) for each operator class.

The roofline divides FLOPs by ``peak x eta_compute`` and bytes by
``bandwidth x eta_memory``. Efficiencies depend on the operator class and on
its size: a small GEMM does not fill the GPU, a 4 KiB all-reduce is all
latency. Each efficiency is either a constant or a ``Curve`` of the
operator's size (FLOPs for compute, bytes for memory and links); the
calibration (``simulator.perf.calibration``) fits the curves to measured
timings, and the constants are the uncalibrated fallback.

Curves accept floats or numpy arrays and give bit-identical results for a
value on its own and the same value inside an array, so a decode run can be
timed as one array of step shapes.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

OPERATOR_CLASSES = ("gemm", "attention", "elementwise", "collective", "p2p")
# Elementwise kernels differ a lot at equal size (a residual add streams at ~95% of
# HBM bandwidth, an RMSNorm at ~30%), so each has its own memory curve; operators
# that share a kernel share its curve.
KERNEL_OF = {"input_norm": "norm", "post_attention_norm": "norm", "final_norm": "norm"}


@dataclass(frozen=True, slots=True)
class Curve:
    """An efficiency as a piecewise-linear function of size, flat beyond the end knots.

    Interpolation is linear in the size itself (not its logarithm) so that the
    scalar and the array path use only multiplications and additions, which
    IEEE arithmetic rounds identically in Python and in numpy; the calibration
    places knots a factor of about two apart, which keeps the pieces short.

    Attributes:
        sizes: increasing knot positions (FLOPs or bytes).
        values: efficiency at each knot, in (0, 1].
    """

    sizes: tuple[float, ...]
    values: tuple[float, ...]
    _slopes: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _arrays: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sizes = tuple(float(s) for s in self.sizes)
        values = tuple(float(v) for v in self.values)
        if not sizes or len(sizes) != len(values):
            raise ValueError("a curve needs as many values as sizes, at least one")
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise ValueError("curve sizes must increase")
        if not all(0 < v <= 1 for v in values):
            raise ValueError(f"curve values must be in (0, 1], got {values}")
        slopes = tuple((y1 - y0) / (x1 - x0) for x0, x1, y0, y1 in zip(sizes, sizes[1:], values, values[1:]))
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "_slopes", slopes)
        object.__setattr__(self, "_arrays", (np.array(sizes), np.array(values)))

    def __call__(self, size: Any) -> Any:
        if isinstance(size, np.ndarray):
            return self._on_array(size)
        return self._on_scalar(float(size))

    def _on_scalar(self, x: float) -> float:
        sizes, values = self.sizes, self.values
        if x <= sizes[0]:
            return values[0]
        if x >= sizes[-1]:
            return values[-1]
        j = bisect_right(sizes, x) - 1
        return self._slopes[j] * (x - sizes[j]) + values[j]

    def _on_array(self, x: np.ndarray) -> np.ndarray:
        # np.interp clamps at both ends like _on_scalar; one C call instead of five
        # numpy passes matters because decode runs evaluate curves on every rebuild.
        sizes, values = self._arrays
        return np.interp(x, sizes, values)

    @property
    def peak(self) -> float:
        """The highest efficiency on the curve (what large operators sustain)."""
        return max(self.values)


Efficiency = float | Curve


@dataclass(frozen=True, slots=True)
class Efficiencies:
    """Efficiencies per operator class: constants (uncalibrated defaults) or fitted curves.

    The constant defaults are round numbers chosen so that Vidur's H100
    Llama-2-7B per-layer GEMM timings (../shared/data/vidur_profiling) are
    matched within about 10% at 512 tokens; ``servesim calibrate`` replaces
    them with curves fitted per GPU (see ``hardware_profiles/calibration/``).
    ``attention_compute`` is the prefill-attention efficiency and
    ``attention_memory`` the decode-attention one. The latencies, when set,
    replace the link's hop latency with a fitted fixed cost per collective
    call or pipeline send. ``kernels`` holds memory curves of named
    elementwise kernels (``norm``, ``rope``, ``mlp_act``, ``residual_add``,
    ``embedding``) that replace ``elementwise_memory`` for those operators.
    """

    gemm_compute: Efficiency = 0.70
    gemm_memory: Efficiency = 0.80
    attention_compute: Efficiency = 0.50
    attention_memory: Efficiency = 0.70
    elementwise_compute: Efficiency = 0.50
    elementwise_memory: Efficiency = 0.70
    collective_bandwidth: Efficiency = 0.75
    p2p_bandwidth: Efficiency = 0.80
    kernel_launch_s: float = 2e-6
    collective_latency_s: float | None = None
    p2p_latency_s: float | None = None
    kernels: tuple[tuple[str, Curve], ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "kernels":
                if not all(isinstance(k, str) and isinstance(c, Curve) for k, c in value):
                    raise ValueError("kernels must be (name, Curve) pairs")
            elif f.name.endswith("_s"):
                if value is not None and value < 0:
                    raise ValueError(f"{f.name} must be >= 0, got {value}")
            elif not isinstance(value, Curve) and not 0 < value <= 1:
                raise ValueError(f"efficiency {f.name} must be in (0, 1], got {value}")

    def compute(self, op_class: str, size: Any = None) -> Any:
        """Fraction of peak FLOP/s an operator of ``op_class`` with ``size`` FLOPs achieves."""
        return _at(getattr(self, f"{op_class}_compute"), size)

    def memory(self, op_class: str, size: Any = None, name: str = "") -> Any:
        """Fraction of peak bandwidth an operator of ``op_class`` moving ``size`` bytes achieves.

        ``name`` is the operator's name; an elementwise operator whose kernel has
        its own curve uses it.
        """
        if self.kernels and op_class == "elementwise":
            kernel = KERNEL_OF.get(name, name)
            for known, curve in self.kernels:
                if known == kernel:
                    return curve(size) if size is not None else curve.peak
        if op_class in ("collective", "p2p"):
            return _at(getattr(self, f"{op_class}_bandwidth"), size)
        return _at(getattr(self, f"{op_class}_memory"), size)

    def of_operator(self, op_class: str, name: str = "") -> tuple[Efficiency, Efficiency]:
        """The compute and memory efficiencies (constants or curves) that ``compute`` and
        ``memory`` evaluate for an operator of a layer (gemm, attention or elementwise
        class); callers that time many operators resolve them once."""
        memory: Efficiency = getattr(self, f"{op_class}_memory")
        if self.kernels and op_class == "elementwise":
            kernel = KERNEL_OF.get(name, name)
            memory = next((curve for known, curve in self.kernels if known == kernel), memory)
        return getattr(self, f"{op_class}_compute"), memory

    def sustained(self, name: str) -> float:
        """The best efficiency of field ``name`` (a curve's peak), e.g. for power accounting."""
        value = getattr(self, name)
        return value.peak if isinstance(value, Curve) else value


def _at(value: Efficiency, size: Any) -> Any:
    if isinstance(value, Curve):
        if size is None:
            return value.peak
        return value(size)
    return value
