"""Transforms of traces and of every source: selection, retiming, context clipping, labels and mixing."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from simulator.engine.request import RequestSpec
from simulator.engine.session import SessionSpec
from workload_helpers import build, columns, config_error, run, sessions_of, shared, trace, write
from workloads import WorkloadConfig

HEADER = "arrived_at,num_prefill_tokens,num_decode_tokens,app\n"
GEN = {"arrivals": {"process": "poisson", "rate_per_s": 10}, "lengths": {
    "prompt": {"dist": "fixed", "tokens": 100}, "output": {"dist": "fixed", "tokens": 10}}}


@pytest.fixture
def ten_rows(tmp_path):
    """Rows at 0..9 s with prompt 10 * (i + 1) and app a/b alternating."""
    rows = "".join(f"{i},{10 * (i + 1)},{i + 1},{'ab'[i % 2]}\n" for i in range(10))
    return write(tmp_path / "t.csv", HEADER + rows)


def replay(path, **transforms) -> list[RequestSpec]:
    return run(trace(path, format="vidur", transforms=transforms))


def test_window_keeps_rows_in_range_and_starts_at_its_start(ten_rows):
    arrival, prompt, _ = columns(replay(ten_rows, window_s=[2.5, 6]))
    assert arrival.tolist() == [0.5, 1.5, 2.5] and prompt.tolist() == [40, 50, 60]


def test_first_n_and_filter_compose_in_order(ten_rows):
    specs = replay(ten_rows, filter={"app": ["b"]}, first_n=3)
    assert [s.prompt_tokens for s in specs] == [20, 40, 60]


def test_filter_on_numbers_compares_as_numbers(ten_rows):
    assert [s.prompt_tokens for s in replay(ten_rows, filter={"num_decode_tokens": [2, "3.0"]})] == [20, 30]


def test_sample_n_keeps_n_rows_in_order_and_depends_on_the_seed(ten_rows):
    one = run(trace(ten_rows, format="vidur", transforms={"sample_n": 4}), seed=1)
    again = run(trace(ten_rows, format="vidur", transforms={"sample_n": 4}), seed=1)
    other = run(trace(ten_rows, format="vidur", transforms={"sample_n": 4}), seed=2)
    arrival = [s.arrival_s for s in one]
    assert len(one) == 4 and arrival == sorted(arrival) and one == again and one != other


def test_sample_n_is_uniform(tmp_path):
    rows = "".join(f"{i},{i + 1},1,x\n" for i in range(200))
    path = write(tmp_path / "t.csv", HEADER + rows)
    chosen = np.concatenate([columns(run(trace(path, format="vidur", start_at_zero=False,
                                                transforms={"sample_n": 20}), seed=seed))[1]
                             for seed in range(200)])
    counts = np.bincount(chosen - 1, minlength=200)
    # Each row is chosen with probability 0.1 in each of 200 draws: mean 20, sd about 4.2.
    assert counts.mean() == 20 and counts.min() >= 4 and counts.max() <= 40
    assert abs(counts[:100].sum() - counts[100:].sum()) < 300


def test_sampling_real_azure_keeps_the_length_distribution():
    path = shared("azure_llm_2023/AzureLLMInferenceTrace_conv.csv")
    full = columns(run(trace(path)))[1]
    sample = columns(run(trace(path, transforms={"sample_n": 4000})))[1]
    assert len(sample) == 4000
    assert np.median(sample) == pytest.approx(np.median(full), rel=0.03)


def test_time_and_rate_scaling(ten_rows):
    assert columns(replay(ten_rows, time_scale=2.0))[0][-1] == 18.0
    assert columns(replay(ten_rows, rate_scale=4.0))[0][-1] == 2.25
    legacy = run({"trace": {"path": str(ten_rows), "time_scale": 0.5}})
    assert legacy[-1].arrival_s == 4.5
    assert "at most one of 'time_scale' and 'rate_scale'" in config_error(
        trace={"path": "t.csv", "transforms": {"time_scale": 2, "rate_scale": 2}})


def test_limits_apply_after_scaling(ten_rows):
    specs = run({**trace(ten_rows, format="vidur", transforms={"time_scale": 0.5}), "duration_s": 2.0})
    assert [s.arrival_s for s in specs] == [0.0, 0.5, 1.0, 1.5]
    assert len(run({**trace(ten_rows), "num_requests": 3})) == 3


# --- context clipping ---------------------------------------------------------------------------

def test_requests_are_clipped_to_the_context_and_counted(tmp_path):
    path = write(tmp_path / "t.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n"
                 "0,100,50\n1,150,10\n2,300,20\n3,200,1\n")
    workload = build(trace(path), context=200)
    specs = [(s.prompt_tokens, s.output_tokens) for s in workload]
    assert specs == [(100, 50), (150, 10), (199, 1), (199, 1)]
    assert workload.stats.clipped_to_context == 2


def test_context_clipping_respects_the_output_cap(tmp_path):
    path = write(tmp_path / "t.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n0,150,500\n")
    # The cap already keeps 150 + 40 within 200 tokens, so nothing is clipped.
    workload = build({**trace(path), "max_output_tokens": 40}, context=200)
    assert [(s.output_tokens, s.max_output_tokens) for s in workload] == [(500, 40)]
    assert workload.stats.clipped_to_context == 0


def test_sessions_end_before_a_call_that_would_not_fit():
    agent = {"kind": "agent", "arrivals": {"process": "poisson", "rate_per_s": 1}, "num_sessions": 50,
             "calls_per_task": {"dist": "fixed", "value": 30},
             "first_prompt_tokens": {"dist": "fixed", "tokens": 500},
             "step_prompt_tokens": {"dist": "fixed", "tokens": 300},
             "output_tokens": {"dist": "fixed", "tokens": 100},
             "tool_latency_s": {"dist": "fixed", "seconds": 0.1}}
    workload = build({"sessions": agent}, context=4000)
    sessions = list(workload)
    # Call k needs 500 + 400 k + 100 tokens: calls 0..8 fit in 4000.
    assert {len(s.calls) for s in sessions} == {9}
    assert workload.stats.sessions_cut_to_context == 50


# --- labels -------------------------------------------------------------------------------------

def test_label_rules_apply_in_order_and_later_ones_win(ten_rows):
    labels = [{"set": {"tenant": "all", "slo_class": "short"}},
              {"when": {"prompt_tokens_gt": 50}, "set": {"slo_class": "long", "priority": 2}},
              {"when": {"columns": {"app": ["a"]}, "prompt_tokens_lt": 30}, "set": {"tenant": "first"}}]
    specs = run({**trace(ten_rows, format="vidur", transforms={"filter": {"app": ["a", "b"]}}), "labels": labels})
    assert [(s.tenant, s.slo_class, s.priority) for s in specs[:2]] == [("first", "short", 0), ("all", "short", 0)]
    assert {(s.slo_class, s.priority) for s in specs[5:]} == {("long", 2)}


def test_fraction_labels_a_random_share():
    labels = [{"when": {"fraction": 0.25}, "set": {"tenant": "batch"}}]
    specs = run({"generator": GEN, "num_requests": 20_000, "labels": labels})
    share = np.mean([s.tenant == "batch" for s in specs])
    assert share == pytest.approx(0.25, abs=0.015)
    # Labels draw from their own stream: the requests are the same as without them.
    plain = run({"generator": GEN, "num_requests": 20_000})
    assert [s.arrival_s for s in specs] == [s.arrival_s for s in plain]


def test_labels_on_sessions_and_by_source_and_kind():
    conversation = {"kind": "conversation", "arrivals": {"process": "poisson", "rate_per_s": 1},
                    "turns": {"dist": "fixed", "value": 2}, "lengths": GEN["lengths"], "num_sessions": 5}
    items = run({"sources": [{"name": "chat", "sessions": conversation}, {"name": "api", "generator": GEN}],
                 "num_requests": 40,
                 "labels": [{"when": {"source": "api"}, "set": {"tenant": "api"}},
                            {"when": {"kind": "conversation"}, "set": {"slo_class": "chat"}}]})
    assert {s.slo_class for s in sessions_of(items)} == {"chat"}
    assert {s.tenant for s in items if isinstance(s, RequestSpec)} == {"api"}


@pytest.mark.parametrize("workload", [
    {"generator": GEN, "num_requests": 10, "labels": [{"when": {"source": "api"}, "set": {"tenant": "x"}}]},
    {"sources": [{"name": "chat", "generator": GEN}, {"generator": GEN}], "num_requests": 10,
     "labels": [{"when": {"source": "api"}, "set": {"tenant": "x"}}]},
])
def test_a_label_rule_naming_no_source_is_refused(workload):
    with pytest.raises(pydantic.ValidationError, match=r"when.source: 'api' names no source"):
        WorkloadConfig.model_validate(workload)
    # An unnamed source answers to source<index>.
    renamed = {**workload, "labels": [{"when": {"source": "source1"}, "set": {"tenant": "x"}}]}
    if "sources" in workload:
        WorkloadConfig.model_validate(renamed)


# --- mixing -------------------------------------------------------------------------------------

def test_mixed_sources_merge_in_arrival_order_with_their_own_limits(ten_rows):
    items = run({"sources": [{"trace": {"path": str(ten_rows), "format": "vidur"}},
                             {"generator": GEN, "duration_s": 5.0, "labels": [{"set": {"tenant": "gen"}}]}]})
    arrival = [item.arrival_s for item in items]
    assert arrival == sorted(arrival)
    generated = [s for s in items if s.tenant == "gen"]
    assert len(items) == 10 + len(generated) and max(s.arrival_s for s in generated) < 5.0
    assert len(generated) == pytest.approx(50, abs=25)


def test_adding_a_source_leaves_the_others_unchanged():
    one = run({"sources": [{"generator": GEN}], "num_requests": 1000})
    two = run({"sources": [{"generator": GEN}, {"generator": GEN, "labels": [{"set": {"tenant": "other"}}]}],
               "num_requests": 2000})
    assert [s for s in two if s.tenant == "default"][:500] == one[:500]


def test_num_requests_counts_session_calls(tmp_path):
    conversation = {"kind": "conversation", "arrivals": {"process": "poisson", "rate_per_s": 1},
                    "turns": {"dist": "fixed", "value": 3}, "lengths": GEN["lengths"]}
    items = run({"sessions": conversation, "num_requests": 10})
    assert len(items) == 3 and all(isinstance(s, SessionSpec) and len(s.calls) == 3 for s in items)


def test_max_output_tokens_caps_requests_and_session_calls():
    conversation = {"kind": "conversation", "arrivals": {"process": "poisson", "rate_per_s": 1},
                    "turns": {"dist": "fixed", "value": 2}, "num_sessions": 3, "lengths": {
                        "prompt": {"dist": "fixed", "tokens": 10}, "output": {"dist": "fixed", "tokens": 500}}}
    workload = build({"sources": [{"sessions": conversation}, {"generator": GEN, "num_requests": 5}],
                      "max_output_tokens": 64})
    items = list(workload)
    assert {s.max_output_tokens for s in items if isinstance(s, RequestSpec)} == {64}
    assert {c.output_tokens for s in sessions_of(items) for c in s.calls} == {64}
    assert workload.stats.clipped_outputs == 6
