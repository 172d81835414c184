"""``servesim fidelity``: servesim's prediction of every measurement in a folder, and its error.

For each recognised measured row and operator (see
``simulator.perf.measurements``) the same quantity is predicted with the
calibrated cost model - per-operator rows with the row's own geometry,
collectives with the link the set-up implies, whole iterations with the full
instance cost model (host overhead and power cap included) - giving one
record per row and operator. The summary is the MAPE per source, GPU and
operator, plus the per-layer time of Vidur's profiles (the sum of a row's
operators, op ``layer``). Rows that cannot be compared (their KV cache
cannot fit, a broken measurement, a zero time) keep their prediction but
carry the reason in ``excluded`` and stay out of the MAPE; so do operator rows
whose time implies more than the GPU's peak FLOP/s or bandwidth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.atomic import write_text
from simulator.hardware import DEFAULT_CATALOG
from simulator.perf import predict
from simulator.perf.calibrate import layer_table
from simulator.perf.calibration import GpuCalibration, efficiencies, resolve
from simulator.perf.efficiency import Efficiencies
from simulator.perf.iteration_model import iteration_features
from simulator.perf.measurements import MeasurementSet

RECORD_FIELDS = ["source", "gpu", "model", "tp", "op", "num_tokens", "batch_size", "context_tokens",
                 "measured_ms", "predicted_ms", "size_bytes", "excluded"]
SUMMARY_FIELDS = ["source", "gpu", "op", "mape"]


@dataclass
class FidelityResult:
    """One record per measured row and operator, and the MAPE summary."""

    records: pd.DataFrame
    summary: pd.DataFrame

    def to_json(self, path: Path) -> None:
        """Write ``{"records": [...], "summary": [...]}``; a field that does not apply is null."""
        records = self.records[RECORD_FIELDS].astype(object).where(self.records[RECORD_FIELDS].notna(), None)
        payload = {"records": records.to_dict("records"),
                   "summary": self.summary[SUMMARY_FIELDS + ["rows"]].to_dict("records")}
        write_text(Path(path), json.dumps(payload, default=_plain) + "\n")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)


def fidelity(data: MeasurementSet, calibrations: dict[str, GpuCalibration]) -> FidelityResult:
    """Predict every measured quantity in ``data`` with ``calibrations``."""
    parts = [_operator_records(data.operators, calibrations), _network_records(data.network, calibrations),
             _iteration_records(data.iterations, calibrations)]
    records = pd.concat([p for p in parts if not p.empty], ignore_index=True) if any(
        not p.empty for p in parts) else pd.DataFrame(columns=RECORD_FIELDS)
    bad = (records["excluded"].isna()) & ~(records["measured_ms"] > 0)
    records.loc[bad, "excluded"] = "no positive measured time"
    return FidelityResult(records, summarize(records, data.operators))


def _operator_records(table: pd.DataFrame, calibrations: dict[str, GpuCalibration]) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame(columns=RECORD_FIELDS)
    costs = predict.operator_costs(table)
    cache: dict[str, Efficiencies] = {}

    def eff(gpu: str) -> Efficiencies:
        if gpu not in cache:
            cache[gpu] = efficiencies(resolve(DEFAULT_CATALOG.get("gpu", gpu), calibrations), 1, None, None)
        return cache[gpu]

    predicted = predict.operator_times_ms(costs, eff, table["gpu"].to_numpy())
    possible = predict.physically_possible(costs, table["measured_ms"].to_numpy())
    return _records(table, predicted=predicted, size_bytes=np.nan,
                    excluded=np.where(possible, None, "faster than the GPU's peak allows"))


def _network_records(table: pd.DataFrame, calibrations: dict[str, GpuCalibration]) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame(columns=RECORD_FIELDS)
    table = table.reset_index(drop=True)
    costs = predict.network_costs(table)
    predicted = np.full(len(table), np.nan)
    for gpu in sorted(table["gpu"].unique()):
        rows = (table["gpu"] == gpu).to_numpy()
        resolved = resolve(DEFAULT_CATALOG.get("gpu", gpu), calibrations)
        sub = predict.NetworkCosts(*(getattr(costs, f)[rows] for f in
                                     ("link", "workers", "size", "wire_bytes", "link_bytes_per_s")))
        predicted[rows] = predict.network_times_ms(sub, table["op"].to_numpy()[rows],
                                                   lambda op, link, n: _link_model(resolved, op, link, n))
    out = table.assign(model=None, tp=table["num_workers"], num_tokens=np.nan, batch_size=np.nan,
                       context_tokens=np.nan)
    return _records(out, predicted=predicted, size_bytes=table["size_bytes"].to_numpy())


def _link_model(resolved, op: str, link_name: str, gpus: int):
    """(latency, efficiency) the simulator would use for ``op`` over ``link_name`` among ``gpus`` GPUs."""
    link = predict.link_profile(link_name)
    if op == "all_reduce":
        eff = efficiencies(resolved, gpus, link, None)
        latency = eff.collective_latency_s
        return (2 * (gpus - 1) * link.latency_s if latency is None else latency), eff.collective_bandwidth
    eff = efficiencies(resolved, 1, None, link)
    return (link.latency_s if eff.p2p_latency_s is None else eff.p2p_latency_s), eff.p2p_bandwidth


def _iteration_records(table: pd.DataFrame, calibrations: dict[str, GpuCalibration]) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame(columns=RECORD_FIELDS)
    table = table.reset_index(drop=True)
    predicted = iteration_features(table, calibrations).total_ms
    prompt = (table["op"] == "prompt").to_numpy()
    out = table.assign(num_tokens=np.where(prompt, table["batch_size"] * table["prompt_tokens"], table["batch_size"]),
                       context_tokens=np.where(prompt, 0.0, table["prompt_tokens"]))
    reasons = predict.iteration_exclusions(table)
    # A power-capped GPU is reported apart from the uncapped one: h100-sxm@cap70.
    cap = table["power_cap_fraction"].astype(float)
    out["gpu"] = [g if np.isnan(c) else f"{g}@cap{round(c * 100)}" for g, c in zip(table["gpu"], cap)]
    return _records(out, predicted=predicted, size_bytes=np.nan, excluded=np.where(reasons == "", None, reasons))


def _records(table: pd.DataFrame, predicted, size_bytes, excluded=None) -> pd.DataFrame:
    out = table.assign(predicted_ms=predicted, size_bytes=size_bytes, excluded=excluded)
    return out[RECORD_FIELDS + (["file"] if "file" in out.columns else [])]


def summarize(records: pd.DataFrame, operators: pd.DataFrame) -> pd.DataFrame:
    """MAPE per (source, GPU, op) over comparable records, plus Vidur's per-layer MAPE per GPU."""
    usable = records[records["excluded"].isna()]
    error = (usable["predicted_ms"] - usable["measured_ms"]).abs() / usable["measured_ms"]
    grouped = usable.assign(error=error).groupby(["source", "gpu", "op"], sort=True)
    summary = grouped.agg(mape=("error", "mean"), rows=("error", "size"), measured_ms=("measured_ms", "median"),
                          predicted_ms=("predicted_ms", "median")).reset_index()
    layers = _layer_summary(records, operators)
    return pd.concat([summary, layers], ignore_index=True) if not layers.empty else summary


def _layer_summary(records: pd.DataFrame, operators: pd.DataFrame) -> pd.DataFrame:
    vidur = records[(records["source"] == "vidur") & records["file"].astype(str).str.endswith("mlp.csv")] \
        if "file" in records.columns else records.iloc[:0]
    if vidur.empty:
        return pd.DataFrame()
    layers = layer_table(vidur.drop(columns=["predicted_ms"]), vidur["predicted_ms"].to_numpy())
    error = (layers["predicted_ms"] - layers["measured_ms"]).abs() / layers["measured_ms"]
    grouped = layers.assign(error=error).groupby("gpu", sort=True)
    out = grouped.agg(mape=("error", "mean"), rows=("error", "size"), measured_ms=("measured_ms", "median"),
                      predicted_ms=("predicted_ms", "median")).reset_index()
    return out.assign(source="vidur", op="layer")[["source", "gpu", "op", "mape", "rows", "measured_ms",
                                                  "predicted_ms"]]


def breakdown(records: pd.DataFrame, sources: tuple[str, ...], keys: list[str]) -> pd.DataFrame:
    """MAPE of comparable records of ``sources`` grouped by ``keys`` (e.g. per model and TP)."""
    usable = records[records["excluded"].isna() & records["source"].isin(sources)]
    error = (usable["predicted_ms"] - usable["measured_ms"]).abs() / usable["measured_ms"]
    return usable.assign(error=error).groupby(keys, sort=True).agg(
        mape=("error", "mean"), rows=("error", "size")).reset_index()
