"""The benchmark scripts run and write the JSON the README documents (their timings are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks"
SIMULATION_KEYS = {"benchmark", "case", "requests", "wall_s", "requests_per_wall_s", "steps_per_s", "peak_rss_mb"}


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
                          timeout=300, cwd=BENCHMARKS.parents[1])


def test_startup_benchmark_times_fresh_processes(tmp_path):
    out = tmp_path / "startup.json"
    done = run_script("startup.py", "--repeats", "2", "--json", str(out))
    assert done.returncode == 0, done.stderr
    [row] = json.loads(out.read_text())
    assert row["benchmark"] == "startup" and row["repeats"] == 2
    assert 0 < row["min_s"] <= row["wall_s"] <= row["max_s"]
    assert row["profiles"] > 10  # every GPU, CPU, link, node and model profile was loaded
    assert "target 1.0 s" in done.stdout
    assert row["python"].startswith("CPython 3.") and row["python"] in done.stdout


def test_startup_benchmark_refuses_zero_repeats():
    done = run_script("startup.py", "--repeats", "0")
    assert done.returncode == 2 and "--repeats must be at least 1" in done.stderr


def test_scale_benchmark_writes_the_documented_row(tmp_path):
    out = tmp_path / "scale.json"
    done = run_script("scale.py", "--cases", "10k", "--json", str(out))
    assert done.returncode == 0, done.stderr
    [row] = json.loads(out.read_text())
    assert SIMULATION_KEYS <= row.keys()
    assert (row["benchmark"], row["case"], row["requests"]) == ("scale", "10k", 10_000)
    assert row["build"].startswith(("compiled (", "pure Python")) and row["build"] in done.stdout
    # The interpreter that ran it, down to how libpython is linked (where /proc tells).
    assert row["python"].startswith("CPython 3.") and row["python"] in done.stdout
    assert str(Path(sys.executable).resolve()) in row["python"]
    # The JSON rounds wall_s to milliseconds; the rate was computed before rounding.
    assert abs(row["requests_per_wall_s"] * row["wall_s"] / row["requests"] - 1) < 0.01


def test_unknown_case_is_a_usage_error():
    done = run_script("scale.py", "--cases", "10k,huge")
    assert done.returncode == 2 and "unknown case(s) huge" in done.stderr


def test_repeats_report_the_median_run_and_the_spread(tmp_path):
    out = tmp_path / "vidur.json"
    done = run_script("vidur_equivalent.py", "--cases", "1k", "--repeats", "2", "--json", str(out))
    assert done.returncode == 0, done.stderr
    [row] = json.loads(out.read_text())
    assert SIMULATION_KEYS <= row.keys() and row["repeats"] == 2
    assert row["min_s"] <= row["wall_s"] <= row["max_s"]
    assert row["wall_s"] == row["min_s"]  # of two runs, the median reported is the lower one
    assert "median of 2" in done.stdout


def test_zero_repeats_is_a_usage_error():
    done = run_script("scale.py", "--cases", "10k", "--repeats", "0")
    assert done.returncode == 2 and "--repeats must be at least 1" in done.stderr
