"""Tests of workloads/: configuration checks, generators, profiles and trace replay.

Statistical tests use fixed seeds, so they are deterministic; their
tolerances are still several standard errors wide so a change of random
stream does not make them flaky. Tests that read the real traces skip when
``../shared/data`` is not beside the repository.
"""

from __future__ import annotations

import gzip
import itertools
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import TraceError
from simulator.yaml_loading import condense_validation_error
from workloads import WorkloadConfig, build_workload, profile_names
from workloads.fit_profiles import main as fit_profiles_main

CONV = "vidur_traces/splitwise_conv.csv"


@pytest.fixture
def shared_data() -> Path:
    path = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        pytest.skip("../shared/data is not available")
    return path


def config(**workload) -> WorkloadConfig:
    return WorkloadConfig.model_validate(workload)


def generator(lengths=None, process="poisson", rate=10.0, **limits) -> WorkloadConfig:
    arrivals = {"process": process, "rate_per_s": rate}
    if "cv" in limits:
        arrivals["cv"] = limits.pop("cv")
    lengths = lengths or {"prompt": {"dist": "fixed", "tokens": 100},
                          "output": {"dist": "fixed", "tokens": 10}}
    return config(generator={"arrivals": arrivals, "lengths": lengths}, **limits)


def run(cfg: WorkloadConfig, seed: int = 0, base_dir: Path = Path(".")) -> list:
    return list(build_workload(cfg, np.random.default_rng(seed), base_dir))


def columns(specs: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.array([s.arrival_s for s in specs]), np.array([s.prompt_tokens for s in specs]),
            np.array([s.output_tokens for s in specs]))


def config_error(**workload) -> str:
    with pytest.raises(pydantic.ValidationError) as info:
        config(**workload)
    return condense_validation_error(info.value, "exp.yaml", "workload")


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- configuration ------------------------------------------------------------------------------

GEN = {"arrivals": {"process": "poisson", "rate_per_s": 1}, "lengths": {"profile": "azure-conv-2023"}}


@pytest.mark.parametrize(("workload", "expected"), [
    ({"num_requests": 5}, "exactly one of 'generator' and 'trace'"),
    ({"generator": GEN, "trace": {"path": "t.csv"}, "num_requests": 5}, "exactly one"),
    ({"generator": GEN}, "needs 'num_requests' or 'duration_s'"),
    ({"generator": GEN, "num_requests": 0}, "workload.num_requests: Input should be greater than 0"),
    ({"generator": GEN, "duration_s": float("nan")}, "workload.duration_s: Input should be a finite number"),
    ({"generator": {**GEN, "arrivals": {"process": "poisson", "rate_per_s": math.inf}}, "num_requests": 1},
     "workload.generator.arrivals.rate_per_s: Input should be a finite number"),
    ({"generator": {**GEN, "arrivals": {"process": "poisson", "rate_per_s": 1, "cv": 2}}, "num_requests": 1},
     "cv applies to process: gamma only"),
    ({"generator": {**GEN, "lengths": {"profile": "nope"}}, "num_requests": 1},
     "unknown length profile 'nope'; known: arxiv-summarization, azure-code-2023, azure-conv-2023"),
    ({"generator": {**GEN, "lengths": {"prompt": {"dist": "fixed", "tokens": 5}}}, "num_requests": 1},
     "give either 'profile' or both 'prompt' and 'output'"),
    ({"generator": {**GEN, "lengths": {"prompt": {"dist": "zipf"}, "output": {"dist": "fixed", "tokens": 1}}},
      "num_requests": 1}, "workload.generator.lengths.prompt: expected 'dist' to be one of"),
    ({"generator": {**GEN, "lengths": {"prompt": {"dist": "uniform", "min_tokens": 9, "max_tokens": 3},
                                       "output": {"dist": "fixed", "tokens": 1}}}, "num_requests": 1},
     "min_tokens (9) is greater than max_tokens (3)"),
    ({"generator": {**GEN, "lengths": {"prompt": {"dist": "lognormal", "median_tokens": 5, "sigma": -1},
                                       "output": {"dist": "fixed", "tokens": 1}}}, "num_requests": 1},
     "workload.generator.lengths.prompt.sigma: Input should be greater than 0"),
    ({"generator": {**GEN, "lengths": {"prompt": {"dist": "fixed", "tokens": 5, "typo": 1},
                                       "output": {"dist": "fixed", "tokens": 1}}}, "num_requests": 1},
     "workload.generator.lengths.prompt.typo: unknown key"),
    ({"trace": {"path": "t.csv", "time_scale": 0}},
     "workload.trace.time_scale: Input should be greater than 0"),
])
def test_invalid_configs_give_one_line_naming_the_field(workload, expected):
    message = config_error(**workload)
    assert expected in message
    assert message.startswith("exp.yaml: ") and "\n" not in message


def test_trace_defaults_match_vidur_columns():
    trace = config(trace={"path": "t.csv"}).trace
    assert (trace.columns.arrival_s, trace.columns.prompt_tokens, trace.columns.output_tokens) == (
        "arrived_at", "num_prefill_tokens", "num_decode_tokens")
    assert trace.time_scale == 1.0 and trace.start_at_zero and trace.format == "csv"


# --- arrivals -----------------------------------------------------------------------------------

def test_poisson_mean_gap_is_one_over_rate():
    arrival, _, _ = columns(run(generator(rate=25.0, num_requests=20_000)))
    gaps = np.diff(np.concatenate([[0.0], arrival]))
    # The sample mean of 20k exponentials has a relative standard error of 0.7%.
    assert gaps.mean() == pytest.approx(1 / 25.0, rel=0.04)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("cv", [0.5, 2.0])
def test_gamma_gaps_have_the_requested_cv(cv):
    arrival, _, _ = columns(run(generator(process="gamma", rate=5.0, cv=cv, num_requests=20_000)))
    gaps = np.diff(np.concatenate([[0.0], arrival]))
    assert gaps.mean() == pytest.approx(1 / 5.0, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.1)


def test_same_seed_same_requests_and_different_seed_different():
    cfg = generator({"profile": "azure-code-2023"}, num_requests=5000)
    assert run(cfg, seed=7) == run(cfg, seed=7)
    assert run(cfg, seed=7) != run(cfg, seed=8)


def test_streams_are_independent_so_changing_outputs_keeps_arrivals_and_prompts():
    prompt = {"dist": "uniform", "min_tokens": 1, "max_tokens": 1000}
    one = run(generator({"prompt": prompt, "output": {"dist": "fixed", "tokens": 5}}, num_requests=5000))
    two = run(generator({"prompt": prompt, "output": {"dist": "lognormal", "median_tokens": 50, "sigma": 1}},
                        num_requests=5000))
    for column_one, column_two in zip(columns(one)[:2], columns(two)[:2], strict=True):
        np.testing.assert_array_equal(column_one, column_two)


def test_num_requests_and_duration_limits():
    assert len(run(generator(num_requests=4096))) == 4096
    assert len(run(generator(num_requests=10_001))) == 10_001
    arrival, _, _ = columns(run(generator(rate=100.0, duration_s=50.0)))
    assert arrival.max() < 50.0 and len(arrival) == pytest.approx(5000, rel=0.1)
    both = run(generator(rate=100.0, duration_s=50.0, num_requests=100))
    assert len(both) == 100


def test_a_shorter_run_is_a_prefix_of_a_longer_one():
    cfg = {"profile": "azure-conv-2023"}
    assert run(generator(cfg, num_requests=5000)) == run(generator(cfg, num_requests=9000))[:5000]


def test_generation_is_lazy():
    workload = build_workload(generator(num_requests=10**12), np.random.default_rng(0), Path("."))
    assert len(list(itertools.islice(workload, 10))) == 10


def test_max_output_tokens_is_copied_onto_every_request():
    specs = run(config(generator=GEN, num_requests=10, max_output_tokens=64))
    assert {s.max_output_tokens for s in specs} == {64}


# --- lengths ------------------------------------------------------------------------------------

def test_fixed_and_uniform_bounds_are_exact():
    lengths = {"prompt": {"dist": "fixed", "tokens": 123}, "output": {"dist": "uniform", "min_tokens": 3,
                                                                      "max_tokens": 7}}
    _, prompt, output = columns(run(generator(lengths, num_requests=5000)))
    assert set(prompt.tolist()) == {123}
    assert set(output.tolist()) == {3, 4, 5, 6, 7}


def test_lognormal_median_and_counted_clipping():
    lengths = {"prompt": {"dist": "lognormal", "median_tokens": 500, "sigma": 1.0},
               "output": {"dist": "lognormal", "median_tokens": 100, "sigma": 1.0, "min_tokens": 20,
                          "max_tokens": 300}}
    workload = build_workload(generator(lengths, num_requests=20_000), np.random.default_rng(3), Path("."))
    _, prompt, output = columns(list(workload))
    assert np.median(prompt) == pytest.approx(500, rel=0.03)
    assert output.min() == 20 and output.max() == 300
    # About 5.4% of draws fall below 20 and 13.5% above 300; each was clipped and counted.
    expected = 20_000 * (0.054 + 0.135)
    assert workload.stats.clipped_outputs == pytest.approx(expected, rel=0.1)
    assert workload.stats.clipped_prompts == 0


@pytest.mark.parametrize(("profile", "prompt_median", "output_median"), [
    ("azure-conv-2023", 1020, 129), ("azure-code-2023", 1469, 13),
])
def test_azure_profiles_reproduce_the_trace_medians(profile, prompt_median, output_median):
    _, prompt, output = columns(run(generator({"profile": profile}, num_requests=50_000)))
    assert np.median(prompt) == pytest.approx(prompt_median, rel=0.02)
    assert np.median(output) == pytest.approx(output_median, rel=0.05)


def test_every_profile_is_listed():
    assert profile_names() == ["arxiv-summarization", "azure-code-2023", "azure-conv-2023"]


def test_shipped_profile_tables_match_the_data(shared_data):
    assert fit_profiles_main([str(shared_data), "--check"]) == 0


def test_empirical_draws_only_values_from_the_column(tmp_path):
    write_csv(tmp_path / "lens.csv", "p,o\n10,1\n20,2\n30,0\n")
    lengths = {"prompt": {"dist": "empirical", "path": "lens.csv", "column": "p"},
               "output": {"dist": "empirical", "path": "lens.csv", "column": "o"}}
    workload = build_workload(generator(lengths, num_requests=3000), np.random.default_rng(0), tmp_path)
    _, prompt, output = columns(list(workload))
    assert set(prompt.tolist()) == {10, 20, 30}
    assert set(output.tolist()) == {1, 2}  # the zero is raised to one token, and counted
    assert workload.stats.clipped_outputs == pytest.approx(1000, rel=0.1)


def test_missing_empirical_file_names_the_path(tmp_path):
    lengths = {"prompt": {"dist": "empirical", "path": "nope.csv", "column": "p"},
               "output": {"dist": "fixed", "tokens": 1}}
    with pytest.raises(TraceError, match="nope.csv: file not found"):
        build_workload(generator(lengths, num_requests=3), np.random.default_rng(0), tmp_path)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), rate=st.floats(0.01, 1000), cv=st.floats(0.2, 5),
       low=st.integers(1, 50), span=st.integers(0, 50), n=st.integers(1, 6000))
def test_generated_requests_are_sorted_whole_and_within_bounds(seed, rate, cv, low, span, n):
    lengths = {"prompt": {"dist": "uniform", "min_tokens": low, "max_tokens": low + span},
               "output": {"dist": "lognormal", "median_tokens": 20, "sigma": 2.0, "max_tokens": 1000}}
    specs = run(generator(lengths, process="gamma", rate=rate, cv=cv, num_requests=n), seed=seed)
    arrival, prompt, output = columns(specs)
    assert len(specs) == n and np.all(np.diff(arrival) >= 0) and arrival[0] >= 0
    assert all(type(s.prompt_tokens) is int and type(s.output_tokens) is int for s in specs)
    assert prompt.min() >= low and prompt.max() <= low + span
    assert output.min() >= 1 and output.max() <= 1000


# --- trace replay -------------------------------------------------------------------------------

def test_replays_the_vidur_conv_trace(shared_data):
    path = shared_data / CONV
    specs = run(config(trace={"path": str(path)}))
    data = pd.read_csv(path)
    arrival, prompt, output = columns(specs)
    assert len(specs) == 19_366 and arrival[0] == 0.0
    np.testing.assert_allclose(arrival, data["arrived_at"].to_numpy())
    np.testing.assert_array_equal(prompt, data["num_prefill_tokens"].to_numpy())
    np.testing.assert_array_equal(output, data["num_decode_tokens"].to_numpy())


def test_gzipped_trace_reads_identically(shared_data, tmp_path):
    copy = tmp_path / "conv.csv.gz"
    copy.write_bytes(gzip.compress((shared_data / CONV).read_bytes()))
    assert run(config(trace={"path": "conv.csv.gz"}), base_dir=tmp_path) == run(
        config(trace={"path": CONV}), base_dir=shared_data)


def test_trace_limits_scale_and_shift(tmp_path):
    write_csv(tmp_path / "t.csv", "t,p,o\n10,5,1\n12,6,2\n14,7,3\n20,8,4\n")
    cols = {"arrival_s": "t", "prompt_tokens": "p", "output_tokens": "o"}
    arrival, prompt, _ = columns(run(config(trace={"path": "t.csv", "columns": cols, "time_scale": 0.5}),
                                     base_dir=tmp_path))
    assert arrival.tolist() == [0.0, 1.0, 2.0, 5.0] and prompt.tolist() == [5, 6, 7, 8]
    unshifted = config(trace={"path": "t.csv", "columns": cols, "start_at_zero": False}, duration_s=14)
    assert columns(run(unshifted, base_dir=tmp_path))[0].tolist() == [10.0, 12.0]
    assert len(run(config(trace={"path": "t.csv", "columns": cols}, num_requests=3), base_dir=tmp_path)) == 3


def test_unsorted_trace_is_sorted_and_zero_tokens_are_raised(tmp_path):
    write_csv(tmp_path / "t.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n3,30,0\n1,10,1\n2,20,2\n")
    workload = build_workload(config(trace={"path": "t.csv"}), np.random.default_rng(0), tmp_path)
    arrival, prompt, output = columns(list(workload))
    assert arrival.tolist() == [0.0, 1.0, 2.0]
    assert prompt.tolist() == [10, 20, 30] and output.tolist() == [1, 2, 1]
    assert workload.stats.reordered_rows == 1 and workload.stats.clipped_outputs == 1


HEADER = "arrived_at,num_prefill_tokens,num_decode_tokens\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("arrived_at,num_prefill_tokens\n0,5\n",
     "column 'num_decode_tokens': not found; the header has: arrived_at, num_prefill_tokens"),
    (HEADER + "0,5,1\n1,five,1\n", "line 3: column 'num_prefill_tokens': 'five' is not a finite number"),
    (HEADER + "0,5,1\n1,,1\n", "line 3: column 'num_prefill_tokens': empty cell"),
    (HEADER + "0,5,1\n1,5,-2\n", "line 3: column 'num_decode_tokens': negative token count (-2)"),
    (HEADER + "0,5,1\n1,5.5,2\n", "line 3: column 'num_prefill_tokens': not a whole number of tokens (5.5)"),
    (HEADER + "0,5,1\n1,5,2,9\n", "line 3: expected 3 fields, found 4"),
    (HEADER + "0,5,1,9\n1,5,2\n", "line 2: more fields than the header names"),
    (HEADER + "0,5\n1,5,2\n", "line 2: column 'num_decode_tokens': empty cell"),
    (HEADER, "no data rows after the header"),
    ("", "file is empty"),
])
def test_corrupt_traces_raise_one_line_naming_the_file(tmp_path, text, expected):
    path = write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(TraceError) as info:
        build_workload(config(trace={"path": "bad.csv"}), np.random.default_rng(0), tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_negative_arrival_needs_start_at_zero(tmp_path):
    path = write_csv(tmp_path / "t.csv", HEADER + "-1,5,1\n0,5,1\n")
    with pytest.raises(TraceError, match="line 2: column 'arrived_at': negative arrival time"):
        build_workload(config(trace={"path": str(path), "start_at_zero": False}),
                       np.random.default_rng(0), tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "not-gzip"])
def test_bad_gzip_raises_trace_error(tmp_path, damage):
    blob = gzip.compress((HEADER + "0,5,1\n" * 20_000).encode())
    blob = blob[: len(blob) // 2] if damage == "truncated" else b"plain text, not gzip" * 10
    path = tmp_path / "t.csv.gz"
    path.write_bytes(blob)
    with pytest.raises(TraceError) as info:
        build_workload(config(trace={"path": "t.csv.gz"}), np.random.default_rng(0), tmp_path)
    assert str(info.value).startswith(f"{path}: cannot read file") and "\n" not in str(info.value)


def test_missing_trace_file_names_the_path(tmp_path):
    with pytest.raises(TraceError, match=r"missing\.csv: file not found"):
        build_workload(config(trace={"path": "missing.csv"}), np.random.default_rng(0), tmp_path)


rows = st.lists(st.tuples(st.floats(0, 1e6, allow_nan=False), st.integers(0, 10**6), st.integers(0, 10**4)),
                min_size=1, max_size=50)


@settings(max_examples=40, deadline=None)
@given(rows=rows)
def test_replay_sorts_any_trace_and_keeps_every_row(rows):
    with tempfile.TemporaryDirectory() as folder:
        lines = [f"{t!r},{p},{o}" for t, p, o in rows]
        write_csv(Path(folder) / "t.csv", HEADER + "\n".join(lines) + "\n")
        specs = run(config(trace={"path": "t.csv", "start_at_zero": False}), base_dir=Path(folder))
    arrival, prompt, output = columns(specs)
    assert np.all(np.diff(arrival) >= 0) and prompt.min() >= 1 and output.min() >= 1
    assert sorted(arrival.tolist()) == sorted(t for t, _, _ in rows)
    assert sorted(prompt.tolist()) == sorted(max(p, 1) for _, p, _ in rows)
