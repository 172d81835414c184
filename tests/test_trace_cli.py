"""``servesim trace stats`` and ``servesim list traces``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from simulator.cli import main
from workloads import TRACE_READERS
from workload_helpers import shared, write


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_traces_names_every_registered_format(capsys):
    code, out, _ = cli(capsys, "list", "traces")
    assert code == 0
    assert [line.split(":")[0] for line in out.splitlines()] == TRACE_READERS.names()
    assert {"azure", "burstgpt", "mooncake", "vidur", "splitwise", "csv", "jsonl"} <= set(TRACE_READERS.names())


def test_stats_of_the_azure_conversation_trace(capsys):
    path = shared("azure_llm_2023/AzureLLMInferenceTrace_conv.csv")
    code, out, _ = cli(capsys, "trace", "stats", path, "--json")
    found = json.loads(out)
    data = pd.read_csv(path, parse_dates=["TIMESTAMP"])
    seconds = (data["TIMESTAMP"] - data["TIMESTAMP"].iloc[0]).dt.total_seconds().to_numpy()
    gaps = np.diff(seconds)
    assert code == 0 and found["format"] == "azure" and found["rows"] == 19_366
    assert found["span_s"] == pytest.approx(seconds[-1], abs=1e-5)
    assert found["rate_per_s"] == pytest.approx(19_365 / seconds[-1])
    assert found["gap_cv"] == pytest.approx(gaps.std(ddof=1) / gaps.mean(), rel=1e-6)
    assert found["prompt_tokens"]["p50"] == 1020 and found["output_tokens"]["max"] == 1000
    assert found["prefix_hit_fraction"] is None and found["sessions"] is None


def test_stats_text_for_mooncake_and_burstgpt(capsys):
    code, out, _ = cli(capsys, "trace", "stats", shared("mooncake/conversation_trace.jsonl"))
    assert code == 0 and "format mooncake" in out and "12,031" in out
    assert "of prompt tokens hit a perfect prefix cache (16-token blocks)" in out
    code, out, _ = cli(capsys, "trace", "stats", shared("burstgpt/BurstGPT_3_slice400.csv"))
    assert "399 (1 dropped as failed)" in out and "134 sessions" in out


def test_stats_of_a_generic_csv_and_an_unsorted_one(tmp_path, capsys):
    path = write(tmp_path / "t.csv", "ms,in,out\n2000,5,1\n1000,6,2\n")
    code, _, err = cli(capsys, "trace", "stats", path, "--column", "arrival_s=ms", "--column", "prompt_tokens=in",
                       "--column", "output_tokens=out", "--column", "time_unit=ms")
    assert code == 2 and err.strip().endswith("line 3: not sorted by arrival time: 1 s earlier than the row "
                                              "above; set on_unsorted: sort to sort the trace")
    code, out, _ = cli(capsys, "trace", "stats", path, "--json", "--sort", "--column", "arrival_s=ms",
                       "--column", "prompt_tokens=in", "--column", "output_tokens=out", "--column", "time_unit=ms")
    found = json.loads(out)
    assert code == 0 and found["format"] == "csv" and found["reordered_rows"] == 1 and found["span_s"] == 1.0


def test_stats_errors_are_one_line(tmp_path, capsys):
    code, _, err = cli(capsys, "trace", "stats", tmp_path / "missing.csv")
    assert code == 2 and err.count("\n") == 1 and "missing.csv: file not found" in err
    code, _, err = cli(capsys, "trace", "stats", tmp_path / "x.csv", "--format", "nope")
    assert code == 2 and "unknown trace format 'nope'" in err
    code, _, err = cli(capsys, "trace", "stats", tmp_path / "x.csv", "--column", "oops")
    assert code == 2 and "--column oops: expected ROLE=NAME" in err
