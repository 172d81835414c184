"""Samplers of prompt and output lengths, one per ``dist`` of the configuration.

Every sampler draws raw values from its distribution and then clips them to
whole tokens in ``[low, high]``. Clipping, not redrawing, keeps the shape of
the distribution inside the bounds; the caller gets a mask of the draws that
moved so it can count them (a lognormal with a tight ``max_tokens`` should be
visible in the run's statistics, not silently reshaped).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from simulator.errors import TraceError, located
from workloads.config_base import TOKEN_CEILING
from workloads.config_dists import EmpiricalLength, FixedLength, LognormalLength, QuantileLength, UniformLength
from workloads.profiles import get_profile
from workloads.readers.frames import csv_frames
from workloads.readers.values import Column

Draw = Callable[[np.random.Generator, int], np.ndarray]


def clip_tokens(values: np.ndarray, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """``values`` as int64 within ``[low, high]``, and the mask of values that had to move."""
    moved = (values < low) | (values > high)
    return np.clip(values, low, high).astype(np.int64), moved


def quantile_draw(probabilities, values) -> Draw:
    """Inverse-CDF draws from a quantile table, interpolating linearly between its points."""
    p, v = np.asarray(probabilities, dtype=np.float64), np.asarray(values, dtype=np.float64)
    return lambda rng, n: np.interp(rng.random(n), p, v)


class LengthSampler:
    """Draws token counts from one distribution, clipped to ``[low, high]``."""

    def __init__(self, draw: Draw, low: int = 1, high: int = TOKEN_CEILING) -> None:
        self._draw = draw
        self.low = low
        self.high = high

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` token counts (int64) and the mask of draws that were clipped."""
        return clip_tokens(self._draw(rng, n), self.low, self.high)


def make_sampler(dist, base_dir: Path) -> LengthSampler:
    """The sampler for one configured length distribution; empirical files are read now."""
    match dist:
        case FixedLength(tokens=tokens):
            return LengthSampler(lambda rng, n: np.full(n, tokens, dtype=np.int64))
        case UniformLength(min_tokens=low, max_tokens=high):
            return LengthSampler(lambda rng, n: rng.integers(low, high, size=n, endpoint=True))
        case LognormalLength():
            return _lognormal(dist)
        case EmpiricalLength():
            return _empirical(dist, base_dir)
        case QuantileLength(probabilities=probabilities, tokens=tokens):
            draw = quantile_draw(probabilities, tokens)
            return LengthSampler(lambda rng, n: np.rint(draw(rng, n)))
    raise TypeError(f"unknown length distribution {dist!r}")


def profile_samplers(name: str) -> tuple[LengthSampler, LengthSampler]:
    """Prompt and output samplers of the built-in profile ``name``."""
    profile = get_profile(name)
    return LengthSampler(profile.prompt.sample), LengthSampler(profile.output.sample)


def length_samplers(lengths, base_dir: Path) -> tuple[LengthSampler, LengthSampler]:
    """Prompt and output samplers of a ``LengthsConfig``: its profile, or its two distributions."""
    if lengths.profile is not None:
        return profile_samplers(lengths.profile)
    return make_sampler(lengths.prompt, base_dir), make_sampler(lengths.output, base_dir)


def _lognormal(dist: LognormalLength) -> LengthSampler:
    # The median of a lognormal is exp(mu), so mu comes straight from the median.
    mu, sigma = math.log(dist.median_tokens), dist.sigma
    high = dist.max_tokens if dist.max_tokens is not None else TOKEN_CEILING
    return LengthSampler(lambda rng, n: np.rint(rng.lognormal(mu, sigma, n)), dist.min_tokens, high)


def _empirical(dist: EmpiricalLength, base_dir: Path) -> LengthSampler:
    path = resolve(base_dir, dist.path)
    parts = []
    for frame in csv_frames(path, 1 << 18):
        if dist.column not in frame.columns:
            header = ", ".join(map(str, frame.columns))
            raise TraceError(located(path, f"column {dist.column!r}", f"not found; the header has: {header}"))
        parts.append(Column(path, frame, dist.column).tokens())
    values = np.concatenate(parts)
    if values.max() > TOKEN_CEILING:
        raise TraceError(located(path, f"column {dist.column!r}", f"token counts above {TOKEN_CEILING}"))
    return LengthSampler(lambda rng, n: values[rng.integers(0, len(values), size=n)])


def resolve(base_dir: Path, path: str) -> Path:
    """``path`` as written in the experiment, taken relative to the experiment's folder."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base_dir / candidate
