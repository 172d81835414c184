"""Fuzzing the experiment file, ``--set`` overrides and hardware/model profiles.

Whatever the file holds - random structures, wrong types, unknown keys, huge
and negative numbers, NaN and infinities, deep nesting, bytes that are not
YAML or not UTF-8 - loading either succeeds or raises a ``ConfigError`` (a
``ServesimError``) with one line naming the file. A file that loads holds no
NaN or infinity, and when it is small enough to try, building the simulation,
reading its workload and running it also end in results or a one-line
``ServesimError``; the results are finite and every request is accounted for.

Examples per test follow the hypothesis profile (``ci`` by default; ``long``
by hand, see tests/conftest.py).
"""

from __future__ import annotations

import copy
import itertools
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from conftest import DEFAULT_EXPERIMENT
from fuzz_inputs import deep, finite_json, fuzz_settings, mutated, outcome, values
from simulator.config import load_experiment, resolved_dict
from simulator.errors import ServesimError
from simulator.hardware import CATALOG_ROOT, Catalog
from simulator.runner import Simulation
from workloads import Workload

REPO = Path(__file__).resolve().parents[1]
TRACE = "arrived_at,num_prefill_tokens,num_decode_tokens,tenant\n" + "".join(
    f"{i * 0.05:.2f},{50 + 13 * i},{1 + i % 7},{'ab'[i % 2]}\n" for i in range(40))

GENERATOR = DEFAULT_EXPERIMENT
QUICKSTART = yaml.safe_load((REPO / "experiments" / "quickstart.yaml").read_text())
SEEDS: dict[str, dict[str, Any]] = {
    "generator": GENERATOR,
    "quickstart": {**QUICKSTART, "workload": {**QUICKSTART["workload"], "num_requests": 30}},
    "trace": {**GENERATOR, "workload": {
        "trace": {"path": "trace.csv", "format": "auto", "on_unsorted": "sort", "start_at_zero": True,
                  "transforms": {"filter": {"tenant": ["a", "b"]}, "window_s": [0, 100], "first_n": 30,
                                 "time_scale": 0.5}},
        "labels": [{"when": {"prompt_tokens_gt": 100}, "set": {"slo_class": "long", "priority": 1}}],
        "max_output_tokens": 64}},
    "generic_csv": {**GENERATOR, "workload": {"trace": {"path": "trace.csv", "format": "csv", "columns": {
        "arrival_s": "arrived_at", "prompt_tokens": "num_prefill_tokens", "output_tokens": "num_decode_tokens",
        "time_unit": "s", "tenant": "tenant"}}}},
    "conversation": {**GENERATOR, "workload": {"sessions": {
        "kind": "conversation", "arrivals": {"process": "poisson", "rate_per_s": 2},
        "turns": {"dist": "geometric", "mean": 3}, "lengths": {"profile": "azure-conv-2023"},
        "think_time": {"dist": "exponential", "mean_s": 1}, "system_prompt_tokens": 100, "num_sessions": 5}}},
    "agent": {**GENERATOR, "workload": {"sessions": {
        "kind": "agent", "profile": "swe-agent", "arrivals": {"process": "poisson", "rate_per_s": 0.5},
        "num_sessions": 2}}},
    "closed_loop": {**GENERATOR, "workload": {"closed_loop": {
        "clients": 4, "think_time": {"dist": "uniform", "min_s": 0, "max_s": 1},
        "lengths": {"prompt": {"dist": "lognormal", "median_tokens": 200, "sigma": 0.5, "max_tokens": 1000},
                    "output": {"dist": "quantiles", "probabilities": [0, 0.5, 1], "tokens": [1, 10, 50]}},
        "requests_per_client": 5, "ramp_s": 1}}},
    "sources": {**GENERATOR, "workload": {"sources": [
        {"name": "chat", "generator": {"arrivals": {"process": "gamma", "rate_per_s": 5, "cv": 2},
                                       "lengths": {"profile": "azure-code-2023"}}, "num_requests": 10},
        {"generator": {"arrivals": {"process": "onoff", "rate_per_s": 5, "on_s": 1, "off_s": 2},
                       "lengths": {"prompt": {"dist": "fixed", "tokens": 64},
                                   "output": {"dist": "empirical", "path": "trace.csv",
                                              "column": "num_decode_tokens"}}},
         "duration_s": 5, "labels": [{"set": {"tenant": "batch"}}]}],
        "num_requests": 25}},
    "everything_else": {**GENERATOR,
                        "cluster": {"node": "dgx-h100", "instances": [
                            {"count": 1, "gpu": "h100-sxm", "tp": 2, "pp": 1, "tag": "x", "power_cap_fraction": 0.7},
                            {"count": 1, "gpu": "a100-80gb"}],
                            "block_size_tokens": 32, "gpu_memory_utilization": 0.8, "watermark_fraction": 0.02,
                            "preemption": "swap", "swap_space_gib_per_gpu": 2},
                        "policies": {"router": {"name": "power_of_two", "load": "kv", "choices": 2},
                                     "batching": {"name": "sarathi", "max_num_seqs": 32},
                                     "admission": {"name": "aggressive"}},
                        "slo": {"ttft_s": 1.0, "tpot_s": 0.05},
                        "perf": {"calibration": "none", "efficiencies": {"gemm_compute": 0.6},
                                 "host_overhead_per_step_s": 0.001},
                        "sim": {"horizon_s": 30, "sample_interval_s": 0.5, "fast_forward": True,
                                "watchdog_steps": 1000},
                        "sweep": {"seed": [0, 1], "workload.generator.arrivals.rate_per_s": [1, 2]}},
}
ITEMS_RUN = 40  # requests or sessions of a fuzzed workload that are simulated


def names_the_file(path: Path):
    return lambda message: message.startswith(f"{path}") or message.startswith("--set")


def small_enough(experiment) -> bool:
    groups = experiment.config.cluster.instances
    return sum(g.count for g in groups) <= 8 and all(g.tp * g.pp <= 16 for g in groups)


def check_experiment(path: Path, overrides: list[str] = ()) -> None:
    """Load, and if that works and it is small, build and run a slice of it: results or one-line errors."""
    experiment = outcome(lambda: load_experiment(path, overrides), names=names_the_file(path))
    if isinstance(experiment, ServesimError):
        return
    finite_json(resolved_dict(experiment.config))  # nothing invalid slipped through as a number
    if not small_enough(experiment):
        return
    simulation = outcome(lambda: Simulation(experiment))
    if isinstance(simulation, ServesimError):
        return
    workload = simulation.workload
    simulation.workload = Workload(itertools.islice(iter(workload), ITEMS_RUN), workload.stats)
    result = outcome(simulation.run)
    if isinstance(result, ServesimError):
        return
    finite_json(result.summary)
    counts = result.summary["requests"]
    assert counts["completed"] + counts["rejected"] + counts["unfinished"] == counts["arrived"]


def _write(folder: Path, data: Any) -> Path:
    (folder / "trace.csv").write_text(TRACE)
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=False))
    return path


def test_every_seed_experiment_is_valid_and_runs() -> None:
    for name, data in SEEDS.items():
        with tempfile.TemporaryDirectory() as folder:
            path = _write(Path(folder), data)
            experiment = load_experiment(path)  # raises if a seed itself is broken
            assert small_enough(experiment), name
            check_experiment(path)


@fuzz_settings(60)
@given(data=st.sampled_from(sorted(SEEDS)).flatmap(lambda name: mutated(SEEDS[name])))
def test_mutated_experiments_load_or_fail_with_one_line(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check_experiment(_write(Path(folder), data))


@fuzz_settings(25)
@given(data=st.dictionaries(st.sampled_from([*GENERATOR, "junk"]), values, max_size=8))
def test_random_structures_fail_with_one_line(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check_experiment(_write(Path(folder), data))


YAML_PIECES = ["name: x\n", "seed: 0\n", "model: llama-3.1-8b\n", "cluster:\n", "  instances:\n", "  - {count: 1}\n",
               "workload: {generator: {arrivals: {process: poisson, rate_per_s: 1}}, num_requests: 3}\n",
               "a: &a [1, 2]\n", "b: *a\n", "c: *nope\n", "d: !!binary 'AAAA'\n", "e: !!set {1, 2}\n",
               "f: !!timestamp 2020-01-01\n", "g: !custom 1\n", "---\n", "...\n", "%YAML 1.1\n", "\t- x\n",
               "{", "]", "'", '"', ": :\n", "? [1, 2]\n: 3\n", "h: 1e999\n", "i: .nan\n", "j: -.inf\n",
               "k: 0o777\n", "l: 1_000\n", "<<: {m: 1}\n", "\ufeff", "\x00", "\x85", "\u2028"]


@fuzz_settings(40)
@given(text=st.one_of(st.lists(st.sampled_from(YAML_PIECES), max_size=12).map("".join),
                      st.text(max_size=200)),
       encoding=st.sampled_from(["utf-8", "utf-16", "latin-1", "binary"]),
       binary=st.binary(max_size=200))
def test_arbitrary_text_and_bytes_fail_with_one_line(text: str, encoding: str, binary: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "exp.yaml"
        path.write_bytes(binary if encoding == "binary" else text.encode(encoding, errors="replace"))
        check_experiment(path)


def test_deep_nesting_and_alias_expansion_fail_with_one_line() -> None:
    with tempfile.TemporaryDirectory() as folder:
        for depth in (100, 2000, 50_000):
            path = Path(folder) / "deep.yaml"
            path.write_text("name: " + "[" * depth + "]" * depth + "\n")
            check_experiment(path)
            path.write_text(yaml.safe_dump({**GENERATOR, "policies": {"router": deep(200)}}))
            check_experiment(path)
        # A "billion laughs" document: nine levels of ten aliases each.
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
        base = yaml.safe_dump({**GENERATOR, "policies": {"router": {"name": "round_robin"}}})
        path = Path(folder) / "laughs.yaml"
        path.write_text("\n".join(lines) + "\n" + base.replace("name: round_robin", "name: round_robin\n    x: *a9"))
        check_experiment(path)
        path.write_text("\n".join(lines) + "\n" + yaml.safe_dump({**GENERATOR, "sweep": {"seed": [0]}})
                        .replace("seed:\n  - 0", "seed: *a9"))
        check_experiment(path)


OVERRIDE_KEYS = ["seed", "name", "model", "cluster.instances.0.count", "cluster.instances.5.gpu",
                 "cluster.instances.x", "workload.num_requests", "workload.generator.arrivals.rate_per_s",
                 "policies.router", "policies.batching.max_batched_tokens", "sim.horizon_s", "slo", "a.b.c",
                 "", ".", "..", "cluster..node", "workload.generator.lengths.prompt.tokens", "sweep"]


@fuzz_settings(40)
@given(overrides=st.lists(st.tuples(st.one_of(st.sampled_from(OVERRIDE_KEYS), st.text(max_size=15)),
                                    st.one_of(st.text(max_size=20),
                                              st.sampled_from(["1", "-1", "1e400", ".nan", "[1, 2]", "{a: 1}",
                                                               "null", "'", "{", "*a", "!!python/none x",
                                                               "true", "2**64", "99999999999999999999999"]))),
                          max_size=4),
       separator=st.sampled_from(["=", "==", ":", ""]))
def test_set_overrides_fail_with_one_line(overrides: list[tuple[str, str]], separator: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), GENERATOR)
        check_experiment(path, [f"{key}{separator}{value}" for key, value in overrides])


# ------------------------------------------------------------------ profiles
PROFILE_KINDS = ["gpu", "model", "node", "link", "cpu"]


def _profile_seeds() -> dict[str, dict[str, Any]]:
    catalog = Catalog()
    return {kind: yaml.safe_load((CATALOG_ROOT / f"{kind}s" / f"{catalog.names(kind)[0]}.yaml").read_text())
            for kind in PROFILE_KINDS}


PROFILES = _profile_seeds()
PROFILE_FIELD = {"gpu": "cluster.instances.0.gpu", "model": "model", "node": "cluster.node"}


@fuzz_settings(50)
@given(kind=st.sampled_from(PROFILE_KINDS), data=st.data())
def test_mutated_profiles_load_or_fail_with_one_line(kind: str, data) -> None:
    profile = data.draw(mutated(PROFILES[kind]))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"my-{kind}.yaml"
        path.write_text(yaml.safe_dump(profile))
        found = outcome(lambda: Catalog(roots=()).get(kind, str(path)), names=lambda m: str(path) in m)
        if not isinstance(found, ServesimError):
            finite_json(found.model_dump())
        if kind in PROFILE_FIELD:  # also through an experiment that names the file
            experiment = copy.deepcopy(GENERATOR)
            _set(experiment, PROFILE_FIELD[kind], f"./my-{kind}.yaml")
            check_experiment(_write(Path(folder), experiment))


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        data = data[int(part)] if isinstance(data, list) else data[part]
    data[leaf] = value


# ------------------------------------------------------------------ what fuzzing found (kept as fixed cases)
FOUND = [
    # (seed experiment, --set overrides, words of the one-line error)
    ("closed_loop", ["workload.closed_loop.requests_per_client=5000000000"], ["requests_per_client"]),
    ("closed_loop", ["workload.closed_loop.requests_per_client=null", "workload.num_requests=10000000000"],
     ["calls per client"]),
    ("conversation", ["workload.sessions.turns={dist: geometric, mean: 1e300}"], ["turns"]),
    ("generator", ["seed=\x1f\n"], ["--set", "\\n"]),
    ("generator", ["name=" + "[" * 3000 + "]" * 3000], ["--set", "not valid YAML"]),
]


def test_inputs_fuzzing_found_fail_with_one_line() -> None:
    for seed, overrides, words in FOUND:
        with tempfile.TemporaryDirectory() as folder:
            path = _write(Path(folder), SEEDS[seed])
            error = outcome(lambda: load_experiment(path, overrides), names=names_the_file(path))
            assert isinstance(error, ServesimError), (seed, overrides)
            assert all(word in str(error) for word in words), str(error)


def test_profiles_fuzzing_found_fail_with_one_line() -> None:
    gpu = PROFILES["gpu"]
    for change in ({"memory_gib": float("inf")}, {"memory_gib": float("nan")}, {"memory_gib": 1e300},
                   {"bf16_tflops": 1e-300}, {"tdp_w": 10**30}):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "my-gpu.yaml"
            path.write_text(yaml.safe_dump({**gpu, **change}))
            error = outcome(lambda: Catalog(roots=()).get("gpu", str(path)), names=lambda m: str(path) in m)
            assert isinstance(error, ServesimError) and next(iter(change)) in str(error), (change, error)
