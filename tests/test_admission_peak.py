"""The future-peak formula (POLICY_SPECS.md 4.3) on hand-computed cases and against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from policies.admission.peak import future_peak, future_peaks


def brute_force_peak(cur: list[int], rem: list[int]) -> int:
    """Memory at every step t: each request still alive (t <= rem) holds cur + t tokens."""
    if not cur:
        return 0
    return max(sum(c + t for c, r in zip(cur, rem) if t <= r) for t in range(max(rem) + 1))


@pytest.mark.parametrize(("cur", "rem", "peak"), [
    ([], [], 0),
    ([10], [5], 15),                          # one request: all it will ever hold
    ([100, 50], [10, 30], 170),               # k=1: 30 + 50 = 80; k=2: 2*10 + 150 = 170
    ([10, 20, 30], [100, 50, 10], 130),       # k=1: 110; k=2: 2*50 + 30 = 130; k=3: 3*10 + 60 = 90
    ([5, 5], [0, 0], 10),                     # nothing left to generate: what is held now
    ([1000, 1, 1], [1, 500, 500], 1005),      # k=1: 501; k=2: 2*500 + 2 = 1002; k=3: 3*1 + 1002 = 1005
    ([0, 0, 0, 0], [4, 3, 2, 1], 6),          # k=1: 4; k=2: 6; k=3: 6; k=4: 4
])
def test_future_peak_on_hand_computed_cases(cur, rem, peak) -> None:
    assert future_peak(cur, rem) == peak
    assert brute_force_peak(cur, rem) == peak


def test_future_peak_equals_brute_force_on_random_batches() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        cur, rem = rng.integers(0, 60, n).tolist(), rng.integers(0, 40, n).tolist()
        assert future_peak(cur, rem) == brute_force_peak(cur, rem)


def test_future_peaks_takes_one_row_per_scenario() -> None:
    cur = np.array([100, 50])
    rem = np.array([[10, 30], [30, 10], [0, 0]])
    # Scenario 2 swaps the lengths: k=1: 30 + 100 = 130, k=2: 2*10 + 150 = 170.
    assert future_peaks(cur, rem).tolist() == [170, 170, 150]
    assert future_peaks(np.array([[1, 2], [3, 4]]), np.array([[1, 1], [1, 1]])).tolist() == [5, 9]
    assert future_peaks(np.zeros(0), np.zeros((3, 0))).tolist() == [0, 0, 0]


def test_future_peak_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="equal length"):
        future_peak([1, 2], [3])
