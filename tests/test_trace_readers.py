"""Trace readers: every format on the real files in ../shared/data and on small files written here.

Real files are read from ../shared/data (the tests skip without it). The
small files pin down each format's details: units, optional columns,
failed rows, compression, format detection and the one-line errors.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.errors import RegistryError, TraceError
from workloads import TRACE_READERS
from workloads.config_trace import TraceConfig
from workloads.readers import choose_reader
from workload_helpers import build, columns, run, shared, trace, write

AZURE_CONV = "azure_llm_2023/AzureLLMInferenceTrace_conv.csv"
AZURE_CODE = "azure_llm_2023/AzureLLMInferenceTrace_code.csv"
VIDUR_CONV = "vidur_traces/splitwise_conv.csv"
BURST_1 = "burstgpt/BurstGPT_1_head400.csv"
BURST_3 = "burstgpt/BurstGPT_3_slice400.csv"
MOONCAKE_CONV = "mooncake/conversation_trace.jsonl"


def reader_name(path: Path, **options) -> str:
    return choose_reader(TraceConfig(path=str(path), **options), path).name


# --- the real files -----------------------------------------------------------------------------

def test_azure_conversation_trace_matches_vidurs_copy_row_for_row():
    specs = run(trace(shared(AZURE_CONV)))
    vidur = pd.read_csv(shared(VIDUR_CONV))
    arrival, prompt, output = columns(specs)
    assert reader_name(shared(AZURE_CONV)) == "azure" and len(specs) == 19_366
    # Vidur rounded the Azure timestamps to microseconds.
    np.testing.assert_allclose(arrival, vidur["arrived_at"].to_numpy(), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(prompt, vidur["num_prefill_tokens"].to_numpy())
    np.testing.assert_array_equal(output, vidur["num_decode_tokens"].to_numpy())


def test_azure_code_trace_has_the_documented_shape():
    arrival, prompt, output = columns(run(trace(shared(AZURE_CODE))))
    assert len(arrival) == 8_819 and arrival[-1] == pytest.approx(3_436, abs=1)
    assert np.median(prompt) == 1469 and np.median(output) == 13 and prompt.max() == 7437


def test_vidur_trace_is_detected_and_replayed_exactly():
    path = shared(VIDUR_CONV)
    data = pd.read_csv(path)
    arrival, prompt, _ = columns(run(trace(path)))
    assert reader_name(path) == "vidur"
    np.testing.assert_array_equal(arrival, data["arrived_at"].to_numpy())
    np.testing.assert_array_equal(prompt, data["num_prefill_tokens"].to_numpy())


def test_vidur_length_file_without_timestamps_is_refused_clearly():
    path = shared("vidur_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv")
    with pytest.raises(TraceError, match="cannot tell the trace format.*matches no known format"):
        build(trace(path))
    with pytest.raises(TraceError, match="column 'arrived_at': not found; the header has: num_prefill_tokens"):
        build(trace(path, format="vidur"))


def test_burstgpt_drops_and_counts_failed_rows():
    workload = build(trace(shared(BURST_1)))
    arrival, prompt, output = columns(list(workload))
    assert workload.stats.trace_rows == 400 and workload.stats.dropped_rows == 17
    assert len(arrival) == 383 and output.min() >= 1
    assert arrival[0] == 0 and arrival[-1] == 37_274 - 5


def test_burstgpt_filter_by_model_and_log_type():
    data = pd.read_csv(shared(BURST_1))
    served = data[data["Response tokens"] > 0]
    gpt4 = run(trace(shared(BURST_1), transforms={"filter": {"Model": ["GPT-4"]}}))
    assert len(gpt4) == int((served["Model"] == "GPT-4").sum())
    api = build(trace(shared(BURST_1), transforms={"filter": {"Log Type": ["API log"]}}))
    assert len(list(api)) == 2 and api.stats.filtered_rows == 381


def test_burstgpt_sessions_become_session_ids():
    specs = run(trace(shared(BURST_3)))
    data = pd.read_csv(shared(BURST_3))
    served = data[data["Response tokens"] > 0]
    ids = [s.session_id for s in specs]
    assert len(specs) == len(served) == 399
    assert sum(i is None for i in ids) == int(served["Session ID"].isna().sum()) == 6
    assert len({i for i in ids if i is not None}) == 134


def test_mooncake_carries_hash_ids_as_512_token_prefix_blocks():
    path = shared(MOONCAKE_CONV)
    records = pd.read_json(path, lines=True)
    specs = run(trace(path))
    assert reader_name(path) == "mooncake" and len(specs) == 12_031
    assert all(s.prefix_block_tokens == 512 for s in specs)
    assert [list(s.prefix_hashes) for s in specs] == records["hash_ids"].tolist()
    np.testing.assert_allclose([s.arrival_s for s in specs], records["timestamp"].to_numpy() / 1000.0)
    assert [s.prompt_tokens for s in specs] == records["input_length"].tolist()


def test_mooncake_synthetic_trace_reads():
    arrival, prompt, _ = columns(run(trace(shared("mooncake/synthetic_trace.jsonl"))))
    assert len(arrival) == 3_993 and arrival[-1] == pytest.approx(1_022.025)
    assert prompt.mean() == pytest.approx(15_325, rel=0.01)


def test_splitwise_toy_trace_reads():
    path = shared("splitwise_sim/test_trace.csv")
    data = pd.read_csv(path)
    arrival, prompt, output = columns(run(trace(path, start_at_zero=False)))
    assert reader_name(path) == "splitwise"
    np.testing.assert_array_equal(arrival, data["arrival_timestamp"].to_numpy())
    np.testing.assert_array_equal(prompt, data["prompt_size"].to_numpy())
    np.testing.assert_array_equal(output, data["token_size"].to_numpy())


@pytest.mark.parametrize("relative", [AZURE_CODE, BURST_3, MOONCAKE_CONV])
def test_gzip_copies_read_identically(relative, tmp_path):
    original = shared(relative)
    copy = tmp_path / (original.name + ".gz")
    copy.write_bytes(gzip.compress(original.read_bytes()))
    assert reader_name(copy) == reader_name(original)
    assert run(trace(copy)) == run(trace(original))


# --- small files --------------------------------------------------------------------------------

def test_azure_2024_timestamps_with_zones_and_time_of_day_windows(tmp_path):
    path = write(tmp_path / "week.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2024-05-10 00:00:10.500000+00:00,100,5\n2024-05-10 00:00:11.000000+00:00,200,6\n"
                 "2024-05-10 01:00:00+00:00,300,7\n2024-05-11 00:00:00+00:00,400,8\n")
    arrival, prompt, _ = columns(run(trace(path)))
    assert arrival.tolist() == [0.0, 0.5, 3589.5, 86_389.5]
    # Without the shift, times are seconds since midnight of the first day.
    windowed = run(trace(path, start_at_zero=False, transforms={"window_s": [3000, 90_000]}))
    assert [s.arrival_s for s in windowed] == [600.0, 83_400.0] and windowed[0].prompt_tokens == 300


def test_burstgpt_small_file_with_sessions_and_a_failure(tmp_path):
    path = write(tmp_path / "b.csv", "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,"
                 "Total tokens,Log Type\n10,s1,3,ChatGPT,50,20,70,Conversation log\n"
                 "12,,0,GPT-4,30,0,30,API log\n15,s1,2,ChatGPT,90,10,100,Conversation log\n")
    workload = build(trace(path))
    specs = list(workload)
    assert [(s.arrival_s, s.prompt_tokens, s.session_id) for s in specs] == [(0.0, 50, "s1"), (5.0, 90, "s1")]
    assert workload.stats.dropped_rows == 1


def test_generic_csv_with_a_column_mapping_and_milliseconds(tmp_path):
    path = write(tmp_path / "t.csv", "ms,in,out,who,prio\n1000,5,1,alice,1\n1500,6,2,bob,0\n")
    cols = {"arrival_s": "ms", "prompt_tokens": "in", "output_tokens": "out", "time_unit": "ms",
            "tenant": "who", "priority": "prio"}
    specs = run(trace(path, columns=cols, start_at_zero=False))
    assert reader_name(path, columns=cols) == "csv"
    assert [(s.arrival_s, s.tenant, s.priority) for s in specs] == [(1.0, "alice", 1), (1.5, "bob", 0)]


def test_generic_jsonl_with_hashes_and_blank_lines(tmp_path):
    path = write(tmp_path / "t.jsonl", '{"t": 0.5, "p": 40, "o": 3, "h": [1, 2], "s": "a"}\n\n'
                 '{"t": 1.0, "p": 20, "o": 1, "h": [1], "s": null}\n')
    cols = {"arrival_s": "t", "prompt_tokens": "p", "output_tokens": "o", "prefix_hashes": "h",
            "prefix_block_tokens": 16, "session_id": "s"}
    specs = run(trace(path, columns=cols))
    assert reader_name(path, columns=cols) == "jsonl"
    assert [(s.arrival_s, s.prefix_hashes, s.prefix_block_tokens, s.session_id) for s in specs] == [
        (0.0, (1, 2), 16, "a"), (0.5, (1,), 16, None)]


def test_chunked_reading_equals_reading_whole(tmp_path):
    rows = "\n".join(f"{i * 0.5},{i + 1},{i % 7 + 1}" for i in range(100))
    path = write(tmp_path / "t.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n" + rows + "\n")
    reader = TRACE_READERS.get("vidur")()
    small = list(reader.read(path, chunk_rows=7))
    assert len(small) == 15 and [b.line[0] for b in small[:2]] == [2, 9]
    assert np.concatenate([b.prompt_tokens for b in small]).tolist() == list(range(1, 101))


def test_unknown_format_name_lists_the_known_ones():
    with pytest.raises(RegistryError, match="unknown trace format 'nope'; known: azure, burstgpt"):
        TRACE_READERS.get("nope")


def test_unrecognised_header_asks_for_a_format(tmp_path):
    path = write(tmp_path / "t.csv", "when,prompt,answer\n1,2,3\n")
    with pytest.raises(TraceError) as info:
        build(trace(path))
    message = str(info.value)
    assert message.startswith(f"{path}: line 1: cannot tell the trace format: the csv header (when, prompt, "
                              "answer) matches no known format; set workload.trace.format to one of")
    assert "\n" not in message


def test_jsonl_with_unknown_keys_asks_for_a_format(tmp_path):
    path = write(tmp_path / "t.jsonl", '{"a": 1}\n')
    with pytest.raises(TraceError, match="the jsonl keys \\(a\\) matches no known format"):
        build(trace(path))


def test_generic_csv_defaults_to_vidurs_column_names(tmp_path):
    path = write(tmp_path / "t.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n0.5,5,1\n")
    assert run(trace(path, format="csv", start_at_zero=False)) == run(trace(path, start_at_zero=False))
