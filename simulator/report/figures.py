"""Figures of a run's results: empirical CDFs of per-request latencies.

Functions here build matplotlib figures and return them; saving is left to the
caller, which writes atomically. The Agg backend is selected before pyplot is
imported so reports render on machines without a display.
"""

from __future__ import annotations

import matplotlib

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
