"""The same experiment and seed give the same results, however they are run.

- repeated runs in one process, and in fresh interpreters with different hash
  seeds (so nothing depends on set or dict iteration of hashed objects);
- fast-forward on and off (float metrics within 1e-9 relative, counts exact);
- the order of keys in the experiment and profile files, and the order in which
  the file system lists a folder (trace chunks, calibration files);
- local and Ray sweep backends: ``tests/test_sweep.py::test_ray_backend_gives_identical_numbers``
  and ``test_sweep_writes_tables_and_is_identical_for_any_worker_count``.

Wall-clock fields (``sim.wall_s``, ``sim.requests_per_wall_s``) are the only
ones allowed to differ.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from conftest import experiment_dict, fixed, memory_utilization, uniform, write_experiment
from simulator.config import load_experiment, resolved_dict
from simulator.hardware import CATALOG_ROOT
from simulator.runner import run_experiment
from simulator.sweep_run import config_hash
from workload_helpers import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
WALL_CLOCK = {"sim.wall_s", "sim.requests_per_wall_s"}
RELATIVE = 1e-9


def with_workload(workload: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The test experiment with ``workload`` replacing the default one whole."""
    data = experiment_dict(**overrides)
    data["workload"] = workload
    return data


def flat(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}."))
        elif name not in WALL_CLOCK:
            out[name] = value
    return out


def assert_same(a: dict[str, Any], b: dict[str, Any], rel: float = 0.0) -> None:
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    different = []
    for key, x in fa.items():
        y = fb[key]
        if isinstance(x, float) and isinstance(y, (int, float)) and rel:
            if not math.isclose(x, y, rel_tol=rel, abs_tol=1e-12):
                different.append((key, x, y))
        elif x != y:
            different.append((key, x, y))
    assert not different, different[:10]


def assert_same_requests(a: pd.DataFrame, b: pd.DataFrame, rel: float = 0.0) -> None:
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    if rel:
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=rel, atol=1e-12)
    else:
        pd.testing.assert_frame_equal(a, b, check_exact=True)


# ------------------------------------------------------------------ repeated runs
def test_repeated_runs_in_one_process_are_identical(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, experiment_dict(num_requests=60, router={"name": "random"}))
    first, second = run_experiment(load_experiment(path)), run_experiment(load_experiment(path))
    assert_same(first.summary, second.summary)
    assert_same_requests(first.requests, second.requests)


def test_fresh_interpreters_with_different_hash_seeds_agree(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, with_workload(
        router={"name": "power_of_two", "load": "kv"},
        workload={"sources": [
            {"name": "a", "generator": {"arrivals": {"process": "gamma", "rate_per_s": 5, "cv": 2},
                                        "lengths": {"prompt": uniform(10, 900), "output": uniform(1, 50)}}},
            {"name": "b", "sessions": {"kind": "conversation", "arrivals": {"process": "poisson", "rate_per_s": 1},
                                       "turns": {"dist": "fixed", "value": 3},
                                       "lengths": {"prompt": uniform(10, 200), "output": uniform(1, 30)}}}],
            "num_requests": 60, "labels": [{"set": {"tenant": "t"}}]}))
    summaries = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"run-{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(path), "-o", str(out), "--no-report"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        summaries.append(json.loads((out / "summary.json").read_text()))
        assert (out / "requests.csv").is_file()
    assert_same(*summaries)
    a, b = (pd.read_csv(tmp_path / f"run-{s}" / "requests.csv") for s in ("1", "2"))
    assert_same_requests(a, b)


# ------------------------------------------------------------------ fast-forward
FAST_FORWARD_CASES = {
    "decode-heavy": dict(num_requests=80, prompt=uniform(16, 300), output=uniform(50, 400), rate=30.0),
    "chunked": dict(num_requests=60, prompt=uniform(100, 3000), output=uniform(1, 200), rate=40.0,
                    batching={"name": "vllm", "max_batched_tokens": 1024, "chunked_prefill": True}),
    "swap-pressure": dict(num_requests=60, prompt=fixed(900), output=uniform(100, 300), rate=50.0,
                          cluster={"preemption": "swap",
                                   "gpu_memory_utilization": memory_utilization("llama-3.1-8b", "h100-sxm", 400)}),
    "recompute-pressure": dict(num_requests=60, prompt=fixed(900), output=uniform(100, 300), rate=50.0,
                               cluster={"gpu_memory_utilization": memory_utilization("llama-3.1-8b", "h100-sxm",
                                                                                     300)}),
    "sessions": dict(horizon_s=60.0, workload={"sessions": {
        "kind": "conversation", "arrivals": {"process": "poisson", "rate_per_s": 2},
        "turns": {"dist": "uniform", "min": 1, "max": 5}, "lengths": {"prompt": uniform(20, 300),
                                                                      "output": uniform(20, 200)},
        "think_time": {"dist": "exponential", "mean_s": 0.5}, "num_sessions": 12}}),
}


@pytest.mark.parametrize("case", sorted(FAST_FORWARD_CASES))
def test_fast_forward_on_and_off_give_the_same_results(tmp_path: Path, case: str) -> None:
    overrides = FAST_FORWARD_CASES[case]
    results = {}
    for fast in (True, False):
        extra = dict(overrides)
        data = with_workload(extra.pop("workload"), **extra) if "workload" in extra else experiment_dict(**extra)
        data.setdefault("sim", {})["fast_forward"] = fast
        results[fast] = run_experiment(load_experiment(write_experiment(tmp_path, data, f"ff-{fast}.yaml")))
    on, off = results[True].summary, results[False].summary
    assert on["requests"]["completed"] > 0
    if "pressure" in case:
        assert on["events"]["preemptions"] > 0, "the case exercises preemption"
    assert_same(on, off, rel=RELATIVE)
    assert_same_requests(results[True].requests, results[False].requests, rel=RELATIVE)


# ------------------------------------------------------------------ key and file order
def shuffled(value: Any, rng: random.Random) -> Any:
    """The same data with the keys of every mapping in a random order (list order kept)."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: shuffled(child, rng) for key, child in items}
    if isinstance(value, list):
        return [shuffled(child, rng) for child in value]
    return value


@pytest.mark.parametrize("order_seed", [1, 2])
def test_key_order_in_the_experiment_file_does_not_matter(tmp_path: Path, order_seed: int) -> None:
    data = experiment_dict(num_requests=50, router={"name": "jsq", "load": "tokens"},
                           instances=[{"count": 2, "gpu": "h100-sxm", "tp": 1}],
                           slo={"ttft_s": 0.5, "tpot_s": 0.05}, sim={"sample_interval_s": 0.5})
    reordered = shuffled(data, random.Random(order_seed))
    assert list(reordered) != list(data) or order_seed != 1, "the shuffle changed the order"
    a = load_experiment(write_experiment(tmp_path, data, "a.yaml"))
    b = load_experiment(write_experiment(tmp_path, reordered, "b.yaml"))
    assert config_hash(resolved_dict(a.config)) == config_hash(resolved_dict(b.config))  # same sweep cache key
    ra, rb = run_experiment(a), run_experiment(b)
    assert_same(ra.summary, rb.summary)
    assert_same_requests(ra.requests, rb.requests)
    pd.testing.assert_frame_equal(ra.timeseries, rb.timeseries)


def test_key_order_in_a_model_profile_does_not_matter(tmp_path: Path) -> None:
    model = yaml.safe_load((CATALOG_ROOT / "models" / "llama-3.1-8b.yaml").read_text())
    (tmp_path / "model-a.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    (tmp_path / "model-b.yaml").write_text(yaml.safe_dump(shuffled(model, random.Random(3)), sort_keys=False))
    runs = [run_experiment(load_experiment(write_experiment(tmp_path, experiment_dict(model=f"./model-{x}.yaml"),
                                                            f"{x}.yaml"))) for x in "ab"]
    assert_same(runs[0].summary, runs[1].summary)


def _reversed_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the file system list every folder backwards."""
    glob, rglob, iterdir, listdir = Path.glob, Path.rglob, Path.iterdir, os.listdir
    monkeypatch.setattr(Path, "glob", lambda self, *a, **k: iter(list(glob(self, *a, **k))[::-1]))
    monkeypatch.setattr(Path, "rglob", lambda self, *a, **k: iter(list(rglob(self, *a, **k))[::-1]))
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(list(iterdir(self))[::-1]))
    monkeypatch.setattr(os, "listdir", lambda *a: listdir(*a)[::-1])


def test_folder_listing_order_does_not_matter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calibration = tmp_path / "calibration"
    shutil.copytree(CATALOG_ROOT / "calibration", calibration)
    workload: dict[str, Any] = {"generator": {"arrivals": {"process": "poisson", "rate_per_s": 20},
                                              "lengths": {"profile": "azure-conv-2023"}}, "num_requests": 60}
    servegen = SHARED_DATA / "servegen" / "reason" / "deepseek-r1"
    if servegen.is_dir():  # a folder of per-client chunk files
        folder = tmp_path / "servegen"
        folder.mkdir()
        for client in (0, 3, 5, 8):
            for kind in ("trace.csv", "dataset.json"):
                shutil.copy(servegen / f"chunk-{client}-{kind}", folder)
        workload = {"servegen": {"path": "servegen", "window_s": [7200, 21_600]}, "num_requests": 60,
                    "max_output_tokens": 64}
    data = with_workload(workload, perf={"calibration": "calibration"}, instances=[{"count": 2, "gpu": "a100-80gb"}])
    path = write_experiment(tmp_path, data)
    plain = run_experiment(load_experiment(path))
    _reversed_listing(monkeypatch)
    backwards = run_experiment(load_experiment(path))
    assert plain.summary["requests"]["arrived"] == 60
    assert_same(plain.summary, backwards.summary)
    assert_same_requests(plain.requests, backwards.requests)
