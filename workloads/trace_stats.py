"""Summary statistics of a trace file, streamed: what ``servesim trace stats`` prints.

Rate and burstiness (coefficient of variation of inter-arrival gaps), token
length quantiles, the share of prompt tokens a perfect prefix cache would
serve (for traces with prefix hashes), and sessions (for traces with session
ids). Gaps are summarised chunk by chunk (Chan's parallel update of mean and
variance); lengths are kept as int32 columns for exact quantiles, so a
ten-million-row file needs about 80 MB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workloads.config_trace import TraceConfig
from workloads.prefix import PerfectPrefixCache
from workloads.readers import choose_reader
from workloads.stream import WorkloadStats
from workloads.trace import trace_batches

QUANTILES = (0.5, 0.9, 0.99)


@dataclass
class Moments:
    """Count, mean and sum of squared deviations of a stream of numbers."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        n, mean = len(values), float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        delta, total = mean - self.mean, self.count + n
        self.m2 += m2 + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.count = total

    @property
    def cv(self) -> float | None:
        if self.count < 2 or self.mean <= 0:
            return None
        return float(np.sqrt(self.m2 / (self.count - 1)) / self.mean)


def trace_statistics(config: TraceConfig, path: Path, block_size: int = 16) -> dict[str, Any]:
    """The statistics of the trace at ``path`` read as ``config`` says (transforms included)."""
    stats = WorkloadStats()
    gaps, prompts, outputs = Moments(), [], []
    cache, hit_tokens, hashed_tokens = PerfectPrefixCache(block_size), 0, 0
    sessions: dict[str, int] = {}
    first = last = None
    for batch in trace_batches(config, path, np.random.default_rng(0), stats):
        times = batch.arrival_s
        gaps.add(np.diff(times if last is None else np.concatenate([[last], times])))
        first = times[0] if first is None else first
        last = times[-1]
        prompts.append(batch.prompt_tokens.astype(np.int32))
        outputs.append(batch.output_tokens.astype(np.int32))
        if batch.prefix_hashes is not None:
            for hashes, prompt in zip(batch.prefix_hashes.tolist(), batch.prompt_tokens.tolist()):
                hit_tokens += cache.serve(hashes, prompt, batch.prefix_block_tokens)
                hashed_tokens += prompt
        for session in batch.labels.get("session_id", ()):
            if session is not None:
                sessions[session] = sessions.get(session, 0) + 1
    rows = sum(map(len, prompts))
    span = float(last - first)
    return {
        "path": str(path), "format": choose_reader(config, path).name, "rows": rows,
        "dropped_rows": stats.dropped_rows, "filtered_rows": stats.filtered_rows,
        "reordered_rows": stats.reordered_rows, "span_s": span,
        "rate_per_s": (rows - 1) / span if span > 0 else None, "gap_cv": gaps.cv,
        "prompt_tokens": _lengths(np.concatenate(prompts)), "output_tokens": _lengths(np.concatenate(outputs)),
        "prefix_block_tokens": block_size,
        "prefix_hit_fraction": hit_tokens / hashed_tokens if hashed_tokens else None,
        "sessions": len(sessions) if sessions else None,
        "requests_per_session": float(np.mean(list(sessions.values()))) if sessions else None,
    }


def _lengths(values: np.ndarray) -> dict[str, float]:
    found = {"mean": float(values.mean())}
    found.update({f"p{round(q * 100)}": float(np.quantile(values, q)) for q in QUANTILES})
    return {**found, "max": int(values.max())}


def format_statistics(found: dict[str, Any]) -> str:
    """The statistics as aligned lines of text."""
    def lengths(entry: dict[str, float]) -> str:
        return "  ".join(f"{key} {value:,.0f}" for key, value in entry.items())

    rate = "n/a" if found["rate_per_s"] is None else f"{found['rate_per_s']:.3g} requests/s"
    cv = "n/a" if found["gap_cv"] is None else f"{found['gap_cv']:.3g} (CV of inter-arrival gaps; Poisson is 1)"
    prefix = ("n/a (no prefix hashes)" if found["prefix_hit_fraction"] is None else
              f"{found['prefix_hit_fraction']:.1%} of prompt tokens hit a perfect prefix cache "
              f"({found['prefix_block_tokens']}-token blocks)")
    sessions = ("n/a (no session ids)" if found["sessions"] is None else
                f"{found['sessions']:,} sessions, {found['requests_per_session']:.2f} requests each")
    dropped = ", ".join(f"{found[key]:,} {label}" for key, label in (
        ("dropped_rows", "dropped as failed"), ("filtered_rows", "filtered out"),
        ("reordered_rows", "out of order, sorted")) if found[key])
    lines = [
        ("trace", f"{found['path']} (format {found['format']})"),
        ("requests", f"{found['rows']:,}" + (f" ({dropped})" if dropped else "")),
        ("span", f"{found['span_s']:,.1f} s"), ("rate", rate), ("burstiness", cv),
        ("prompt tokens", lengths(found["prompt_tokens"])), ("output tokens", lengths(found["output_tokens"])),
        ("prefix sharing", prefix), ("sessions", sessions),
    ]
    return "\n".join(f"{label:<15} {text}" for label, text in lines)

