"""The future peak of a batch's KV memory (Past-Future, POLICY_SPECS.md section 4.3).

Every request in a batch holds ``cur`` tokens now and will generate ``rem``
more, one per decode step, then free all of them. Sort the requests by ``rem``
from longest to shortest. Just before the k-th of them finishes (after
``rem_(k)`` more steps) the k longest are all still alive and each has grown by
``rem_(k)``, while the shorter ones have finished and freed their memory, so

    peak = max over k of  k * rem_(k) + sum_{j <= k} cur_(j)

is the most memory the batch will ever hold. Pure functions of arrays: the
admission policies call them, the tests check them on hand-computed cases.
"""

from __future__ import annotations

import numpy as np


def future_peak(cur, rem) -> int:
    """The peak KV tokens of one batch with ``cur`` tokens held and ``rem`` still to generate.

    ``cur`` and ``rem`` are equal-length sequences of non-negative integers; an
    empty batch peaks at 0.
    """
    cur = np.asarray(cur, dtype=np.int64)
    rem = np.asarray(rem, dtype=np.int64)
    if cur.shape != rem.shape or cur.ndim != 1:
        raise ValueError(f"cur and rem must be 1-D of equal length, got {cur.shape} and {rem.shape}")
    return int(future_peaks(cur, rem[None, :])[0])


def future_peaks(cur: np.ndarray, rem: np.ndarray) -> np.ndarray:
    """The future peak of each scenario: row ``s`` of ``rem`` (scenarios x requests) against ``cur``.

    ``cur`` is one row shared by every scenario (shape ``(n,)``) or one row per
    scenario (``(s, n)``). Returns an int64 array of ``s`` peaks.
    """
    rem = np.asarray(rem, dtype=np.int64)
    cur = np.broadcast_to(np.asarray(cur, dtype=np.int64), rem.shape)
    scenarios, n = rem.shape
    if n == 0:
        return np.zeros(scenarios, dtype=np.int64)
    order = np.argsort(-rem, axis=1, kind="stable")
    rem_sorted = np.take_along_axis(rem, order, axis=1)
    held = np.cumsum(np.take_along_axis(cur, order, axis=1), axis=1)
    alive = np.arange(1, n + 1, dtype=np.int64)
    return (alive * rem_sorted + held).max(axis=1)
