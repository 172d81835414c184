"""``servesim calibrate``: fit every GPU's efficiency curves to the measurements, and write them.

Per GPU, in order:

1. Operators: GEMM (compute and memory), attention (prefill = compute,
   decode = memory) and one memory curve per elementwise kernel, plus the
   kernel launch time, fitted jointly (``simulator.perf.fitting``) to
   Vidur's per-operator and attention profiles and LLMServingSim's H100 GEMM
   and attention profiles. LLMServingSim's norms, RoPE, activation and eager
   attention are unfused HuggingFace kernels and are left out of the fit, as
   are rows faster than the GPU's peak FLOP/s or bandwidth allow (its decode
   profile at batch >= 64 claims up to 7x the H100's HBM bandwidth).
   Leave-one-model-out cross-validation refits without each Vidur model.
2. Links: per collective, link and GPU count, a latency and a bandwidth
   curve fitted to Vidur's network profiles (see ``LINK_FLATNESS``).
3. Serving overhead and power cap (``simulator.perf.calibrate_serving``).

Each series is thinned to at most a few dozen points spread over its range
(the fit then takes about a second per GPU), and every point is weighted so
that each source counts alike within an operator class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import ProfileError, located
from simulator.perf import fitting, predict
from simulator.perf.calibration import GpuCalibration, LinkCurve
from simulator.perf.efficiency import KERNEL_OF, Efficiencies
from simulator.perf.measurements import read_measurements

SERIES_POINTS = {"attention": 512}  # points kept per (file, operator, TP) series; others keep 48
DEFAULT_SERIES_POINTS = 48
MOE_TARGETS = {"router"}  # LLMServingSim's Mixtral router includes top-k and softmax: not a plain GEMM
# Link curves prefer flat efficiencies, so the fixed cost of small messages is fitted as latency
# (which also holds below the smallest measured size) rather than as a vanishing efficiency.
LINK_FLATNESS = 0.5


@dataclass
class OperatorData:
    """The operator table of the measurements, its roofline costs and which rows may inform a fit."""

    table: pd.DataFrame
    costs: predict.OperatorCosts
    gpu: np.ndarray = None
    model: np.ndarray = None
    fittable: np.ndarray = None
    vidur_layers: np.ndarray = None
    series_order: np.ndarray = None  # rows sorted by series, then by size within a series
    series: np.ndarray = None        # series number of each row

    def __post_init__(self) -> None:
        t, c = self.table, self.costs
        self.gpu = t["gpu"].to_numpy().astype(str)
        self.model = t["model"].to_numpy().astype(str)
        files = t["file"].to_numpy().astype(str)
        source = t["source"].to_numpy().astype(str)
        target = t["target"].to_numpy().astype(str)
        from_lss_layers = (source == "llmservingsim") & np.char.endswith(files, "layers.csv")
        lss_gemm = (c.op_class == "gemm") & ~np.isin(target, list(MOE_TARGETS))
        possible = predict.physically_possible(c, t["measured_ms"].to_numpy())
        self.fittable = possible & (~from_lss_layers | lss_gemm)
        self.vidur_layers = (source == "vidur") & np.char.endswith(files, "mlp.csv")
        self.series = t.groupby(["file", "op", "tp"], sort=True).ngroup().to_numpy()
        sizes = [t[c].fillna(0).to_numpy() for c in ("context_tokens", "batch_size", "num_tokens")]
        self.series_order = np.lexsort(sizes + [self.series])


def calibrate(data_dir: Path) -> dict[str, GpuCalibration]:
    """Fit every GPU found under ``data_dir``; deterministic for the same data."""
    from simulator.perf.calibrate_serving import fit_power_cap, fit_serving

    data = read_measurements(Path(data_dir))
    if not len(data):
        raise ProfileError(located(data_dir, "", "no measurement file recognised"))
    operators = OperatorData(data.operators, predict.operator_costs(data.operators))
    gpus = sorted(set(data.operators["gpu"]) | set(data.network["gpu"]))
    found = {gpu: _base_calibration(gpu, operators, data.network) for gpu in gpus}
    found = fit_serving(data.iterations, found)
    return fit_power_cap(data.iterations, found)


def _base_calibration(gpu: str, operators: OperatorData, network: pd.DataFrame) -> GpuCalibration:
    report = {}
    curves, kernels, launch = {}, {}, None
    if (operators.gpu == gpu).any():
        result = fit_operators(operators, gpu)
        curves, kernels, launch = result.curves, result.kernels, result.launch_s
        report["operators"] = _operator_report(operators, gpu, result.rows, result) | {
            "leave_one_model_out": cross_validate(operators, gpu, result.result)}
    links, link_report = fit_links(network[network["gpu"] == gpu])
    if links:
        report["links"] = link_report
    return GpuCalibration(gpu, curves, kernels, launch, links, report=report)


# ------------------------------------------------------------------ operators
@dataclass
class OperatorFit:
    """Fitted operator curves, kernel curves and launch time of one GPU."""

    curves: dict
    kernels: dict
    launch_s: float
    report: dict
    result: fitting.FitResult
    rows: np.ndarray

    def efficiencies(self) -> Efficiencies:
        return Efficiencies(kernel_launch_s=self.launch_s, kernels=tuple(sorted(self.kernels.items())),
                            **self.curves)


def fit_operators(data: OperatorData, gpu: str, exclude_model: str | None = None,
                  start: fitting.FitResult | None = None) -> OperatorFit:
    """Fit one GPU's operator curves (optionally without one model's rows, starting from ``start``)."""
    rows = _fit_rows(data, gpu, exclude_model)
    if rows.size == 0:
        raise ProfileError(f"no usable operator measurements for {gpu}")
    table, costs = data.table, data.costs
    measured = table["measured_ms"].to_numpy()[rows] / 1e3
    problem = fitting.FitProblem(measured, _source_weights(table.iloc[rows], costs.op_class[rows]))
    for op_class, name in sorted(set(zip(costs.op_class[rows], costs.name[rows]))):
        points = np.flatnonzero((costs.op_class[rows] == op_class) & (costs.name[rows] == name))
        at = rows[points]
        if op_class != "elementwise":  # elementwise FLOPs are negligible; the default constant times them
            problem.add(fitting.Term(f"{op_class}_compute", costs.flops[at], costs.peak_flops[at],
                                     costs.flops[at]), points)
        problem.add(fitting.Term(_memory_curve(op_class, name), costs.hbm_bytes[at], costs.peak_bytes_per_s[at],
                                 costs.hbm_bytes[at]), points)
    result = fitting.fit(problem, start)
    curves = {k: v for k, v in result.curves.items() if not k.startswith("kernel:")}
    kernels = {k.split(":", 1)[1]: v for k, v in result.curves.items() if k.startswith("kernel:")}
    fit = OperatorFit(curves, kernels, result.offset_s, {}, result, rows)
    return fit


def _memory_curve(op_class: str, name: str) -> str:
    return f"kernel:{KERNEL_OF.get(name, name)}" if op_class == "elementwise" else f"{op_class}_memory"


def _fit_rows(data: OperatorData, gpu: str, exclude_model: str | None) -> np.ndarray:
    """Rows that inform the fit: see the module docstring for what is left out and why."""
    use = (data.gpu == gpu) & data.fittable
    if exclude_model is not None:
        use &= data.model != exclude_model
    return _thin(data, use)


def _thin(data: OperatorData, use: np.ndarray) -> np.ndarray:
    """At most a few dozen points per (file, operator, TP) series, spread evenly over its sorted range."""
    ordered = data.series_order[use[data.series_order]]
    if ordered.size == 0:
        return ordered
    series = data.series[ordered]
    starts = np.flatnonzero(np.r_[True, series[1:] != series[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    keep = []
    for start, end in zip(starts, ends):
        limit = SERIES_POINTS.get(data.costs.op_class[ordered[start]], DEFAULT_SERIES_POINTS)
        ranks = np.unique(np.round(np.linspace(start, end - 1, min(limit, end - start))).astype(int))
        keep.append(ordered[ranks])
    return np.sort(np.concatenate(keep)) if keep else np.array([], dtype=int)


def _source_weights(rows: pd.DataFrame, op_class: np.ndarray) -> np.ndarray:
    key = rows["source"].astype(str).to_numpy() + "/" + op_class.astype(str)
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    weight = 1.0 / counts[inverse]
    return weight / weight.mean()


def _operator_report(data: OperatorData, gpu: str, rows: np.ndarray, fit: OperatorFit) -> dict:
    """Sources, points and MAPE per operator class of the fit, and the per-layer MAPE on Vidur."""
    table = data.table
    mine = np.flatnonzero(data.gpu == gpu)
    predicted = _predict(data, mine, fit)
    measured = table["measured_ms"].to_numpy()[mine]
    error = np.abs(predicted - measured) / measured
    kinds = _error_class(table.iloc[mine], data.costs.op_class[mine])
    used = np.isin(mine, rows)
    return {"sources": sorted(set(table["file"].iloc[rows])), "points_fitted": int(rows.size),
            "mape_fitted_rows": {k: float(error[used & (kinds == k)].mean()) for k in sorted(set(kinds[used]))},
            "vidur_layer_mape": layer_mape(table.iloc[mine], predicted)}


def _error_class(rows: pd.DataFrame, op_class: np.ndarray) -> np.ndarray:
    target = rows["target"].astype(str).to_numpy()
    return np.where(target == "attention_prefill", "attention_prefill",
                    np.where(target == "attention_decode", "attention_decode", op_class.astype(str)))


def _predict(data: OperatorData, rows: np.ndarray, fit: OperatorFit) -> np.ndarray:
    costs = data.costs
    subset = predict.OperatorCosts(*(getattr(costs, f)[rows] for f in
                                     ("op_class", "name", "flops", "hbm_bytes", "peak_flops", "peak_bytes_per_s")))
    eff = fit.efficiencies()
    return predict.operator_times_ms(subset, lambda _: eff, data.table["gpu"].to_numpy()[rows])


def layer_mape(rows: pd.DataFrame, predicted_ms: np.ndarray) -> float | None:
    """MAPE of per-layer time (the sum of a row's operators) over Vidur ``mlp.csv`` rows.

    The embedding lookup runs once per model, not per layer, and is left out.
    """
    layers = layer_table(rows, predicted_ms)
    if layers.empty:
        return None
    return float((np.abs(layers["predicted_ms"] - layers["measured_ms"]) / layers["measured_ms"]).mean())


def layer_table(rows: pd.DataFrame, predicted_ms: np.ndarray) -> pd.DataFrame:
    """Measured and predicted per-layer times, one row per (file, TP, tokens) of Vidur's ``mlp.csv``."""
    frame = rows.assign(predicted_ms=predicted_ms)
    frame = frame[(frame["source"] == "vidur") & frame["file"].astype(str).str.endswith("mlp.csv")
                  & (frame["op"] != "emb")]
    keys = ["gpu", "model", "file", "tp", "num_tokens"]
    return frame.groupby(keys, sort=True)[["measured_ms", "predicted_ms"]].sum().reset_index()


def cross_validate(data: OperatorData, gpu: str, start: fitting.FitResult | None = None) -> dict:
    """Per-layer MAPE of each Vidur model predicted by a fit without it, and pooled over models.

    Each refit starts from the full fit's curves (``start``), which only saves time.
    """
    table = data.table
    vidur = (data.gpu == gpu) & data.vidur_layers
    out: dict = {}
    pooled = []
    models = sorted(set(data.model[vidur]))
    for model in models if len(models) > 1 else ():  # with one model there is nothing to fit without it
        fit = fit_operators(data, gpu, exclude_model=model, start=start)
        rows = np.flatnonzero(vidur & (data.model == model))
        layers = layer_table(table.iloc[rows], _predict(data, rows, fit))
        errors = np.abs(layers["predicted_ms"] - layers["measured_ms"]) / layers["measured_ms"]
        out[model] = float(errors.mean())
        pooled.append(errors.to_numpy())
    if pooled:
        out["pooled"] = float(np.concatenate(pooled).mean())
    return out


# ------------------------------------------------------------------ links
def fit_links(network: pd.DataFrame) -> tuple[tuple[LinkCurve, ...], dict]:
    """One latency and bandwidth curve per (collective, link, GPU count) measured."""
    if network.empty:
        return (), {}
    network = network.reset_index(drop=True)
    costs = predict.network_costs(network)
    ops = network["op"].to_numpy()
    curves, report = [], []
    for op, link, gpus in sorted(set(zip(ops, costs.link, costs.workers.astype(int)))):
        rows = np.flatnonzero((ops == op) & (costs.link == link) & (costs.workers == gpus))
        measured = network["measured_ms"].to_numpy()[rows]
        problem = fitting.FitProblem(measured / 1e3, np.ones(rows.size), flatness=LINK_FLATNESS)
        problem.add(fitting.Term("bandwidth", costs.wire_bytes[rows], costs.link_bytes_per_s[rows],
                                 costs.size[rows]), np.arange(rows.size))
        result = fitting.fit(problem)
        curves.append(LinkCurve(op, link, int(gpus), result.offset_s, result.curves["bandwidth"]))
        error = np.abs(result.predicted_s * 1e3 - measured) / measured
        report.append({"op": op, "link": link, "gpus": int(gpus), "points": int(rows.size),
                       "mape": float(error.mean()), "sources": sorted(set(network["file"].iloc[rows]))})
    return tuple(curves), {"curves": report}
