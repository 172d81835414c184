"""The fidelity scatter plot: predicted against measured time, log-log, one colour per source.

Each (source, operator) keeps at most a few hundred points, spread evenly over
its rows, so a plot of half a million records stays small and readable.
Excluded rows are not drawn.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from simulator.atomic import atomic_write  # noqa: E402

POINTS_PER_OPERATOR = 300


def scatter(records: pd.DataFrame, path: Path) -> Path:
    """Write the predicted-against-measured scatter of ``records`` to ``path`` (PNG)."""
    usable = records[records["excluded"].isna() & (records["measured_ms"] > 0) & (records["predicted_ms"] > 0)]
    figure, axes = plt.subplots(figsize=(7, 6.5))
    for source, rows in usable.groupby("source", sort=True):
        shown = pd.concat([_spread(group) for _, group in rows.groupby("op", sort=True)])
        axes.scatter(shown["measured_ms"], shown["predicted_ms"], s=4, alpha=0.5, label=source)
    if not usable.empty:
        low = min(usable["measured_ms"].min(), usable["predicted_ms"].min())
        high = max(usable["measured_ms"].max(), usable["predicted_ms"].max())
        axes.plot([low, high], [low, high], color="black", linewidth=0.8, label="predicted = measured")
    axes.set(xscale="log", yscale="log", xlabel="measured (ms)", ylabel="predicted by servesim (ms)",
             title="servesim fidelity")
    axes.legend(loc="upper left", fontsize=8, markerscale=3)
    axes.grid(True, which="major", linewidth=0.3)
    figure.tight_layout()
    # The temporary name ends in .tmp, so the format is named, not inferred.
    atomic_write(Path(path), lambda tmp: figure.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png"))
    plt.close(figure)
    return Path(path)


def _spread(group: pd.DataFrame) -> pd.DataFrame:
    if len(group) <= POINTS_PER_OPERATOR:
        return group
    keep = np.unique(np.linspace(0, len(group) - 1, POINTS_PER_OPERATOR).round().astype(int))
    return group.sort_values("measured_ms", kind="stable").iloc[keep]
