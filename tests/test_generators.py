"""Generators, checked statistically: arrival rates and CVs, length quantiles, ServeGen clients.

Tests use fixed seeds, so they are deterministic; tolerances are still
several standard errors wide so that a change of random stream does not make
them flaky. The expected values come from the distributions' formulas, not
from the code under test.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import gamma as gamma_fn

from simulator.errors import TraceError
from workloads import build_workload, profile_names
from workloads.arrivals import weibull_shape
from workloads.fit_profiles import main as fit_profiles_main
from workload_helpers import SHARED_DATA, build, columns, config, config_error, run, shared, write

FIXED = {"prompt": {"dist": "fixed", "tokens": 100}, "output": {"dist": "fixed", "tokens": 10}}


def generator(lengths=None, **arrivals_and_limits) -> dict:
    limits = {k: arrivals_and_limits.pop(k) for k in ("num_requests", "duration_s") if k in arrivals_and_limits}
    arrivals = {"process": "poisson", "rate_per_s": 10.0, **arrivals_and_limits}
    return {"generator": {"arrivals": arrivals, "lengths": lengths or FIXED}, **limits}


def gaps_of(cfg: dict, seed: int = 0) -> np.ndarray:
    return np.diff(np.concatenate([[0.0], columns(run(cfg, seed))[0]]))


def cv(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


# --- arrival processes --------------------------------------------------------------------------

def test_poisson_rate_and_cv():
    gaps = gaps_of(generator(rate_per_s=25.0, num_requests=40_000))
    # Relative standard error of the mean of 40k exponentials: 0.5%; of the CV, about 0.5% too.
    assert 1 / gaps.mean() == pytest.approx(25.0, rel=0.025)
    assert cv(gaps) == pytest.approx(1.0, rel=0.03)


@pytest.mark.parametrize("target", [0.5, 2.0])
def test_gamma_cv(target):
    gaps = gaps_of(generator(process="gamma", rate_per_s=5.0, cv=target, num_requests=40_000))
    assert 1 / gaps.mean() == pytest.approx(5.0, rel=5 * target / math.sqrt(40_000))
    assert cv(gaps) == pytest.approx(target, rel=0.08)


@pytest.mark.parametrize("target", [0.7, 2.0])
def test_weibull_cv(target):
    gaps = gaps_of(generator(process="weibull", rate_per_s=4.0, cv=target, num_requests=40_000))
    assert 1 / gaps.mean() == pytest.approx(4.0, rel=5 * target / math.sqrt(40_000))
    assert cv(gaps) == pytest.approx(target, rel=0.08)


def test_weibull_shape_matches_its_cv_formula():
    # Shape 0.5: CV^2 = G(5) / G(3)^2 - 1 = 24 / 4 - 1 = 5.
    assert weibull_shape(math.sqrt(5)) == pytest.approx(0.5, rel=1e-6)
    assert weibull_shape(1.0) == pytest.approx(1.0, rel=1e-6)
    gaps = gaps_of(generator(process="weibull", rate_per_s=2.0, shape=1.5, num_requests=40_000))
    expected = math.sqrt(gamma_fn(1 + 2 / 1.5) / gamma_fn(1 + 1 / 1.5) ** 2 - 1)
    assert cv(gaps) == pytest.approx(expected, rel=0.03) and 1 / gaps.mean() == pytest.approx(2.0, rel=0.02)


def test_on_off_rate_and_cv_follow_the_interrupted_poisson_formulas():
    rate, on_s, off_s = 10.0, 2.0, 6.0
    arrival = columns(run(generator(process="onoff", rate_per_s=rate, on_s=on_s, off_s=off_s,
                                    duration_s=20_000.0)))[0]
    gaps = np.diff(arrival)
    rate_on, a, b = rate * (on_s + off_s) / on_s, 1 / on_s, 1 / off_s
    expected_cv = math.sqrt(1 + 2 * rate_on * a / (a + b) ** 2)  # = 3.0
    # 20,000 s hold about 2,500 on/off cycles: the count's relative error is about 4%.
    assert len(arrival) / 20_000.0 == pytest.approx(rate, rel=0.12)
    assert cv(gaps) == pytest.approx(expected_cv, rel=0.12)


def test_same_seed_same_requests_and_different_seed_different():
    cfg = generator({"profile": "azure-code-2023"}, process="onoff", on_s=1.0, off_s=1.0, num_requests=5000)
    assert run(cfg, seed=7) == run(cfg, seed=7) and run(cfg, seed=7) != run(cfg, seed=8)


def test_a_shorter_run_is_a_prefix_of_a_longer_one():
    lengths = {"profile": "azure-conv-2023"}
    assert run(generator(lengths, num_requests=5000)) == run(generator(lengths, num_requests=9000))[:5000]


def test_streams_are_independent_so_changing_outputs_keeps_arrivals_and_prompts():
    prompt = {"dist": "uniform", "min_tokens": 1, "max_tokens": 1000}
    one = run(generator({"prompt": prompt, "output": {"dist": "fixed", "tokens": 5}}, num_requests=5000))
    two = run(generator({"prompt": prompt, "output": {"dist": "lognormal", "median_tokens": 50, "sigma": 1}},
                        num_requests=5000))
    for column_one, column_two in zip(columns(one)[:2], columns(two)[:2], strict=True):
        np.testing.assert_array_equal(column_one, column_two)


def test_limits_and_laziness():
    assert len(run(generator(num_requests=10_001))) == 10_001
    arrival = columns(run(generator(rate_per_s=100.0, duration_s=50.0)))[0]
    assert arrival.max() < 50.0 and len(arrival) == pytest.approx(5000, rel=0.1)
    assert len(run(generator(rate_per_s=100.0, duration_s=50.0, num_requests=100))) == 100
    workload = build_workload(config(**generator(num_requests=10**12)), np.random.default_rng(0), Path("."))
    assert len(list(itertools.islice(workload, 10))) == 10


# --- lengths ------------------------------------------------------------------------------------

def test_fixed_uniform_and_quantile_lengths():
    lengths = {"prompt": {"dist": "quantiles", "probabilities": [0, 0.5, 1], "tokens": [100, 200, 1000]},
               "output": {"dist": "uniform", "min_tokens": 3, "max_tokens": 7}}
    _, prompt, output = columns(run(generator(lengths, num_requests=20_000)))
    assert set(output.tolist()) == {3, 4, 5, 6, 7}
    assert np.quantile(prompt, 0.5) == pytest.approx(200, rel=0.02)
    assert np.quantile(prompt, 0.75) == pytest.approx(600, rel=0.03)
    assert prompt.min() >= 100 and prompt.max() <= 1000


def test_lognormal_median_and_counted_clipping():
    lengths = {"prompt": {"dist": "lognormal", "median_tokens": 500, "sigma": 1.0},
               "output": {"dist": "lognormal", "median_tokens": 100, "sigma": 1.0, "min_tokens": 20,
                          "max_tokens": 300}}
    workload = build(generator(lengths, num_requests=20_000), seed=3)
    _, prompt, output = columns(list(workload))
    assert np.median(prompt) == pytest.approx(500, rel=0.03)
    assert np.quantile(np.log(prompt), 0.8413) - np.log(500) == pytest.approx(1.0, rel=0.05)
    assert output.min() == 20 and output.max() == 300
    # About 5.4% of draws fall below 20 and 13.5% above 300; each was clipped and counted.
    assert workload.stats.clipped_outputs == pytest.approx(20_000 * (0.054 + 0.135), rel=0.1)
    assert workload.stats.clipped_prompts == 0


@pytest.mark.parametrize(("profile", "source"), [
    ("azure-conv-2023", "azure_llm_2023/AzureLLMInferenceTrace_conv.csv"),
    ("azure-code-2023", "azure_llm_2023/AzureLLMInferenceTrace_code.csv"),
])
def test_profiles_reproduce_the_trace_quantiles(profile, source):
    _, prompt, output = columns(run(generator({"profile": profile}, num_requests=50_000)))
    data = pd.read_csv(shared(source))
    for generated, real in ((prompt, data["ContextTokens"]), (output, data["GeneratedTokens"])):
        for q in (0.25, 0.5, 0.9):
            assert np.quantile(generated, q) == pytest.approx(np.quantile(real, q), rel=0.06)


def test_every_profile_is_listed_and_matches_the_data():
    assert profile_names() == ["arxiv-summarization", "azure-code-2023", "azure-conv-2023"]
    shared("azure_llm_2023")
    assert fit_profiles_main([str(SHARED_DATA), "--check"]) == 0


def test_empirical_draws_only_values_from_the_column(tmp_path):
    write(tmp_path / "lens.csv", "p,o\n10,1\n20,2\n30,0\n")
    lengths = {"prompt": {"dist": "empirical", "path": "lens.csv", "column": "p"},
               "output": {"dist": "empirical", "path": "lens.csv", "column": "o"}}
    workload = build(generator(lengths, num_requests=3000), base_dir=tmp_path)
    _, prompt, output = columns(list(workload))
    assert set(prompt.tolist()) == {10, 20, 30} and set(output.tolist()) == {1, 2}
    assert workload.stats.clipped_outputs == pytest.approx(1000, rel=0.1)  # the zero, raised to one token


def test_missing_empirical_file_and_column(tmp_path):
    lengths = {"prompt": {"dist": "empirical", "path": "nope.csv", "column": "p"}, "output": FIXED["output"]}
    with pytest.raises(TraceError, match="nope.csv: file not found"):
        build(generator(lengths, num_requests=3), base_dir=tmp_path)
    write(tmp_path / "lens.csv", "q\n1\n")
    lengths["prompt"]["path"] = "lens.csv"
    with pytest.raises(TraceError, match="lens.csv: column 'p': not found; the header has: q"):
        build(generator(lengths, num_requests=3), base_dir=tmp_path)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), rate=st.floats(0.01, 1000), spread=st.floats(0.2, 5),
       process=st.sampled_from(["gamma", "weibull"]), low=st.integers(1, 50), n=st.integers(1, 6000))
def test_generated_requests_are_sorted_whole_and_within_bounds(seed, rate, spread, process, low, n):
    lengths = {"prompt": {"dist": "uniform", "min_tokens": low, "max_tokens": low + 50},
               "output": {"dist": "lognormal", "median_tokens": 20, "sigma": 2.0, "max_tokens": 1000}}
    specs = run(generator(lengths, process=process, rate_per_s=rate, cv=spread, num_requests=n), seed=seed)
    arrival, prompt, output = columns(specs)
    assert len(specs) == n and np.all(np.diff(arrival) >= 0) and arrival[0] >= 0
    assert all(type(s.prompt_tokens) is int and type(s.output_tokens) is int for s in specs)
    assert prompt.min() >= low and prompt.max() <= low + 50 and output.min() >= 1 and output.max() <= 1000


# --- ServeGen -----------------------------------------------------------------------------------

SERVEGEN = "servegen/reason/deepseek-r1"


def servegen_expected(folder: Path, clients: list[int], start: float, end: float) -> tuple[float, float]:
    """Expected requests in [start, end) and their standard deviation (renewal count: rate T cv^2)."""
    mean = var = 0.0
    for client in clients:
        table = pd.read_csv(folder / f"chunk-{client}-trace.csv", header=None)
        overlap = (np.minimum(table[0] + 600, end) - np.maximum(table[0], start)).clip(lower=0)
        mean += float((table[1] * overlap).sum())
        var += float((table[1] * overlap * table[2] ** 2).sum())
    return mean, math.sqrt(var)


def test_servegen_clients_rates_lengths_and_tenants():
    folder = shared(SERVEGEN)
    clients, start, end = [0, 3, 5, 8, 13, 21], 7200.0, 21_600.0
    workload = build({"servegen": {"path": str(folder), "clients": clients, "window_s": [start, end]}})
    specs = list(workload)
    mean, sd = servegen_expected(folder, clients, start, end)
    arrival = columns(specs)[0]
    assert abs(len(specs) - mean) < 5 * sd + 0.02 * mean
    assert arrival.min() >= 0 and arrival.max() < end - start and np.all(np.diff(arrival) >= 0)
    assert {s.tenant for s in specs} <= {f"servegen-{c}" for c in clients}


def test_servegen_lengths_follow_the_client_pdf():
    folder = shared(SERVEGEN)
    specs = run({"servegen": {"path": str(folder), "clients": [3], "window_s": [0, 21_600], "rate_scale": 0.1}})
    entry = json.loads((folder / "chunk-3-dataset.json").read_text())["0"]["input_tokens"]
    pdf = ast.literal_eval(entry)
    expected = sum(k * v for k, v in pdf.items()) / sum(pdf.values())
    prompt = columns(specs)[1]
    assert len(prompt) > 500 and prompt.mean() == pytest.approx(expected, rel=0.1)


def write_servegen_client(folder: Path, client: int, rate: float) -> Path:
    """A one-window ServeGen client (Gamma gaps, fixed lengths): the files' format, made up."""
    folder.mkdir(exist_ok=True)
    (folder / f"chunk-{client}-trace.csv").write_text(f"0,{rate},1.0,Gamma,1.0,1.0\n600,{rate},1.0,Gamma,1.0,1.0\n")
    (folder / f"chunk-{client}-dataset.json").write_text(json.dumps(
        {"0": {"input_tokens": "{100: 1.0}", "output_tokens": "{10: 0.5, 20: 0.5}"}}))
    return folder


def test_servegen_made_up_client_replays_its_rate(tmp_path):
    folder = write_servegen_client(tmp_path / "sg", 7, rate=2.0)
    specs = list(build({"servegen": {"path": str(folder), "window_s": [0, 1200]}}))
    assert abs(len(specs) - 2400) < 5 * math.sqrt(2400)
    assert {s.tenant for s in specs} == {"servegen-7"} and {s.prompt_tokens for s in specs} == {100}


def test_servegen_window_too_large_to_generate_is_one_line(tmp_path):
    """A rate_scale that asks for trillions of requests in a window fails naming the file and
    window before drawing them (it used to exhaust memory)."""
    folder = write_servegen_client(tmp_path / "sg", 7, rate=2.0)
    with pytest.raises(TraceError, match=r"chunk-7-trace\.csv: window at 0 s: rate 2/s x rate_scale 1e\+09 over "
                                         r"600 s is about 1\.2e\+12 requests"):
        list(build({"servegen": {"path": str(folder), "window_s": [0, 1200], "rate_scale": 1e9}}))


def test_servegen_missing_folder_is_a_trace_error(tmp_path):
    with pytest.raises(TraceError, match="ServeGen folder not found"):
        build({"servegen": {"path": str(tmp_path / "nope")}})


# --- configuration errors -----------------------------------------------------------------------

@pytest.mark.parametrize(("workload", "expected"), [
    ({"num_requests": 5}, "give exactly one of generator, trace, servegen, closed_loop, sessions, or a list"),
    ({**generator(), "trace": {"path": "t.csv"}, "num_requests": 5}, "give exactly one of"),
    (generator(), "a generator needs 'num_requests' or 'duration_s'"),
    (generator(num_requests=0), "workload.num_requests: Input should be greater than 0"),
    (generator(duration_s=math.nan), "workload.duration_s: Input should be a finite number"),
    (generator(rate_per_s=math.inf, num_requests=1), "workload.generator.arrivals.rate_per_s: Input should be"),
    (generator(cv=2, num_requests=1), "workload.generator.arrivals.cv: unknown key"),
    (generator(process="zipf", num_requests=1), "expected 'process' to be one of: poisson, gamma, weibull, onoff"),
    (generator(process="weibull", num_requests=1), "give exactly one of 'cv' and 'shape'"),
    (generator({"profile": "nope"}, num_requests=1), "unknown length profile 'nope'; known: arxiv-summarization"),
    (generator({"prompt": FIXED["prompt"]}, num_requests=1), "give either 'profile' or both 'prompt' and 'output'"),
    (generator({"prompt": {"dist": "zipf"}, "output": FIXED["output"]}, num_requests=1),
     "workload.generator.lengths.prompt: expected 'dist' to be one of"),
    (generator({"prompt": {"dist": "uniform", "min_tokens": 9, "max_tokens": 3}, "output": FIXED["output"]},
               num_requests=1), "min_tokens (9) is greater than max_tokens (3)"),
    (generator({"prompt": {"dist": "quantiles", "probabilities": [0, 0.7, 0.5, 1], "tokens": [1, 2, 3, 4]},
                "output": FIXED["output"]}, num_requests=1), "probabilities must be strictly increasing"),
    (generator({"prompt": {"dist": "fixed", "tokens": 5, "typo": 1}, "output": FIXED["output"]}, num_requests=1),
     "workload.generator.lengths.prompt.typo: unknown key"),
    ({"trace": {"path": "t.csv", "time_scale": 0}}, "workload.trace.transforms.time_scale: Input should be"),
    ({"trace": {"path": "t.csv", "format": "parquet"}}, "unknown trace format 'parquet'; known: auto, azure"),
    ({"trace": {"path": "t.csv", "format": "azure", "columns": {}}}, "'columns' applies to format csv or jsonl"),
    ({"trace": {"path": "t.csv", "on_unsorted": "ignore"}}, "workload.trace.on_unsorted: Input should be"),
    ({"trace": {"path": "t.csv", "transforms": {"window_s": [5, 1]}}}, "window_s must be [start, end]"),
    ({"sources": [{"generator": generator()["generator"]}]}, "a generator needs 'num_requests'"),
    ({"sources": [{"trace": {"path": "a"}, "name": "x"}, {"trace": {"path": "b"}, "name": "x"}]},
     "source names must be unique"),
    ({"closed_loop": {"clients": 4, "lengths": {"profile": "azure-conv-2023"}}, "duration_s": 5},
     "closed_loop needs 'requests_per_client' or 'num_requests'"),
    ({"sessions": {"kind": "agent", "arrivals": {"process": "poisson", "rate_per_s": 1}}, "num_requests": 5},
     "without a 'profile', give calls_per_task, first_prompt_tokens"),
    ({"sessions": {"kind": "agent", "profile": "nope", "arrivals": {"process": "poisson", "rate_per_s": 1}},
      "num_requests": 5}, "unknown agent profile 'nope'; known: browsing-agent, swe-agent"),
    ({"labels": [{"set": {}}], **generator(num_requests=1)}, "set at least one of tenant, priority, slo_class"),
])
def test_invalid_configs_give_one_line_naming_the_field(workload, expected):
    message = config_error(**workload)
    assert expected in message
    assert message.startswith("exp.yaml: ") and "\n" not in message


def test_the_quickstart_workload_still_validates_and_trace_defaults_are_kept():
    import yaml
    path = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.yaml"
    quickstart = yaml.safe_load(path.read_text())
    assert len(run(quickstart["workload"])) == 5000
    trace = config(trace={"path": "t.csv"}).trace
    assert (trace.format, trace.on_unsorted, trace.start_at_zero, trace.transforms.time_scale) == (
        "auto", "error", True, 1.0)


@pytest.mark.parametrize("workload", [
    {"trace": {"path": "t.csv", "time_scale": 0.5, "transforms": {"filter": {"Model": ["GPT-4"]}}}},
    {"trace": {"path": "t.jsonl", "columns": {"arrival_s": "t", "prefix_hashes": "h", "prefix_block_tokens": 16},
               "transforms": {"rate_scale": 2, "sample_n": 10}}},
    {"sources": [{"generator": {"arrivals": {"process": "weibull", "rate_per_s": 1, "cv": 2},
                                "lengths": {"profile": "azure-conv-2023"}}, "name": "a", "num_requests": 5},
                 {"sessions": {"kind": "agent", "profile": "swe-agent", "num_sessions": 3,
                               "arrivals": {"process": "onoff", "rate_per_s": 1, "on_s": 1, "off_s": 2}}},
                 {"closed_loop": {"clients": 2, "requests_per_client": 3, "lengths": {"profile": "azure-code-2023"}}},
                 {"servegen": {"path": "sg", "clients": [1, 2]}}],
     "labels": [{"when": {"fraction": 0.5, "kind": "request"}, "set": {"tenant": "x"}}]},
])
def test_resolved_configs_validate_again(workload):
    # config.resolved.yaml is the model dumped with every default; it must load back unchanged.
    first = config(**workload)
    again = config(**first.model_dump(mode="json"))
    assert again == first
