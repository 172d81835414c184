"""The "past" of Past-Future: a sliding window of completed requests' output lengths.

Two draws from it (POLICY_SPECS.md section 4.4, steps 2 and 3):

* the final length of a request that has already generated ``d`` tokens, from
  the history conditioned on exceeding ``d``: the support is ``d``, then the
  history values above ``d`` in ascending order, then the request's cap if it
  is larger than all of them; a uniform position ``u`` in ``[0, len - 1)``
  is read by linear interpolation between its two neighbours;
* the output length of a request that has not started: a uniform draw of one
  history value.

Every draw is clamped to the request's cap (history values may exceed a small cap).
"""

from __future__ import annotations

from collections import deque

import numpy as np


class LengthHistory:
    """Output lengths of the last ``window`` completions, seeded with ``copies`` of ``initial``."""

    def __init__(self, window: int, initial: int, copies: int) -> None:
        self._values: deque[int] = deque([initial] * min(copies, window), maxlen=window)
        self._sorted: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._values)

    def add(self, output_tokens: int) -> None:
        self._values.append(int(output_tokens))
        self._sorted = None

    @property
    def sorted(self) -> np.ndarray:
        if self._sorted is None:
            self._sorted = np.sort(np.fromiter(self._values, dtype=np.int64, count=len(self._values)))
        return self._sorted

    def draw_new(self, rng: np.random.Generator, caps: np.ndarray, scenarios: int) -> np.ndarray:
        """Output lengths of requests not yet started: ``(scenarios, n)`` uniform history draws."""
        caps = np.asarray(caps, dtype=np.int64)
        history = self.sorted
        if history.size == 0:
            return np.broadcast_to(caps, (scenarios, caps.size)).copy()
        drawn = history[rng.integers(history.size, size=(scenarios, caps.size))]
        return np.clip(drawn, 1, caps)

    def draw_final(self, rng: np.random.Generator, decoded: np.ndarray, caps: np.ndarray,
                   scenarios: int) -> np.ndarray:
        """Final lengths of requests that have generated ``decoded`` tokens: ``(scenarios, n)``."""
        decoded = np.asarray(decoded, dtype=np.int64)
        caps = np.maximum(np.asarray(caps, dtype=np.int64), decoded)
        history, n = self.sorted, decoded.size
        start = np.searchsorted(history, decoded, side="right")  # first history value above decoded
        above = history.size - start
        largest = history[-1] if history.size else 0
        size = 1 + above + (caps > np.where(above > 0, largest, decoded))  # support size
        # One lookup table for every support: the history, then each request's cap, then its decoded.
        table = np.concatenate((history, caps, decoded))
        u = rng.random((scenarios, n)) * (size - 1)
        left = np.minimum(u.astype(np.int64), np.maximum(size - 2, 0))
        index = np.where(left == 0, history.size + n + np.arange(n),
                         np.where(left <= above, start + left - 1, history.size + np.arange(n)))
        right = left + 1
        next_index = np.where(right <= above, start + right - 1, history.size + np.arange(n))
        next_index = np.where(size > 1, next_index, index)
        lo, hi = table[index], table[next_index]
        final = np.rint(lo + (hi - lo) * (u - left)).astype(np.int64)
        return np.minimum(final, caps)
