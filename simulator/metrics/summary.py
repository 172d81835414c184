"""Condensing a run into ``summary.json``: latencies, SLOs, goodput, utilisation, energy, cost.

The inputs are the per-request table (``requests.csv``, one row per request,
columns ``REQUEST_COLUMNS``) and the run-level ``RunStats``. Everything here is
vectorised over the table, so a run of millions of requests is summarised in
a few numpy passes. Percentiles use numpy's default ("linear") method: the
``q``-quantile of ``n`` sorted values interpolates linearly at rank
``(n - 1) * q``. The exact meaning of every key is in ``docs/metrics.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from simulator.metrics.run_stats import RunStats

# Column name -> dtype of the per-request table the engine writes. Times are simulated
# seconds, NaN when the event did not happen; strings are '' when absent.
REQUEST_DTYPES: dict[str, str] = {
    "request_id": "int64",
    "arrival_s": "float64",
    "instance_id": "int64",  # -1 if never placed
    "status": "object",  # 'finished' | 'rejected' | 'unfinished'
    "reject_reason": "object",
    "prompt_tokens": "int64",
    "output_tokens": "int64",  # the true target length
    "generated_tokens": "int64",
    "first_scheduled_s": "float64",
    "first_token_s": "float64",
    "last_token_s": "float64",
    "finish_s": "float64",
    "max_token_gap_s": "float64",
    "num_preemptions": "int64",
    "prefix_hit_tokens": "int64",
    "recomputed_tokens": "int64",
    "tenant": "object",
    "priority": "int64",
    "slo_class": "object",
    "session_id": "object",
}
REQUEST_COLUMNS: tuple[str, ...] = tuple(REQUEST_DTYPES)
STATUSES = ("finished", "rejected", "unfinished")

# Top-level summary keys and, for the nested ones, their sub-keys (stats.extra adds more).
DISTRIBUTION_KEYS = ("mean", "p50", "p90", "p99")
SUMMARY_SCHEMA: dict[str, tuple[str, ...] | None] = {
    "experiment": None,
    "seed": None,
    "version": None,
    "requests": ("arrived", "completed", "rejected", "unfinished"),
    "ttft_s": DISTRIBUTION_KEYS,
    "tpot_s": DISTRIBUTION_KEYS,
    "tbt_s": DISTRIBUTION_KEYS,
    "e2e_s": DISTRIBUTION_KEYS,
    "queue_s": DISTRIBUTION_KEYS,
    "throughput": ("requests_per_s", "input_tokens_per_s", "output_tokens_per_s"),
    "slo": ("ttft_s", "tpot_s", "attainment"),
    "goodput": ("requests_per_s", "tokens_per_s"),
    "goodput_sla": ("tokens_per_s", "requests_per_s", "attainment"),
    "utilization": ("gpu_busy", "kv_mean", "kv_peak", "mfu", "mbu"),
    "events": ("preemptions", "migrations", "kv_transfer_bytes", "prefix_hit_tokens"),
    "energy": ("joules", "joules_per_output_token"),
    "cost": ("usd", "usd_per_million_output_tokens"),
    "workflows": ("completed", "tct_s"),
    "sim": ("simulated_s", "window_s", "wall_s", "steps", "requests_per_wall_s"),
}

# The measured window never collapses to zero, so rates stay finite in degenerate runs.
MIN_WINDOW_S = 1e-9
_LATENCY_INPUTS = ("arrival_s", "first_scheduled_s", "first_token_s", "last_token_s",
                   "finish_s", "generated_tokens")
_SUMMARY_INPUTS = _LATENCY_INPUTS + ("status", "prompt_tokens", "max_token_gap_s")


def empty_requests_frame() -> pd.DataFrame:
    """A per-request table with no rows and the right columns and dtypes."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in REQUEST_DTYPES.items()})


def add_latency_columns(requests: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``requests`` with ttft_s, tpot_s, e2e_s and queue_s added.

    tpot_s is NaN when fewer than two tokens were generated; every latency is NaN
    when one of its timestamps is.
    """
    _require_columns(requests, _LATENCY_INPUTS)
    col = {name: requests[name].to_numpy(dtype=np.float64) for name in _LATENCY_INPUTS}
    decode_steps = col["generated_tokens"] - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(decode_steps >= 1,
                        (col["last_token_s"] - col["first_token_s"]) / decode_steps, np.nan)
    return requests.assign(
        ttft_s=col["first_token_s"] - col["arrival_s"],
        tpot_s=tpot,
        e2e_s=col["finish_s"] - col["arrival_s"],
        queue_s=col["first_scheduled_s"] - col["arrival_s"],
    )


def distribution(values: np.ndarray) -> dict[str, float | None]:
    """Mean and p50/p90/p99 of the finite ``values``; all None when there are none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return dict.fromkeys(DISTRIBUTION_KEYS)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def histogram_distribution(histogram: Any) -> dict[str, float | None]:
    """Mean and p50/p90/p99 of a ``LogHistogram``; all None when it is empty or missing."""
    if histogram is None or histogram.count == 0:
        return dict.fromkeys(DISTRIBUTION_KEYS)
    return {"mean": histogram.mean(), "p50": histogram.quantile(0.50),
            "p90": histogram.quantile(0.90), "p99": histogram.quantile(0.99)}


def meets_slo(frame: pd.DataFrame, slo_ttft_s: float | None,
              slo_tpot_s: float | None) -> np.ndarray:
    """Boolean mask of rows that finished and meet every given SLO.

    ``frame`` must carry the latency columns. A NaN TPOT (a one-token output)
    meets any TPOT SLO: there was no gap to be slow.
    """
    return _meets_slo(frame["status"].eq("finished").to_numpy(),
                      frame["ttft_s"].to_numpy(dtype=np.float64),
                      frame["tpot_s"].to_numpy(dtype=np.float64), slo_ttft_s, slo_tpot_s)


def summarize(requests: pd.DataFrame, stats: RunStats, *, experiment: str, seed: int,
              version: str, slo_ttft_s: float | None, slo_tpot_s: float | None,
              slo_max_tpot_s: float | None = None,
              workflow_tct_s: np.ndarray | None = None) -> dict[str, Any]:
    """The JSON-ready summary of one run (every key of ``SUMMARY_SCHEMA``, NaN as None).

    ``goodput_sla`` (Past-Future's goodput) is null unless ``slo_max_tpot_s`` is given.
    """
    _require_columns(requests, _SUMMARY_INPUTS)
    col = _numeric_columns(add_latency_columns(requests))
    state = _status_masks(requests["status"])
    done = state["finished"]
    good = _meets_slo(done, col["ttft_s"], col["tpot_s"], slo_ttft_s, slo_tpot_s)
    window_s = measured_window_s(requests, stats.simulated_s)
    output_tokens = float(col["generated_tokens"].sum())
    summary: dict[str, Any] = {
        "experiment": experiment, "seed": seed, "version": version,
        "requests": {"arrived": len(requests), "completed": int(done.sum()),
                     "rejected": int(state["rejected"].sum()),
                     "unfinished": int(state["unfinished"].sum())},
        **{key: distribution(col[key][done]) for key in ("ttft_s", "tpot_s", "e2e_s", "queue_s")},
        "tbt_s": histogram_distribution(stats.token_gap_histogram),
        "throughput": {"requests_per_s": int(done.sum()) / window_s,
                       "input_tokens_per_s": float(col["prompt_tokens"][done].sum()) / window_s,
                       "output_tokens_per_s": output_tokens / window_s},
        "slo": _slo(good, slo_ttft_s, slo_tpot_s),
        "goodput": _goodput(col, good, window_s),
        "goodput_sla": _goodput_sla(col, done, window_s, slo_ttft_s, slo_max_tpot_s),
        "utilization": _utilization(stats),
        "events": {"preemptions": stats.events.preemptions, "migrations": stats.events.migrations,
                   "kv_transfer_bytes": stats.events.kv_transfer_bytes,
                   "prefix_hit_tokens": stats.events.prefix_hit_tokens},
        **_energy_and_cost(stats, output_tokens),
        "workflows": _workflows(workflow_tct_s),
        "sim": _sim(stats, window_s, len(requests)),
    }
    summary = {key: summary[key] for key in SUMMARY_SCHEMA}  # the documented order
    for key, value in stats.extra.items():
        if key in summary:
            raise ValueError(f"RunStats.extra key {key!r} collides with a summary key")
        summary[key] = value
    return jsonable(summary)


def measured_window_s(requests: pd.DataFrame, simulated_s: float) -> float:
    """Seconds from the first arrival to the end of the run (at least ``MIN_WINDOW_S``)."""
    arrivals = requests["arrival_s"].to_numpy(dtype=np.float64)
    first = float(np.nanmin(arrivals)) if np.isfinite(arrivals).any() else 0.0
    return max(simulated_s - first, MIN_WINDOW_S)


def _numeric_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    # Masking plain arrays is far cheaper than subsetting the whole frame with million rows.
    names = ("prompt_tokens", "generated_tokens", "ttft_s", "tpot_s", "e2e_s", "queue_s", "max_token_gap_s")
    return {name: frame[name].to_numpy(dtype=np.float64) for name in names}


def _status_masks(status: pd.Series) -> dict[str, np.ndarray]:
    masks = {name: status.eq(name).to_numpy() for name in STATUSES}
    known = np.logical_or.reduce(list(masks.values())) if len(status) else np.ones(0, dtype=bool)
    if not known.all():
        # Every request must end in exactly one of the three states, or the counts cannot add up.
        unknown = sorted(status[~known].astype(str).unique())
        raise ValueError(f"unknown request status(es) {unknown}; expected one of {list(STATUSES)}")
    return masks


def _meets_slo(finished: np.ndarray, ttft_s: np.ndarray, tpot_s: np.ndarray,
               slo_ttft_s: float | None, slo_tpot_s: float | None) -> np.ndarray:
    mask = finished
    if slo_ttft_s is not None:
        mask = mask & (ttft_s <= slo_ttft_s)
    if slo_tpot_s is not None:
        mask = mask & (np.isnan(tpot_s) | (tpot_s <= slo_tpot_s))
    return mask


def _slo(good: np.ndarray, slo_ttft_s: float | None, slo_tpot_s: float | None) -> dict:
    attainment = None
    if (slo_ttft_s is not None or slo_tpot_s is not None) and good.size:
        attainment = float(good.mean())  # over arrived requests: misses include the unfinished
    return {"ttft_s": slo_ttft_s, "tpot_s": slo_tpot_s, "attainment": attainment}


def _goodput(col: dict[str, np.ndarray], good: np.ndarray, window_s: float) -> dict[str, float]:
    # With no SLO given, ``good`` is every finished request, so goodput equals throughput.
    tokens = float(col["prompt_tokens"][good].sum() + col["generated_tokens"][good].sum())
    return {"requests_per_s": int(good.sum()) / window_s, "tokens_per_s": tokens / window_s}


def _goodput_sla(col: dict[str, np.ndarray], finished: np.ndarray, window_s: float,
                 slo_ttft_s: float | None, slo_max_tpot_s: float | None) -> dict[str, float | None]:
    """Past-Future's goodput: completed requests with TTFT and largest inter-token gap within the SLA."""
    if slo_max_tpot_s is None:
        return {"tokens_per_s": None, "requests_per_s": None, "attainment": None}
    good = finished & (col["max_token_gap_s"] <= slo_max_tpot_s)
    if slo_ttft_s is not None:
        good = good & (col["ttft_s"] <= slo_ttft_s)
    tokens = float(col["prompt_tokens"][good].sum() + col["generated_tokens"][good].sum())
    return {"tokens_per_s": tokens / window_s, "requests_per_s": int(good.sum()) / window_s,
            "attainment": float(good.mean()) if good.size else None}


def _utilization(stats: RunStats) -> dict[str, float | None]:
    instances, span = stats.instances, stats.simulated_s
    # Over the time each instance was provisioned (all of the run unless auto-scaled), as cost is:
    # an instance that was switched off is neither busy nor idle capacity.
    seconds = np.array([span if i.active_s is None else i.active_s for i in instances], dtype=np.float64)
    if not instances or span <= 0 or seconds.sum() <= 0:
        return {"gpu_busy": None, "kv_mean": None, "kv_peak": None, "mfu": None, "mbu": None}
    gpu_seconds = np.array([i.gpu_count for i in instances], dtype=np.float64) * seconds
    peak_flops = float(np.sum(np.array([i.peak_flops_per_gpu for i in instances]) * gpu_seconds))
    peak_bytes = float(np.sum(np.array([i.hbm_bytes_per_s_per_gpu for i in instances]) * gpu_seconds))
    return {
        "gpu_busy": sum(i.busy_s for i in instances) / float(seconds.sum()),
        "kv_mean": sum(i.kv_usage_integral for i in instances) / float(seconds.sum()),
        "kv_peak": max(i.kv_peak_fraction for i in instances),
        "mfu": _ratio(sum(i.flops for i in instances), peak_flops),
        "mbu": _ratio(sum(i.hbm_bytes for i in instances), peak_bytes),
    }


def _energy_and_cost(stats: RunStats, output_tokens: float) -> dict[str, dict]:
    joules = sum(i.energy_j for i in stats.instances)
    # An auto-scaled instance is paid for while provisioned only (``active_s``).
    usd = sum(i.gpu_count * i.usd_per_hour_per_gpu / 3600 * (stats.simulated_s if i.active_s is None else i.active_s)
              for i in stats.instances)
    per_million = _ratio(usd * 1e6, output_tokens)
    return {"energy": {"joules": joules, "joules_per_output_token": _ratio(joules, output_tokens)},
            "cost": {"usd": usd, "usd_per_million_output_tokens": per_million}}


def _workflows(tct_s: np.ndarray | None) -> dict[str, Any]:
    if tct_s is None:
        return {"completed": None, "tct_s": None}
    tct_s = np.asarray(tct_s, dtype=np.float64)
    return {"completed": int(tct_s.size), "tct_s": distribution(tct_s)}


def _sim(stats: RunStats, window_s: float, arrived: int) -> dict[str, Any]:
    return {"simulated_s": stats.simulated_s, "window_s": window_s, "wall_s": stats.wall_s,
            "steps": stats.steps, "requests_per_wall_s": _ratio(arrived, stats.wall_s)}


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _require_columns(frame: pd.DataFrame, names: tuple[str, ...]) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ValueError(f"request table lacks column(s): {', '.join(missing)}")


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as plain Python, and NaN/inf as None."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"summary value of type {type(value).__name__} is not JSON-ready")
