"""Tests of the inter-token-gap histogram and of the run summary.

The summary test works a three-request run out by hand; the numbers in the
comments are the arithmetic the expected values come from.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from simulator.metrics.histogram import LogHistogram
from simulator.metrics.run_stats import EventCounts, InstanceStats, RunStats
from simulator.metrics.summary import (
    REQUEST_COLUMNS,
    SUMMARY_SCHEMA,
    add_latency_columns,
    empty_requests_frame,
    summarize,
)

QS = [0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0]


def assert_close_relative(actual: float, expected: float, tol: float = 0.01) -> None:
    assert abs(actual - expected) <= tol * abs(expected), (actual, expected)


# ---- LogHistogram ---------------------------------------------------------------------------


def test_quantiles_match_numpy_on_lognormal_gaps() -> None:
    values = np.random.default_rng(1).lognormal(mean=-3.0, sigma=1.5, size=200_000)
    hist = LogHistogram()
    hist.add_many(values)
    assert hist.count == values.size
    for q in QS:
        assert_close_relative(hist.quantile(q), float(np.quantile(values, q)))
    assert hist.mean() == pytest.approx(values.mean(), rel=1e-12)


def test_quantiles_hold_over_the_whole_value_range() -> None:
    values = 10.0 ** np.random.default_rng(2).uniform(-7, 6, size=50_000)
    hist = LogHistogram()
    hist.add_many(values)
    for q in QS:
        assert_close_relative(hist.quantile(q), float(np.quantile(values, q)))


def test_weights_count_like_repeated_values_and_zeros_sort_first() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([np.zeros(50), rng.lognormal(-2.0, 1.0, size=500)])
    weights = rng.integers(0, 20, size=values.size)
    hist = LogHistogram()
    hist.add_many(values, weights)
    expanded = np.repeat(values, weights)
    assert hist.count == expanded.size
    for q in QS:
        expected = float(np.quantile(expanded, q))
        assert abs(hist.quantile(q) - expected) <= 0.01 * expected


def test_add_repeated_equals_adding_one_by_one() -> None:
    bulk, single = LogHistogram(), LogHistogram()
    for value, count in [(0.025, 7), (0.0, 3), (1.5e-6, 2), (0.025, 1), (40.0, 5)]:
        bulk.add_repeated(value, count)
        for _ in range(count):
            single.add(value)
    bulk_dict, single_dict = bulk.to_dict(), single.to_dict()
    assert bulk_dict.pop("sum") == pytest.approx(single_dict.pop("sum"), rel=1e-12)
    assert bulk_dict == single_dict
    assert [bulk.quantile(q) for q in QS] == [single.quantile(q) for q in QS]


def test_add_many_equals_add() -> None:
    values = np.random.default_rng(4).lognormal(-4.0, 2.0, size=1000)
    vectorised, looped = LogHistogram(), LogHistogram()
    vectorised.add_many(values)
    for value in values:
        looped.add(float(value))
    assert vectorised.to_dict()["counts"] == looped.to_dict()["counts"]
    assert vectorised.to_dict()["buckets"] == looped.to_dict()["buckets"]


def test_gap_buffer_counts_every_gap_and_flushes_in_batches(monkeypatch) -> None:
    """The engine's write buffer: everything it holds reaches the histogram, and it flushes in
    batches (a flush per add would cost the numpy calls the buffer exists to save)."""
    from simulator.metrics import gap_buffer

    monkeypatch.setattr(gap_buffer, "FLUSH_AT", 10)
    direct, buffered = LogHistogram(), LogHistogram()
    flushes = []

    class CountingBuffer(gap_buffer.GapBuffer):
        def _flush_each(self) -> None:
            flushes.append(len(self._each_counts))
            super()._flush_each()

    buffer = CountingBuffer(buffered)
    rng = np.random.default_rng(6)
    for _ in range(12):
        values, count = rng.uniform(0.001, 0.1, size=3), int(rng.integers(1, 5))
        buffer.add_repeated_each(values, count)
        direct.add_many(values, np.full(3, count))
    buffer.extend([0.5, 0.25])
    direct.add_many(np.array([0.5, 0.25]))
    buffer.add_repeated(0.125, 7)  # one step's gap shared by a batch of seven
    direct.add_many(np.array([0.125]), np.array([7]))
    buffer.add_repeated_each([0.01, 0.02], 2)  # the engine passes lists
    direct.add_many(np.array([0.01, 0.02]), np.array([2, 2]))
    buffer.flush()
    assert flushes[:3] == [4, 4, 4], "a flush every 10 items (four arrays of three)"
    flushed, expected = buffered.to_dict(), direct.to_dict()
    assert flushed.pop("sum") == pytest.approx(expected.pop("sum"), rel=1e-12)
    assert flushed == expected


def test_merge_equals_one_histogram_of_both() -> None:
    rng = np.random.default_rng(5)
    low, high = rng.uniform(1e-6, 1e-4, 300), rng.uniform(10.0, 1e4, 300)
    whole, first, second = LogHistogram(), LogHistogram(), LogHistogram()
    whole.add_many(np.concatenate([low, high, [0.0]]))
    first.add_many(high)
    second.add_many(np.append(low, 0.0))
    assert first.merge(second) is first
    merged, expected = first.to_dict(), whole.to_dict()
    assert merged.pop("sum") == pytest.approx(expected.pop("sum"))
    assert merged == expected


def test_merge_refuses_other_growth() -> None:
    with pytest.raises(ValueError, match="growth"):
        LogHistogram().merge(LogHistogram(growth=1.005))


def test_dict_round_trip_through_json() -> None:
    hist = LogHistogram()
    hist.add_many(np.array([0.0, 0.01, 0.02, 3.0]), np.array([2, 1, 4, 1]))
    again = LogHistogram.from_dict(json.loads(json.dumps(hist.to_dict())))
    assert again.to_dict() == hist.to_dict()
    assert [again.quantile(q) for q in QS] == [hist.quantile(q) for q in QS]


def test_empty_histogram_reads_as_nan() -> None:
    hist = LogHistogram()
    assert hist.count == 0
    assert math.isnan(hist.mean()) and math.isnan(hist.quantile(0.5))
    assert LogHistogram.from_dict(hist.to_dict()).count == 0


def test_single_value_is_exact() -> None:
    hist = LogHistogram()
    hist.add_repeated(0.0123, 1000)
    assert hist.quantile(0.0) == hist.quantile(0.99) == 0.0123


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_bad_values_are_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        LogHistogram().add(bad)
    with pytest.raises(ValueError):
        LogHistogram().add_many(np.array([1.0, bad]))


def test_bad_weights_and_quantiles_are_refused() -> None:
    hist = LogHistogram()
    with pytest.raises(ValueError):
        hist.add_many(np.array([1.0, 2.0]), np.array([1.0, 0.5]))
    with pytest.raises(ValueError):
        hist.add_repeated(1.0, -1)
    with pytest.raises(ValueError):
        hist.quantile(1.5)


# ---- summary --------------------------------------------------------------------------------


def three_requests() -> pd.DataFrame:
    """Arrivals at 0, 1, 2 s: a 5-token request, a 1-token request, a rejected request."""
    nan = math.nan
    rows = {
        "request_id": [0, 1, 2],
        "arrival_s": [0.0, 1.0, 2.0],
        "instance_id": [0, 1, -1],
        "status": ["finished", "finished", "rejected"],
        "reject_reason": ["", "", "kv_capacity"],
        "prompt_tokens": [100, 50, 30],
        "output_tokens": [5, 1, 10],
        "generated_tokens": [5, 1, 0],
        "first_scheduled_s": [0.1, 1.2, nan],
        "first_token_s": [0.5, 2.0, nan],
        "last_token_s": [2.5, 2.0, nan],
        "finish_s": [2.5, 2.0, nan],
        "max_token_gap_s": [0.5, 0.0, nan],
        "num_preemptions": [0, 0, 0],
        "prefix_hit_tokens": [0, 0, 0],
        "recomputed_tokens": [0, 0, 0],
        "tenant": ["a", "a", "b"],
        "priority": [0, 0, 0],
        "slo_class": ["default"] * 3,
        "session_id": ["", "", ""],
    }
    return pd.DataFrame(rows, columns=list(REQUEST_COLUMNS))


def two_instance_stats(simulated_s: float = 4.0) -> RunStats:
    def instance(instance_id: int, gpus: int, busy: float, energy: float, kv: float, peak: float):
        return InstanceStats(
            instance_id=instance_id, gpu="h100-sxm", gpu_count=gpus, peak_flops_per_gpu=1e15,
            hbm_bytes_per_s_per_gpu=3e12, usd_per_hour_per_gpu=2.0, kv_capacity_blocks=1000,
            busy_s=busy, steps=5, flops=1e15 * gpus, hbm_bytes=3e12 * gpus, energy_j=energy,
            kv_usage_integral=kv, kv_peak_fraction=peak)

    gaps = LogHistogram()
    gaps.add_repeated(0.5, 4)  # request 0: four gaps of 0.5 s
    return RunStats(
        simulated_s=simulated_s, wall_s=0.5, steps=10,
        instances=[instance(0, 1, 2.0, 1000.0, 2.0, 0.8), instance(1, 2, 1.0, 500.0, 1.0, 0.6)],
        events=EventCounts(preemptions=3, migrations=1, kv_transfer_bytes=1e9,
                           prefix_hit_tokens=64),
        token_gap_histogram=gaps, extra={"autoscaler": {"scale_outs": np.int64(2)}})


def run_summary(frame: pd.DataFrame, stats: RunStats, **kwargs) -> dict:
    options = {"slo_ttft_s": None, "slo_tpot_s": None} | kwargs
    return summarize(frame, stats, experiment="unit", seed=7, version="0.1.0", **options)


def test_latency_columns() -> None:
    frame = three_requests()
    latencies = add_latency_columns(frame)
    assert "ttft_s" not in frame.columns  # the input is not modified
    assert latencies["ttft_s"].tolist()[:2] == [0.5, 1.0]
    assert latencies["tpot_s"].iloc[0] == 0.5  # (2.5 - 0.5) / (5 - 1)
    assert math.isnan(latencies["tpot_s"].iloc[1])  # one token: no gap
    assert latencies["e2e_s"].tolist()[:2] == [2.5, 1.0]
    assert latencies["queue_s"].tolist()[:2] == pytest.approx([0.1, 0.2])
    assert latencies[["ttft_s", "tpot_s", "e2e_s", "queue_s"]].iloc[2].isna().all()


def test_summary_by_hand() -> None:
    s = run_summary(three_requests(), two_instance_stats(), slo_ttft_s=0.8, slo_tpot_s=0.6)
    approx = pytest.approx
    assert (s["experiment"], s["seed"], s["version"]) == ("unit", 7, "0.1.0")
    assert s["requests"] == {"arrived": 3, "completed": 2, "rejected": 1, "unfinished": 0}
    # TTFT of the completed: [0.5, 1.0]; linear percentiles at rank (n - 1) q = q.
    assert s["ttft_s"] == approx({"mean": 0.75, "p50": 0.75, "p90": 0.95, "p99": 0.995})
    # TPOT: only request 0 has two tokens or more: (2.5 - 0.5) / 4.
    assert s["tpot_s"] == approx({"mean": 0.5, "p50": 0.5, "p90": 0.5, "p99": 0.5})
    assert s["tbt_s"] == approx({"mean": 0.5, "p50": 0.5, "p90": 0.5, "p99": 0.5})
    assert s["e2e_s"] == approx({"mean": 1.75, "p50": 1.75, "p90": 2.35, "p99": 2.485})
    assert s["queue_s"] == approx({"mean": 0.15, "p50": 0.15, "p90": 0.19, "p99": 0.199})
    # Window = 4 s end - 0 s first arrival. Completed prompts 150; generated 5 + 1 + 0.
    assert s["sim"] == approx({"simulated_s": 4.0, "window_s": 4.0, "wall_s": 0.5, "steps": 10,
                               "requests_per_wall_s": 6.0})
    assert s["throughput"] == approx(
        {"requests_per_s": 0.5, "input_tokens_per_s": 37.5, "output_tokens_per_s": 1.5})
    # Request 0 meets both SLOs; request 1 misses TTFT (1.0 > 0.8); request 2 was rejected.
    assert s["slo"] == approx({"ttft_s": 0.8, "tpot_s": 0.6, "attainment": 1 / 3})
    assert s["goodput"] == approx({"requests_per_s": 0.25, "tokens_per_s": (100 + 5) / 4})
    # busy 3 / (2 x 4); KV mean of 2/4 and 1/4; FLOPs 3e15 over 1e15 x 3 GPUs x 4 s.
    assert s["utilization"] == approx(
        {"gpu_busy": 0.375, "kv_mean": 0.375, "kv_peak": 0.8, "mfu": 0.25, "mbu": 0.25})
    assert s["events"] == {"preemptions": 3, "migrations": 1, "kv_transfer_bytes": 1e9,
                           "prefix_hit_tokens": 64}
    assert s["energy"] == approx({"joules": 1500.0, "joules_per_output_token": 250.0})
    usd = 3 * 2.0 * 4.0 / 3600  # 3 GPUs x $2/h x 4 s
    assert s["cost"] == approx({"usd": usd, "usd_per_million_output_tokens": usd / 6 * 1e6})
    assert s["workflows"] == {"completed": None, "tct_s": None}
    assert s["autoscaler"] == {"scale_outs": 2} and type(s["autoscaler"]["scale_outs"]) is int
    json.dumps(s, allow_nan=False)


def test_one_token_output_meets_any_tpot_slo() -> None:
    # TTFT 2 s lets both completed requests in; TPOT 0.1 s fails request 0 (0.5 s) but not
    # request 1, whose single token has no TPOT.
    s = run_summary(three_requests(), two_instance_stats(), slo_ttft_s=2.0, slo_tpot_s=0.1)
    assert s["slo"]["attainment"] == pytest.approx(1 / 3)
    assert s["goodput"] == pytest.approx({"requests_per_s": 0.25, "tokens_per_s": (50 + 1) / 4})


def test_without_slo_goodput_is_throughput() -> None:
    s = run_summary(three_requests(), two_instance_stats())
    assert s["slo"] == {"ttft_s": None, "tpot_s": None, "attainment": None}
    assert s["goodput"]["requests_per_s"] == s["throughput"]["requests_per_s"]
    assert s["goodput"]["tokens_per_s"] == pytest.approx((150 + 6) / 4)


def test_workflow_completion_times() -> None:
    s = run_summary(three_requests(), two_instance_stats(), workflow_tct_s=np.array([1.0, 3.0]))
    assert s["workflows"]["completed"] == 2
    expected = {"mean": 2.0, "p50": 2.0, "p90": 2.8, "p99": 2.98}
    assert s["workflows"]["tct_s"] == pytest.approx(expected)


DESIGN_KEYS = {
    "experiment": None, "seed": None, "version": None,
    "requests": {"arrived", "completed", "rejected", "unfinished"},
    **{key: {"mean", "p50", "p90", "p99"}
       for key in ("ttft_s", "tpot_s", "tbt_s", "e2e_s", "queue_s")},
    "throughput": {"requests_per_s", "input_tokens_per_s", "output_tokens_per_s"},
    "slo": {"ttft_s", "tpot_s", "attainment"},
    "goodput": {"requests_per_s", "tokens_per_s"},
    "utilization": {"gpu_busy", "kv_mean", "kv_peak", "mfu", "mbu"},
    "events": {"preemptions", "migrations", "kv_transfer_bytes", "prefix_hit_tokens"},
    "energy": {"joules", "joules_per_output_token"},
    "cost": {"usd", "usd_per_million_output_tokens"},
    "workflows": {"completed", "tct_s"},
    "sim": {"simulated_s", "wall_s", "steps", "requests_per_wall_s"},
}


def assert_has_design_keys(summary: dict) -> None:
    for key, sub_keys in DESIGN_KEYS.items():
        assert key in summary
        if sub_keys is not None:
            assert sub_keys <= set(summary[key]), key


@pytest.mark.parametrize("frame", [three_requests(), empty_requests_frame(),
                                   pd.DataFrame(columns=list(REQUEST_COLUMNS))])
def test_every_design_key_is_present(frame: pd.DataFrame) -> None:
    summary = run_summary(frame, two_instance_stats(), slo_ttft_s=1.0, slo_tpot_s=None)
    assert_has_design_keys(summary)
    assert list(summary)[:len(SUMMARY_SCHEMA)] == list(SUMMARY_SCHEMA)


def test_empty_run_does_not_crash() -> None:
    stats = RunStats(simulated_s=0.0, wall_s=0.0, steps=0, instances=[], events=EventCounts(),
                     token_gap_histogram=LogHistogram())
    s = run_summary(empty_requests_frame(), stats, slo_ttft_s=1.0, slo_tpot_s=0.1)
    assert s["requests"] == {"arrived": 0, "completed": 0, "rejected": 0, "unfinished": 0}
    for key in ("ttft_s", "tpot_s", "tbt_s", "e2e_s", "queue_s"):
        assert s[key] == {"mean": None, "p50": None, "p90": None, "p99": None}
    assert set(s["throughput"].values()) == {0.0}
    assert s["slo"]["attainment"] is None
    assert set(s["utilization"].values()) == {None}
    assert s["energy"] == {"joules": 0, "joules_per_output_token": None}
    assert s["sim"]["window_s"] > 0 and s["sim"]["requests_per_wall_s"] is None
    json.dumps(s, allow_nan=False)


def test_unknown_status_and_extra_collisions_are_refused() -> None:
    frame = three_requests()
    frame.loc[2, "status"] = "lost"
    with pytest.raises(ValueError, match="lost"):
        run_summary(frame, two_instance_stats())
    stats = two_instance_stats()
    stats.extra = {"slo": 1}
    with pytest.raises(ValueError, match="slo"):
        run_summary(three_requests(), stats)


def test_step_energy_is_summed_in_batches_and_loses_nothing() -> None:
    """A committed step's joules wait for one vectorised call of the power model; every flush (at
    the batch size, and the one at the end of a run) adds exactly the steps' scalar energies."""
    from simulator.engine.usage import InstanceUsage
    from simulator.hardware import DEFAULT_CATALOG
    from simulator.metrics.run_stats import InstanceStats
    from simulator.perf.power import PowerModel

    class SmallBatches(InstanceUsage):
        ENERGY_BATCH = 4

    gpu = DEFAULT_CATALOG.get("gpu", "h100-sxm")
    power = PowerModel(gpu, 2, 500e12, 3e12)
    stats = InstanceStats(0, gpu.name, 2, 989e12, 3.35e12, 2.0, 100)
    usage = SmallBatches(stats, power, kv=None)
    rng = np.random.default_rng(3)
    steps = [(float(rng.uniform(0.01, 0.2)), float(rng.uniform(0, 4e14)), float(rng.uniform(0, 2e12)))
             for _ in range(10)]
    for count, step in enumerate(steps, start=1):
        usage.step(*step)
        priced = count - count % 4
        assert stats.energy_j == pytest.approx(sum(power.busy_energy_j(*s) for s in steps[:priced]), rel=1e-12)
    usage.flush()
    assert stats.energy_j == pytest.approx(sum(power.busy_energy_j(*s) for s in steps), rel=1e-12)
    assert stats.steps == 10 and stats.busy_s == pytest.approx(sum(s[0] for s in steps))
