"""Figures of a run's results: empirical CDFs of per-request latencies.

Functions here build matplotlib figures and return them; saving is left to the
caller, which writes atomically. The Agg backend is selected before pyplot is
imported so reports render on machines without a display - except inside a
Jupyter kernel, whose inline backend shows the figures in the notebook.
"""

from __future__ import annotations

import sys

import matplotlib

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# A CDF drawn from more points than this looks the same; quantiles keep big runs cheap.
MAX_CDF_POINTS = 2000


def ecdf_points(values: np.ndarray,
                max_points: int = MAX_CDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Sorted finite values and their cumulative fractions, thinned to ``max_points``."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    values = values[np.isfinite(values)]
    n = values.size
    fractions = np.arange(1, n + 1) / n
    if n > max_points:
        # Even steps in probability keep the tails as visible as the body.
        keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
        values, fractions = values[keep], fractions[keep]
    return values, fractions


def latency_cdf(values_s: np.ndarray, *, name: str, slo_s: float | None) -> Figure:
    """CDF of a latency over completed requests, in milliseconds, with the SLO if any."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=110)
    x_s, y = ecdf_points(values_s)
    ax.set_title(f"{name}: empirical CDF over completed requests")
    ax.set_xlabel(f"{name} (ms)")
    ax.set_ylabel("fraction of completed requests")
    ax.set_ylim(0.0, 1.02)
    ax.grid(True, alpha=0.3)
    if x_s.size == 0:
        ax.text(0.5, 0.5, "no completed requests", ha="center", va="center", transform=ax.transAxes,
                bbox={"facecolor": "white", "edgecolor": "none"}, zorder=3)
        ax.set_xticks([])
    else:
        # Start the staircase at 0 so the first step is drawn like the others.
        ax.step(np.r_[x_s[0], x_s] * 1e3, np.r_[0.0, y], where="post", label=name)
    if slo_s is not None:
        ax.axvline(slo_s * 1e3, color="tab:red", linestyle="--", label=f"SLO {slo_s * 1e3:g} ms")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Release a figure's memory (pyplot keeps every open figure alive)."""
    plt.close(fig)


def multi_cdf(series: dict[str, np.ndarray], *, name: str, slo_s: float | None, title: str) -> Figure:
    """CDFs of one latency for several labelled runs on one axis, in milliseconds."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.set_title(title)
    ax.set_xlabel(f"{name} (ms)")
    ax.set_ylabel("fraction of completed requests")
    ax.set_ylim(0.0, 1.02)
    ax.grid(True, alpha=0.3)
    largest = 0.0
    for label, values in series.items():
        x_s, y = ecdf_points(values)
        if x_s.size:
            ax.step(np.r_[x_s[0], x_s] * 1e3, np.r_[0.0, y], where="post", label=label)
            largest = max(largest, float(x_s[-1]))
    if slo_s is not None and largest > 0 and slo_s > 3 * largest:
        # An SLO far beyond every value would squash the curves into the left edge.
        ax.plot([], [], color="tab:red", linestyle="--", label=f"SLO {slo_s * 1e3:g} ms (off scale)")
    elif slo_s is not None:
        ax.axvline(slo_s * 1e3, color="tab:red", linestyle="--", label=f"SLO {slo_s * 1e3:g} ms")
    if not ax.get_lines():
        ax.text(0.5, 0.5, "no completed requests", ha="center", va="center", transform=ax.transAxes)
    elif ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def timeseries(frame, *, title: str, max_lines: int = 8) -> Figure:
    """KV utilisation, waiting requests and running batch over time, one line per instance.

    ``frame`` has the columns of ``timeseries.csv``. With more than ``max_lines``
    instances the mean is drawn with the min-max range shaded instead.
    """
    panels = (("kv_utilization", "KV cache in use (fraction)"), ("num_waiting", "waiting requests"),
              ("num_running", "running batch (requests)"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.0, 6.6), dpi=110, sharex=True)
    axes[0].set_title(title)
    instances = sorted(frame["instance_id"].unique()) if len(frame) else []
    for ax, (column, label) in zip(axes, panels):
        ax.set_ylabel(label, fontsize="small")
        ax.grid(True, alpha=0.3)
        if len(instances) <= max_lines:
            for instance in instances:
                rows = frame[frame["instance_id"] == instance]
                ax.plot(rows["time_s"], rows[column], linewidth=0.9, label=f"instance {instance}")
        else:
            grouped = frame.groupby("time_s")[column]
            low, mean, high = grouped.min(), grouped.mean(), grouped.max()
            ax.fill_between(mean.index, low, high, alpha=0.25, label="min-max over instances")
            ax.plot(mean.index, mean, linewidth=1.0, label=f"mean of {len(instances)} instances")
    axes[-1].set_xlabel("simulated time (s)")
    if not instances:
        axes[0].text(0.5, 0.5, "no samples", ha="center", va="center", transform=axes[0].transAxes)
    elif axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(loc="upper right", fontsize="x-small", ncol=2)
    fig.tight_layout()
    return fig


def metric_vs_x(series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], *, xlabel: str, ylabel: str,
                title: str, target: float | None = None) -> Figure:
    """Mean of a metric against x per labelled series, with its 95% confidence band shaded.

    ``series`` maps a label to (x, mean, ci95 half-width); NaN half-widths draw no band.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    for label, (x, mean, half) in series.items():
        order = np.argsort(x)
        x, mean, half = (np.asarray(a, dtype=np.float64)[order] for a in (x, mean, half))
        line, = ax.plot(x, mean, marker="o", markersize=3.5, label=label)
        band = np.where(np.isfinite(half), half, 0.0)
        if np.any(band > 0):
            ax.fill_between(x, mean - band, mean + band, color=line.get_color(), alpha=0.2)
    if target is not None:
        ax.axhline(target, color="tab:red", linestyle="--", label=f"target {target:g}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def save_png(fig: Figure, path) -> None:
    """Save ``fig`` as PNG atomically and release it."""
    from simulator.atomic import atomic_write

    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        close(fig)
