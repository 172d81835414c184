"""Tests of the Markdown report and its figures, built from an output folder alone."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.errors import ServesimError
from simulator.metrics.histogram import LogHistogram
from simulator.metrics.run_stats import EventCounts, InstanceStats, RunStats
from simulator.metrics.summary import REQUEST_COLUMNS, summarize
from simulator.report import write_report
from simulator.report.definitions import DEFINITIONS_MD
from simulator.report.figures import ecdf_points, latency_cdf

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def requests_frame(statuses: list[str]) -> pd.DataFrame:
    """Request k arrives at k s; finished ones get their first token 0.25 (k + 1) s later."""
    n = len(statuses)
    k = np.arange(n, dtype=np.float64)
    finished = np.array([status == "finished" for status in statuses])
    first_token = np.where(finished, k + 0.25 * (k + 1), math.nan)
    last_token = first_token + 0.04 * 9  # ten tokens, gaps of 40 ms
    frame = pd.DataFrame({
        "request_id": np.arange(n), "arrival_s": k, "instance_id": np.where(finished, 0, -1),
        "status": statuses, "reject_reason": ["" if f else "queue_full" for f in finished],
        "prompt_tokens": 64, "output_tokens": 10, "generated_tokens": np.where(finished, 10, 0),
        "first_scheduled_s": np.where(finished, k + 0.1, math.nan), "first_token_s": first_token,
        "last_token_s": last_token, "finish_s": last_token, "max_token_gap_s": 0.04,
        "num_preemptions": 0, "prefix_hit_tokens": 0, "recomputed_tokens": 0, "tenant": "t",
        "priority": 0, "slo_class": "default", "session_id": "",
    })
    return frame[list(REQUEST_COLUMNS)]


def write_run(out_dir: Path, statuses: list[str]) -> dict:
    """Write summary.json and requests.csv as a run would; return the summary."""
    frame = requests_frame(statuses)
    gaps = LogHistogram()
    gaps.add_repeated(0.04, 9 * statuses.count("finished"))
    instance = InstanceStats(instance_id=0, gpu="h100-sxm", gpu_count=1, peak_flops_per_gpu=1e15,
                             hbm_bytes_per_s_per_gpu=3e12, usd_per_hour_per_gpu=2.5,
                             kv_capacity_blocks=100, busy_s=3.0, flops=1e14, energy_j=900.0)
    stats = RunStats(simulated_s=float(len(statuses) + 1), wall_s=0.1, steps=40,
                     instances=[instance], events=EventCounts(), token_gap_histogram=gaps)
    summary = summarize(frame, stats, experiment="report-test", seed=1, version="0.1.0",
                        slo_ttft_s=0.6, slo_tpot_s=0.05)
    (out_dir / "summary.json").write_text(json.dumps(summary))
    frame.to_csv(out_dir / "requests.csv", index=False)
    return summary


def test_report_has_table_figures_and_definitions(tmp_path: Path) -> None:
    summary = write_run(tmp_path, ["finished", "finished", "rejected", "finished"])
    report = write_report(tmp_path)
    assert report == tmp_path / "report.md"
    text = report.read_text()
    for png in ("ttft_cdf.png", "tpot_cdf.png"):
        assert (tmp_path / png).read_bytes().startswith(PNG_MAGIC)
        assert f"]({png})" in text  # embedded by relative link
    # TTFTs are 0.25, 0.5 and 1.0 s, so the median is 500 ms.
    assert summary["ttft_s"]["p50"] == pytest.approx(0.5)
    ttft_row = next(line for line in text.splitlines() if line.startswith("| TTFT |"))
    assert "| 500.00 |" in ttft_row
    assert "| TPOT | 40.00 | 40.00 |" in text
    assert "report-test" in text and "## Definitions" in text
    assert DEFINITIONS_MD.strip() in text
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_report_without_completed_requests(tmp_path: Path) -> None:
    write_run(tmp_path, ["rejected", "unfinished"])
    text = write_report(tmp_path).read_text()
    assert "| TTFT | n/a | n/a | n/a | n/a |" in text
    for png in ("ttft_cdf.png", "tpot_cdf.png"):
        assert (tmp_path / png).read_bytes().startswith(PNG_MAGIC)


def test_empty_figure_says_so() -> None:
    fig = latency_cdf(np.array([]), name="TTFT", slo_s=1.0)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "no completed requests" in texts
    assert fig.axes[0].get_xlabel() == "TTFT (ms)"


def test_missing_summary_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(ServesimError, match="summary.json"):
        write_report(tmp_path)


def test_ecdf_is_thinned_but_keeps_the_ends() -> None:
    values = np.random.default_rng(0).exponential(size=100_000)
    x, y = ecdf_points(values, max_points=500)
    assert x.size <= 500
    assert x[0] == values.min() and x[-1] == values.max() and y[-1] == 1.0
    assert np.all(np.diff(x) >= 0)


def test_docs_page_holds_the_report_definitions() -> None:
    assert DEFINITIONS_MD in DOCS.read_text()


# ------------------------------------------------------- damaged folders: one line, exit 2
def _cut_mid_row(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _drop_last_row(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))


DAMAGED_RUNS = {
    "summary-list": ("summary.json", lambda p: p.write_text("[1]"), "summary.json: expected a JSON object"),
    "summary-not-utf8": ("summary.json", lambda p: p.write_bytes(b'{"experiment": "\xff"}'), "summary.json: not UTF-8"),
    "summary-section-text": ("summary.json",
                             lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "slo": {"ttft_s": "x"}})),
                             "summary.json: slo.ttft_s: expected a number or null"),
    "requests-other-columns": ("requests.csv", lambda p: p.write_text("a,b\n1,2\n"),
                               "requests.csv: line 1: missing columns status, arrival_s"),
    "requests-cut-mid-row": ("requests.csv", _cut_mid_row, "requests.csv: the last row is cut off"),
    "requests-cut-at-line-end": ("requests.csv", _drop_last_row, "requests.csv: 3 requests, but summary.json counts 4"),
    "requests-text-cell": ("requests.csv", lambda p: p.write_text(p.read_text().replace(",0.0,", ",soon,", 1)),
                           "requests.csv: line 2: column arrival_s: expected a number, got 'soon'"),
    "timeseries-garbage": ("timeseries.csv", lambda p: p.write_text("garbage,x\n1,2\n"),
                           "timeseries.csv: line 1: missing columns time_s, instance_id"),
    "timeseries-cut": ("timeseries.csv", lambda p: p.write_text("time_s,instance_id,kv_utilization,num_waiting,"
                                                                 "num_running\n0,0,0.5,1,2\n1,0,0.5"),
                       "timeseries.csv: the last row is cut off"),
}


@pytest.mark.parametrize("name", list(DAMAGED_RUNS))
def test_report_of_a_damaged_run_folder_is_one_line_naming_the_file(tmp_path: Path, capsys, name: str) -> None:
    from simulator.cli import main

    write_run(tmp_path, ["finished", "finished", "rejected", "finished"])
    filename, damage, message = DAMAGED_RUNS[name]
    if filename == "timeseries.csv":
        (tmp_path / filename).write_text("")
    damage(tmp_path / filename)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "report.md").exists()


DAMAGED_SWEEPS = {
    "manifest-empty": ("sweep.json", lambda p: p.write_text("{}"), "sweep.json: keys: expected the list of varied keys"),
    "manifest-list": ("sweep.json", lambda p: p.write_text("[]"), "sweep.json: expected a JSON object"),
    "results-other-columns": ("results.csv", lambda p: p.write_text("a,b\n1,2\n"),
                              "results.csv: line 1: missing columns point, label, seed, run, status, error"),
    "points-cut-mid-row": ("points.csv", _cut_mid_row, "points.csv: the last row is cut off"),
    "points-text-metric": ("points.csv", lambda p: p.write_text(p.read_text().replace("\n0,", "\nzero,", 1)),
                           "points.csv: line 2: column point: expected a number, got 'zero'"),
}


@pytest.mark.parametrize("name", list(DAMAGED_SWEEPS))
def test_report_of_a_damaged_sweep_folder_is_one_line_naming_the_file(tmp_path: Path, capsys, name: str) -> None:
    from simulator.cli import main
    from simulator.report.sweep_report import write_comparison

    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        write_run(tmp_path / run, ["finished", "finished", "rejected", "finished"])
    folder = tmp_path / "cmp"
    write_comparison([tmp_path / "a", tmp_path / "b"], folder)
    (folder / "report.md").unlink()
    filename, damage, message = DAMAGED_SWEEPS[name]
    damage(folder / filename)
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (folder / "report.md").exists()
