"""Fitted performance parameters per GPU, and how an instance's cost model is built from them.

``servesim calibrate`` (``simulator.perf.calibrate``) fits, per measured GPU,
efficiency curves per operator class (GEMM, prefill and decode attention,
elementwise kernels), collective and point-to-point curves per link and GPU
count, the serving overhead per tensor-parallel degree and the power-cap
exponent, and writes them to ``hardware_profiles/calibration/<gpu>.yaml``
with their sources and fit errors. This module reads those files and turns
them into the ``Efficiencies``, ``HostOverhead`` and compute scale of one
instance.

A GPU without a measurement of some part takes that part from the nearest
measured GPU of its generation (nearest in peak FLOP/s and memory bandwidth);
with none in its generation it keeps the documented uncalibrated defaults.
``calibration_index`` lists where every catalog GPU's parts come from.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.errors import ProfileError, located
from simulator.hardware import CATALOG_ROOT, DEFAULT_CATALOG, Catalog, GpuProfile, LinkProfile, ModelSpec
from simulator.perf.cost_model import HostOverhead, InstanceCostModel
from simulator.perf.efficiency import Curve, Efficiencies
from simulator.perf.power import DEFAULT_DYNAMIC_POWER_EXPONENT, capped_compute_scale
from simulator.perf.roofline import Roofline

CALIBRATION_DIR = CATALOG_ROOT / "calibration"
PARTS = ("operators", "collectives", "p2p", "serving", "power_cap")
OPERATOR_CURVES = ("gemm_compute", "gemm_memory", "attention_compute", "attention_memory", "elementwise_memory")


@dataclass(frozen=True)
class LinkCurve:
    """A collective (or send/recv) on one link among ``gpus`` GPUs: fixed latency plus bandwidth curve."""

    op: str
    link: str
    gpus: int
    latency_s: float
    efficiency: Curve


@dataclass(frozen=True)
class ServingOverhead:
    """The fitted ``HostOverhead`` of one tensor-parallel degree, for a model of ``layers`` layers.

    The per-step and prefill terms are taken to scale with the number of
    layers (eager-mode engines launch every layer's kernels from the CPU); the
    per-sequence term does not. DistServe's vLLM fit on OPT-13B (40 layers,
    A100) gives about half the per-step overhead Splitwise's Llama-2-70B (80
    layers) does, as this predicts.
    """

    tp: int
    host: HostOverhead
    layers: int

    def for_layers(self, layers: int) -> HostOverhead:
        ratio = layers / self.layers
        h = self.host
        return dataclasses.replace(h, per_step_s=h.per_step_s * ratio, per_prefill_step_s=h.per_prefill_step_s * ratio,
                                   per_prefill_token_s=h.per_prefill_token_s * ratio)


@dataclass(frozen=True)
class GpuCalibration:
    """Everything fitted for one GPU; a part that was not measured is empty or None."""

    gpu: str
    curves: dict[str, Curve] = field(default_factory=dict)
    kernels: dict[str, Curve] = field(default_factory=dict)
    kernel_launch_s: float | None = None
    links: tuple[LinkCurve, ...] = ()
    serving: tuple[ServingOverhead, ...] = ()
    power_exponent: float | None = None
    report: dict[str, Any] = field(default_factory=dict)  # sources and fit errors, written as-is

    def has(self, part: str) -> bool:
        return {"operators": bool(self.curves), "collectives": any(c.op == "all_reduce" for c in self.links),
                "p2p": any(c.op == "send_recv" for c in self.links), "serving": bool(self.serving),
                "power_cap": self.power_exponent is not None}[part]


# ------------------------------------------------------------------ resolution
@dataclass(frozen=True)
class ResolvedCalibration:
    """The parts used for one GPU and the GPU each came from (None: uncalibrated default)."""

    gpu: str
    parts: dict[str, GpuCalibration | None]

    def origin(self, part: str) -> str | None:
        found = self.parts.get(part)
        return None if found is None else found.gpu


def load_calibrations(folder: Path = CALIBRATION_DIR) -> dict[str, GpuCalibration]:
    """Every ``<gpu>.yaml`` in ``folder`` (``index.yaml`` excluded)."""
    from simulator.perf.calibration_io import read_calibration

    return {p.stem: read_calibration(p) for p in sorted(Path(folder).glob("*.yaml")) if p.stem != "index"}


def resolve(gpu: GpuProfile, calibrations: dict[str, GpuCalibration],
            catalog: Catalog = DEFAULT_CATALOG) -> ResolvedCalibration:
    """For each part, the GPU's own calibration or the nearest measured GPU of its generation."""
    parts: dict[str, GpuCalibration | None] = {}
    for part in PARTS:
        own = calibrations.get(gpu.name)
        if own is not None and own.has(part):
            parts[part] = own
            continue
        donors = [c for name, c in calibrations.items() if c.has(part) and name != gpu.name
                  and _generation(name, catalog) == gpu.generation and gpu.generation]
        parts[part] = min(donors, key=lambda c: (_distance(gpu, catalog.get("gpu", c.gpu)), c.gpu), default=None)
    return ResolvedCalibration(gpu.name, parts)


def _generation(name: str, catalog: Catalog) -> str:
    try:
        return catalog.get("gpu", name).generation
    except ProfileError:
        return ""


def _distance(a: GpuProfile, b: GpuProfile) -> float:
    """How far apart two GPUs are: log ratios of peak 16-bit FLOP/s and memory bandwidth."""
    flops = math.log(a.peak_flops("bf16") / b.peak_flops("bf16"))
    bandwidth = math.log(a.hbm_bandwidth_gb_per_s / b.hbm_bandwidth_gb_per_s)
    return math.hypot(flops, bandwidth)


def calibration_index(calibrations: dict[str, GpuCalibration], catalog: Catalog = DEFAULT_CATALOG) -> dict:
    """For every catalog GPU, which GPU's fit each part comes from ('default' when none)."""
    index = {}
    for name in catalog.names("gpu"):
        resolved = resolve(catalog.get("gpu", name), calibrations, catalog)
        index[name] = {part: resolved.origin(part) or "default" for part in PARTS}
    return index


# ------------------------------------------------------------------ building
def efficiencies(resolved: ResolvedCalibration, tp: int, tp_link: LinkProfile | None,
                 pp_link: LinkProfile | None, overrides: dict[str, float] | None = None) -> Efficiencies:
    """The efficiencies of an instance on ``tp`` GPUs with these links; ``overrides`` are constants."""
    values: dict[str, Any] = {}
    operators = resolved.parts.get("operators")
    if operators is not None:
        values.update(operators.curves)
        values["kernels"] = tuple(sorted(operators.kernels.items()))
        if operators.kernel_launch_s is not None:
            values["kernel_launch_s"] = operators.kernel_launch_s
    collective = _link_curve(resolved.parts.get("collectives"), "all_reduce", tp_link, tp)
    if collective is not None:
        values.update(collective_bandwidth=collective.efficiency, collective_latency_s=collective.latency_s)
    p2p = _link_curve(resolved.parts.get("p2p"), "send_recv", pp_link, 2)
    if p2p is not None:
        values.update(p2p_bandwidth=p2p.efficiency, p2p_latency_s=p2p.latency_s)
    for name, value in (overrides or {}).items():
        values[name] = value
        if name in ("collective_bandwidth", "p2p_bandwidth"):
            # A constant bandwidth override goes with the link's own latency.
            values[name.replace("bandwidth", "latency_s")] = None
    return Efficiencies(**values)


def _link_curve(calibration: GpuCalibration | None, op: str, link: LinkProfile | None,
                gpus: int) -> LinkCurve | None:
    """The fitted curve for ``op`` on ``link`` with the GPU count nearest ``gpus`` (log scale)."""
    if calibration is None or link is None:
        return None
    candidates = [c for c in calibration.links if c.op == op and c.link == link.name]
    return min(candidates, key=lambda c: (abs(math.log2(c.gpus / gpus)), c.gpus), default=None)


def host_overhead(resolved: ResolvedCalibration, tp: int, layers: int, per_step_s: float | None = None,
                  per_sequence_s: float | None = None) -> HostOverhead:
    """The serving overhead fitted at the TP degree nearest ``tp``, for ``layers`` layers, with overrides."""
    serving = resolved.parts.get("serving")
    host = HostOverhead()
    if serving is not None and serving.serving:
        host = min(serving.serving, key=lambda s: (abs(math.log2(s.tp / tp)), s.tp)).for_layers(layers)
    changes = {k: v for k, v in (("per_step_s", per_step_s), ("per_sequence_s", per_sequence_s)) if v is not None}
    return dataclasses.replace(host, **changes)


def compute_scale(resolved: ResolvedCalibration, gpu: GpuProfile, power_cap_fraction: float | None) -> float:
    """Fraction of peak FLOP/s sustained under the power cap (1 without one)."""
    power = resolved.parts.get("power_cap")
    exponent = power.power_exponent if power is not None else DEFAULT_DYNAMIC_POWER_EXPONENT
    return capped_compute_scale(gpu, power_cap_fraction, exponent)


@dataclass(frozen=True)
class InstancePerf:
    """The performance model of one instance: its cost model and what the power model needs."""

    cost: InstanceCostModel
    efficiencies: Efficiencies
    compute_scale: float


def instance_perf(model: ModelSpec, gpu: GpuProfile, tp: int, pp: int, tp_link: LinkProfile | None,
                  pp_link: LinkProfile | None, resolved: ResolvedCalibration,
                  overrides: dict[str, float] | None = None, per_step_s: float | None = None,
                  per_sequence_s: float | None = None, power_cap_fraction: float | None = None) -> InstancePerf:
    """Build the roofline and host overhead of an instance from a resolved calibration."""
    eff = efficiencies(resolved, tp, tp_link, pp_link, overrides)
    scale = compute_scale(resolved, gpu, power_cap_fraction)
    roofline = Roofline(model, gpu, tp, pp, tp_link, pp_link, eff, compute_scale=scale)
    host = host_overhead(resolved, tp, model.num_layers, per_step_s, per_sequence_s)
    return InstancePerf(InstanceCostModel(roofline, host), eff, scale)


def select_calibrations(setting: str, base_dir: Path | None = None) -> dict[str, GpuCalibration]:
    """The calibrations a ``perf.calibration`` setting names: auto (committed), none, or a folder or file."""
    if setting == "none":
        return {}
    if setting == "auto":
        return _committed()
    path = Path(setting).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.is_dir():
        return load_calibrations(path)
    if path.is_file():
        from simulator.perf.calibration_io import read_calibration

        found = read_calibration(path)
        return {found.gpu: found}
    raise ProfileError(located(path, "", "calibration file or folder not found"))


_COMMITTED: dict[str, GpuCalibration] | None = None


def _committed() -> dict[str, GpuCalibration]:
    global _COMMITTED
    if _COMMITTED is None:
        _COMMITTED = load_calibrations(CALIBRATION_DIR)
    return _COMMITTED
