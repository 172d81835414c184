"""Predicted whole-iteration times (Splitwise, DistServe rows) from a set of calibrations.

A prompt row is one prefill step of ``batch`` prompts; a token row is the
mean of its decode steps, timed as one array of step shapes. The instance is
built exactly as the simulator builds it (``calibration.instance_perf``): the
GPU's resolved calibration, the links of the node that holds the GPU (DGX
A100 and DGX H100 for the public data), and the row's power cap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulator.hardware import DEFAULT_CATALOG
from simulator.perf.calibration import GpuCalibration, instance_perf, resolve
from simulator.perf.predict import iteration_links, iteration_shape


@dataclass
class IterationFeatures:
    """Per row: mean GPU time of its step(s), and the shape terms the host overhead depends on."""

    gpu_ms: np.ndarray
    total_ms: np.ndarray
    seqs: np.ndarray
    prefill: np.ndarray
    extra_tokens: np.ndarray
    layers: np.ndarray


def iteration_features(table: pd.DataFrame, calibrations: dict[str, GpuCalibration]) -> IterationFeatures:
    """GPU and total (with the calibrated host overhead) times of every row, in ms."""
    n = len(table)
    out = IterationFeatures(*(np.zeros(n) for _ in range(6)))
    cap = table["power_cap_fraction"].astype(float)
    keys = table.assign(_cap=cap.fillna(0.0)).groupby(["gpu", "model", "tp", "_cap"], sort=True)
    for (gpu_name, model_name, tp, cap_value), group in keys:
        gpu, model = DEFAULT_CATALOG.get("gpu", gpu_name), DEFAULT_CATALOG.get("model", model_name)
        tp_link, pp_link = iteration_links(gpu_name, int(tp))
        perf = instance_perf(model, gpu, int(tp), 1, tp_link, pp_link, resolve(gpu, calibrations),
                             power_cap_fraction=cap_value or None)
        times: dict[tuple, tuple[float, float]] = {}  # repeated measurements share one prediction
        for i, row in zip(group.index, group.itertuples()):
            key = (row.op, row.batch_size, row.prompt_tokens, row.output_tokens)
            if key not in times:
                shape = iteration_shape(*key)
                times[key] = (float(np.mean(perf.cost.roofline.gpu_time_s(shape))) * 1e3,
                              float(np.mean(perf.cost.step_time_s(shape))) * 1e3)
            at = table.index.get_loc(i)
            out.gpu_ms[at], out.total_ms[at] = times[key]
            out.seqs[at] = row.batch_size
            out.layers[at] = model.num_layers
            out.prefill[at] = float(row.op == "prompt")
            out.extra_tokens[at] = (row.prompt_tokens - 1) * row.batch_size if row.op == "prompt" else 0.0
    return out
