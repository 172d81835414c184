"""Tests of ``servesim regress``, including the gate itself over the committed baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiment_files import write_small
from simulator.cli import main

REPO = Path(__file__).resolve().parents[1]
BASELINES = REPO / "experiments" / "baselines"


def test_committed_baselines_pass(capsys) -> None:
    """The regression gate CI runs: every baseline in experiments/baselines/ holds."""
    assert sorted(BASELINES.glob("*.json")), "no committed baselines"
    code = main(["regress", "--baseline", str(BASELINES)])
    assert code == 0, capsys.readouterr().out


def test_a_changed_policy_parameter_fails_with_a_diff_table(capsys) -> None:
    code = main(["regress", str(REPO / "experiments" / "quickstart_fast.yaml"), "--baseline", str(BASELINES),
                 "--set", "policies.batching.max_batched_tokens=512"])
    out = capsys.readouterr().out
    assert code == 1
    assert "quickstart_fast: REGRESSION" in out and "| metric | baseline | current | change | tolerance |" in out
    assert "| ttft_s.p50 |" in out


def test_update_writes_a_baseline_that_then_passes_and_keeps_tolerances(tmp_path: Path, capsys) -> None:
    exp = write_small(tmp_path)
    baseline = tmp_path / "baselines" / "small.json"
    assert main(["regress", str(exp), "--baseline", str(baseline)]) == 2  # none yet
    assert "--update" in capsys.readouterr().err
    assert main(["regress", str(exp), "--baseline", str(baseline), "--update"]) == 0
    data = json.loads(baseline.read_text())
    assert data["experiment"] == "../small.yaml" and "sim.wall_s" not in data["metrics"]
    assert main(["regress", "--baseline", str(baseline)]) == 0  # the recorded experiment
    # A looser tolerance on one metric lets a small change through; others still fail.
    data["metrics"]["ttft_s.p99"] *= 1.05
    data["tolerances"]["ttft_s.p99"] = {"rel": 0.1}
    data["metrics"]["requests.completed"] += 1
    baseline.write_text(json.dumps(data))
    assert main(["regress", "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "| requests.completed |" in out and "| ttft_s.p99 |" not in out
    assert main(["regress", "--baseline", str(baseline), "--update"]) == 0
    assert json.loads(baseline.read_text())["tolerances"]["ttft_s.p99"] == {"rel": 0.1}


@pytest.mark.parametrize("content, message", [
    ("{", "invalid JSON"),
    ('{"format": "other"}', "format"),
    ('{"format": "servesim-baseline/1", "experiment": "x.yaml", "metrics": {}, "tolerances": {"a": {"rel": -1}}}',
     "tolerances.a.rel"),
])
def test_malformed_baselines_are_one_line_errors(tmp_path: Path, capsys, content: str, message: str) -> None:
    path = tmp_path / "b.json"
    path.write_text(content)
    assert main(["regress", "--baseline", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def _small_baseline(tmp_path: Path) -> tuple[Path, dict]:
    """A fresh baseline of the small experiment (written by --update) and its data."""
    exp = write_small(tmp_path)
    baseline = tmp_path / "baselines" / "small.json"
    assert main(["regress", str(exp), "--baseline", str(baseline), "--update"]) == 0
    return baseline, json.loads(baseline.read_text())


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("metrics"), "metrics: missing"),
    (lambda d: d["metrics"].update({"ttft_s.p99": "fast"}), 'metrics.ttft_s.p99: expected a finite number or null, got "fast"'),
    (lambda d: d["metrics"].update({"ttft_s.p99": float("nan")}), "metrics.ttft_s.p99: expected a finite number or null"),
    (lambda d: d.update({"metrix": {}}), "metrix: unknown key"),
    (lambda d: d.update({"overrides": [5]}), "overrides.0: expected a KEY=VALUE string"),
], ids=["no-metrics", "string-metric", "nan-metric", "unknown-key", "non-string-override"])
def test_a_malformed_baseline_is_bad_input_not_a_regression(tmp_path: Path, capsys, change, message) -> None:
    baseline, data = _small_baseline(tmp_path)
    change(data)
    baseline.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["regress", "--baseline", str(baseline)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{baseline}: {message}" in err, err


def test_a_baseline_that_is_not_utf8_is_one_line_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "b.json"
    path.write_bytes(b'{"format": "\xff\xfe"}')
    assert main(["regress", "--baseline", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}: not UTF-8" in err, err


def test_a_metric_the_baseline_lacks_fails_the_gate(tmp_path: Path, capsys) -> None:
    baseline, data = _small_baseline(tmp_path)
    del data["metrics"]["ttft_s.p99"]
    baseline.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["regress", "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "small: REGRESSION" in out
    assert "metric ttft_s.p99 is not in the baseline; re-baseline with --update" in out
