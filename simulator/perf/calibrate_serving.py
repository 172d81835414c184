"""Serving-overhead and power-cap fits from whole-iteration measurements.

Kernel profiles time the GPU only. A serving engine adds host work and stack
effects that whole-iteration times show: Splitwise's prompt and token times
(vLLM, 2023, on DGX A100/H100) and DistServe's fitted vLLM latencies
(A100). After subtracting the calibrated GPU time of each measured step, the
remainder is fitted per GPU and tensor-parallel degree to ``HostOverhead``
(per step, per sequence, per prefill step, per prefill token beyond a knee;
the knee is chosen per GPU and TP from a few round values; the per-step terms scale
with the model's layers, see ``ServingOverhead``). At each TP only the
preferred source is used - raw measurements (Splitwise) before coefficients
evaluated on a grid (DistServe) - because different engines and models need
different overheads and a mix fits neither. Configurations whose KV
cache cannot fit, and prompt batches measured faster than half their size,
are left out (``predict.iteration_exclusions``).

The power-cap exponent is then fitted to the power-capped rows (Splitwise's
H100 at 70% of TDP), given everything else.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, minimize_scalar

from simulator.perf.calibration import GpuCalibration, ServingOverhead
from simulator.perf.cost_model import HostOverhead
from simulator.perf.iteration_model import IterationFeatures, iteration_features
from simulator.perf.predict import iteration_exclusions

KNEES = (0.0, 512.0, 1024.0, 2048.0, 4096.0)
SOURCE_PRIORITY = ("splitwise", "distserve-vllm")  # vLLM measurements, most direct first
EXPONENT_RANGE = (1.0, 3.0)  # clock^1 (fixed voltage) to clock^3 (voltage tracking clock)


def comparable_rows(iterations: pd.DataFrame) -> pd.DataFrame:
    """Whole-iteration rows that can be compared, repeats averaged, one row per configuration."""
    if iterations.empty:
        return iterations
    table = iterations[iteration_exclusions(iterations) == ""]
    keys = ["source", "file", "gpu", "model", "tp", "op", "batch_size", "prompt_tokens", "output_tokens",
            "power_cap_fraction", "engine"]
    return table.groupby(keys, dropna=False, sort=True)["measured_ms"].mean().reset_index()


def fit_serving(iterations: pd.DataFrame, found: dict[str, GpuCalibration]) -> dict[str, GpuCalibration]:
    """Add the fitted serving overhead to every GPU with uncapped vLLM iteration measurements."""
    rows = comparable_rows(iterations)
    if rows.empty:
        return found
    rows = rows[rows["source"].isin(SOURCE_PRIORITY) & rows["power_cap_fraction"].isna()
                & rows["gpu"].isin(list(found))]
    rank = rows["source"].map(SOURCE_PRIORITY.index)
    best = rank.groupby([rows["gpu"], rows["tp"]]).transform("min")
    rows = rows[rank == best].reset_index(drop=True)
    if rows.empty:
        return found
    features = iteration_features(rows, found)
    out = dict(found)
    for gpu in sorted(rows["gpu"].unique()):
        mine = (rows["gpu"] == gpu).to_numpy()
        serving, report = _fit_gpu(rows[mine].reset_index(drop=True), _subset(features, mine))
        out[gpu] = dataclasses.replace(found[gpu], serving=serving,
                                       report=found[gpu].report | {"serving": report})
    return out


def _subset(f: IterationFeatures, mask: np.ndarray) -> IterationFeatures:
    return IterationFeatures(*(getattr(f, name)[mask] for name in
                               ("gpu_ms", "total_ms", "seqs", "prefill", "extra_tokens", "layers")))


def _fit_gpu(rows: pd.DataFrame, f: IterationFeatures) -> tuple[tuple[ServingOverhead, ...], dict]:
    """Per TP, the host overhead with the knee (from ``KNEES``) that fits that TP's rows best."""
    fits = {}
    for tp in sorted(rows["tp"].unique()):
        mask = (rows["tp"] == tp).to_numpy()
        candidates = [_fit_tp(rows, f, mask, knee) for knee in KNEES]
        fits[int(tp)] = min(candidates, key=lambda fit: fit[1])  # first (smallest knee) on ties
    serving = tuple(ServingOverhead(tp, fit[0], int(f.layers.max())) for tp, fit in fits.items())
    by_tp = {}
    for tp, (host, _, error) in fits.items():
        mask = (rows["tp"] == tp).to_numpy()
        by_tp[tp] = {"points": int(mask.sum()), "mape": float(error.mean()),
                     "mape_prompt": _mean(error[(rows["op"] == "prompt").to_numpy()[mask]]),
                     "mape_token": _mean(error[(rows["op"] == "token").to_numpy()[mask]]),
                     "prefill_knee_tokens": host.prefill_knee_tokens,
                     "sources": sorted(set(rows["source"][mask]))}
    return serving, {"files": sorted(set(rows["file"])), "by_tp": by_tp}


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _fit_tp(rows: pd.DataFrame, f: IterationFeatures, mask: np.ndarray, knee: float):
    """Least squares in log time: measured = GPU + step + seq x n + prefill x (step' + token x beyond)."""
    measured = rows["measured_ms"].to_numpy()[mask]
    sources = rows["source"].to_numpy()[mask]
    _, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    sqrt_w = np.sqrt(1.0 / counts[inverse] / np.mean(1.0 / counts[inverse]))
    prefill = f.prefill[mask]
    depth = f.layers[mask] / f.layers.max()  # per-step terms scale with layers (ServingOverhead)
    features = np.stack([depth, f.seqs[mask], depth * prefill,
                         depth * prefill * np.maximum(f.extra_tokens[mask] - knee, 0.0)], axis=1)
    gpu = f.gpu_ms[mask]

    def residuals(x: np.ndarray) -> np.ndarray:
        return sqrt_w * np.log((gpu + features @ x) / measured)

    solution = least_squares(residuals, np.array([1.0, 0.01, 1.0, 0.001]), bounds=(0.0, np.inf),
                             loss="soft_l1", f_scale=0.1, method="trf")
    x = solution.x / 1e3  # ms -> s
    host = HostOverhead(per_step_s=x[0], per_sequence_s=x[1], per_prefill_step_s=x[2],
                        per_prefill_token_s=x[3], prefill_knee_tokens=knee)
    error = np.abs(gpu + features @ solution.x - measured) / measured
    return host, float(solution.cost), error


def fit_power_cap(iterations: pd.DataFrame, found: dict[str, GpuCalibration]) -> dict[str, GpuCalibration]:
    """Fit the dynamic-power exponent of every GPU with power-capped measurements."""
    rows = comparable_rows(iterations)
    if rows.empty:
        return found
    rows = rows[rows["power_cap_fraction"].notna() & rows["gpu"].isin(list(found))].reset_index(drop=True)
    out = dict(found)
    for gpu in sorted(rows["gpu"].unique()):
        mine = rows[rows["gpu"] == gpu].reset_index(drop=True)
        measured = mine["measured_ms"].to_numpy()

        def loss(exponent: float) -> float:
            trial = dict(out)
            trial[gpu] = dataclasses.replace(out[gpu], power_exponent=exponent)
            predicted = iteration_features(mine, trial).total_ms
            return float(np.sum(np.log(predicted / measured) ** 2))

        best = minimize_scalar(loss, bounds=EXPONENT_RANGE, method="bounded", options={"xatol": 1e-3})
        exponent = float(best.x)
        trial = dict(out)
        trial[gpu] = dataclasses.replace(out[gpu], power_exponent=exponent)
        error = np.abs(iteration_features(mine, trial).total_ms - measured) / measured
        report = {"files": sorted(set(mine["file"])), "points": int(len(mine)),
                  "cap_fractions": sorted(set(float(c) for c in mine["power_cap_fraction"])),
                  "mape": float(error.mean()),
                  "mape_prompt": _mean(error[(mine["op"] == "prompt").to_numpy()]),
                  "mape_token": _mean(error[(mine["op"] == "token").to_numpy()])}
        out[gpu] = dataclasses.replace(out[gpu], power_exponent=exponent,
                                       report=out[gpu].report | {"power_cap": report})
    return out
