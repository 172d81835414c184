"""Past-Future's length history: the sliding window and its conditional draws (POLICY_SPECS.md 4.4)."""

from __future__ import annotations

import numpy as np

from policies.admission.length_history import LengthHistory

DRAWS = 40_000


def history(*values: int, window: int = 10) -> LengthHistory:
    h = LengthHistory(window, initial=0, copies=0)
    for value in values:
        h.add(value)
    return h


def test_window_keeps_the_seed_until_real_lengths_push_it_out() -> None:
    h = LengthHistory(window=4, initial=6000, copies=2)
    assert h.sorted.tolist() == [6000, 6000]
    for value in (10, 20, 30):
        h.add(value)
    assert h.sorted.tolist() == [10, 20, 30, 6000]
    h.add(40)
    assert h.sorted.tolist() == [10, 20, 30, 40] and len(h) == 4


def test_conditional_draw_interpolates_over_decoded_the_longer_history_and_the_cap() -> None:
    h, rng = history(10, 20, 30, 40), np.random.default_rng(0)
    decoded = np.array([0, 15, 35, 40, 45])
    final = h.draw_final(rng, decoded, np.full(5, 50), DRAWS)
    # Supports: [0,10,20,30,40,50], [15,20,30,40,50], [35,40,50], [40,50], [45,50]; each segment
    # is equally likely and uniform inside, so the means are the means of the segment midpoints.
    expected = [25.0, (17.5 + 25 + 35 + 45) / 4, (37.5 + 45) / 2, 45.0, 47.5]
    assert np.allclose(final.mean(axis=0), expected, atol=0.3)
    assert (final >= decoded).all() and (final <= 50).all()


def test_a_cap_below_the_longest_history_is_not_appended_and_clamps_the_draw() -> None:
    h, rng = history(10, 20, 30, 40), np.random.default_rng(0)
    final = h.draw_final(rng, np.array([5]), np.array([25]), DRAWS)[:, 0]
    assert final.max() == 25 and final.min() >= 5
    # Support [5, 10, 20, 30, 40] clamped at 25: final = 25 once the interpolation rounds to
    # 25 or more, i.e. past 24.5, 0.55 of the way through segment [20, 30]: P = 1.55 / 4.
    assert abs((final == 25).mean() - 1.55 / 4) < 0.01


def test_past_every_history_value_the_draw_is_uniform_up_to_the_cap() -> None:
    h, rng = history(10, 20), np.random.default_rng(0)
    final = h.draw_final(rng, np.array([100]), np.array([200]), DRAWS)[:, 0]
    assert final.min() >= 100 and final.max() <= 200 and abs(final.mean() - 150) < 1


def test_an_empty_history_draws_between_decoded_and_the_cap_and_new_requests_get_the_cap() -> None:
    h, rng = history(), np.random.default_rng(0)
    final = h.draw_final(rng, np.array([0, 7]), np.array([10, 10]), DRAWS)
    assert final.min() >= 0 and final.max() <= 10 and abs(final[:, 1].mean() - 8.5) < 0.05
    assert h.draw_new(rng, np.array([64, 128]), 3).tolist() == [[64, 128]] * 3


def test_new_requests_draw_history_values_uniformly_clamped_to_their_cap() -> None:
    h, rng = history(10, 20, 30, 40), np.random.default_rng(0)
    drawn = h.draw_new(rng, np.array([1000, 25]), DRAWS)
    assert set(np.unique(drawn[:, 0])) == {10, 20, 30, 40}
    assert set(np.unique(drawn[:, 1])) == {10, 20, 25}
    assert abs(drawn[:, 0].mean() - 25) < 0.3
