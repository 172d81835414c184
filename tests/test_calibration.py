"""Calibration: efficiency curves, the fit, the committed parameters, and how instances use them.

The pin test re-runs ``servesim calibrate`` on ../shared/data and compares with
the committed files in hardware_profiles/calibration/; tests that need the
data skip when the folder is absent.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import build_experiment
from simulator.cli import main
from simulator.errors import ConfigError
from simulator.hardware import DEFAULT_CATALOG
from simulator.perf import fitting
from simulator.perf.calibration import (CALIBRATION_DIR, calibration_index, instance_perf, load_calibrations,
                                        resolve)
from simulator.perf.cost_model import HostOverhead
from simulator.perf.efficiency import Curve, Efficiencies
from simulator.perf.power import PowerModel, capped_compute_scale
from simulator.perf.shape import StepShape

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")
COMMITTED = load_calibrations(CALIBRATION_DIR)
CURVE = Curve((1e3, 4e3, 1.6e4, 6.4e4), (0.05, 0.2, 0.6, 0.8))


# ------------------------------------------------------------------ curves
@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1e6, allow_nan=False), min_size=1, max_size=20))
def test_curve_gives_the_same_bits_for_a_value_alone_or_in_an_array(sizes) -> None:
    array = CURVE(np.array(sizes))
    assert [CURVE(s) for s in sizes] == list(array)


def test_curve_is_flat_beyond_its_ends_and_linear_between_knots() -> None:
    assert CURVE(1.0) == 0.05 and CURVE(1e9) == 0.8
    assert CURVE(2.5e3) == pytest.approx(0.125)
    with pytest.raises(ValueError):
        Curve((2.0, 1.0), (0.5, 0.5))
    with pytest.raises(ValueError):
        Curve((1.0,), (1.5,))


def test_an_elementwise_kernel_with_its_own_curve_uses_it() -> None:
    eff = Efficiencies(kernels=(("norm", Curve((1.0,), (0.25,))),))
    assert eff.memory("elementwise", 1e6, "input_norm") == 0.25  # norms share the "norm" kernel
    assert eff.memory("elementwise", 1e6, "rope") == eff.elementwise_memory


@pytest.mark.parametrize("model, gpu, tp, pp, node", [("codellama-34b", "a100-80gb", 2, 1, "dgx-a100"),
                                                     ("llama-2-70b", "a100-80gb", 4, 2, "dgx-a100"),
                                                     ("mixtral-8x7b", "h200", 2, 1, "hgx-h200")])
def test_tabulated_dense_part_equals_the_roofline_evaluated_alone(model, gpu, tp, pp, node) -> None:
    """The cost model reads the dense part of prefill and mixed steps from token tables; the
    values must be those of the roofline for that one count (fast-forward relies on it)."""
    profile = DEFAULT_CATALOG.get("gpu", gpu)
    link = DEFAULT_CATALOG.get("link", DEFAULT_CATALOG.get("node", node).intra_node_link)
    perf = instance_perf(DEFAULT_CATALOG.get("model", model), profile, tp, pp, link if tp > 1 else None,
                         link if pp > 1 else None, resolve(profile, COMMITTED))
    rng = np.random.default_rng(2)
    counts = [(0, 0), (1, 1), (1023, 5), (1024, 0), (1025, 1)]
    counts += [(int(t), int(min(s, t))) for t, s in zip(rng.integers(1, 40_000, 200), rng.integers(0, 600, 200))]
    for tokens, sampled in counts:
        tabulated = perf.cost._dense_time_and_work(tokens, sampled)
        assert tabulated == perf.cost.roofline.dense_time_and_work(tokens, sampled), (tokens, sampled)
    assert perf.cost._dense_blocks, "the tables were used"


@pytest.mark.parametrize("model, gpu, tp, pp, node", [("llama-3.1-8b", "h100-sxm", 1, 1, "dgx-h100"),
                                                     ("llama-2-70b", "a100-80gb", 4, 2, "dgx-a100"),
                                                     ("mixtral-8x7b", "h200", 2, 1, "hgx-h200")])
def test_calibrated_step_times_are_bit_identical_for_scalars_and_arrays(model, gpu, tp, pp, node) -> None:
    profile = DEFAULT_CATALOG.get("gpu", gpu)
    link = DEFAULT_CATALOG.get("link", DEFAULT_CATALOG.get("node", node).intra_node_link)
    perf = instance_perf(DEFAULT_CATALOG.get("model", model), profile, tp, pp, link if tp > 1 else None,
                         link if pp > 1 else None, resolve(profile, COMMITTED), power_cap_fraction=0.7)
    rng = np.random.default_rng(1)
    tokens = rng.integers(1, 9000, 64).astype(float)
    seqs = np.minimum(tokens, rng.integers(1, 256, 64)).astype(float)
    pairs, kv = tokens * rng.uniform(1, 4000, 64), seqs * rng.uniform(1, 4000, 64)
    array = perf.cost.step_time_s(StepShape(tokens, seqs, seqs, pairs, kv))
    single = [perf.cost.step_time_s(StepShape(int(a), int(b), int(b), float(c), float(d)))
              for a, b, c, d in zip(tokens, seqs, pairs, kv)]
    assert list(array) == single


def test_memoised_prompt_steps_equal_steps_timed_afresh() -> None:
    """Steps of fresh prompts (every KV entry read is new) are memoised whole; a repeated shape
    gets the duration and work of a cost model that never saw it, and steps with cached context
    are not memoised."""
    profile = DEFAULT_CATALOG.get("gpu", "a100-80gb")
    link = DEFAULT_CATALOG.get("link", DEFAULT_CATALOG.get("node", "dgx-a100").intra_node_link)

    def fresh_model():
        return instance_perf(DEFAULT_CATALOG.get("model", "codellama-34b"), profile, 2, 1, link, None,
                             resolve(profile, COMMITTED)).cost

    memoised = fresh_model()
    prompts = [StepShape.for_sequence(n, 0, samples=True) for n in (1, 17, 374, 4096, 374, 17)]
    prompts.append(StepShape(700, 2, 2, 300 * 301 / 2 + 400 * 401 / 2, 700))  # two prompts at once
    prompts.append(StepShape(700, 2, 2, 300 * 301 / 2 + 400 * 401 / 2, 700))
    for shape in prompts:
        alone = fresh_model()
        assert memoised.step_time_s(shape) == alone.step_time_s(shape), shape
        assert memoised.work(shape) == alone.work(shape), shape
    assert len(memoised._steps) == 5, "each distinct prompt step was memoised once"
    memoised.step_time_s(StepShape(9, 9, 9, 900.0, 900))  # decodes: context read
    memoised.step_time_s(StepShape.for_sequence(512, 512, samples=False))  # a later chunk
    assert len(memoised._steps) == 5


def test_host_overhead_prefill_terms_apply_to_prefill_steps_only() -> None:
    host = HostOverhead(1e-3, 1e-5, 2e-3, 1e-6, 100)
    decode = StepShape(8, 8, 8, 800.0, 800)
    prefill = StepShape(608, 9, 9, 800.0, 1400)  # 600 prompt tokens plus 8 decodes
    assert host.step_s(decode) == pytest.approx(1e-3 + 8e-5)
    assert host.step_s(prefill) == pytest.approx(1e-3 + 9e-5 + 2e-3 + 1e-6 * (608 - 9 - 100))


# ------------------------------------------------------------------ fitting
def test_the_fit_recovers_a_known_curve_and_launch_time() -> None:
    rng = np.random.default_rng(0)
    flops = np.exp2(rng.uniform(20, 40, 400))
    hbm = np.exp2(rng.uniform(16, 30, 400))
    truth = Curve(tuple(np.exp2(np.arange(20, 41, 2.0))), tuple(np.linspace(0.1, 0.8, 11)))
    memory = Curve((2.0 ** 16, 2.0 ** 30), (0.3, 0.9))
    measured = np.maximum(flops / (1e15 * truth(flops)), hbm / (3e12 * memory(hbm))) + 4e-6
    problem = fitting.FitProblem(measured, np.ones(400))
    problem.add(fitting.Term("compute", flops, np.full(400, 1e15), flops), np.arange(400))
    problem.add(fitting.Term("memory", hbm, np.full(400, 3e12), hbm), np.arange(400))
    result = fitting.fit(problem)
    assert np.abs(result.predicted_s / measured - 1).mean() < 0.01


# ------------------------------------------------------------------ committed parameters
@needs_data
def test_recalibrating_the_same_data_reproduces_the_committed_parameters(tmp_path) -> None:
    assert main(["calibrate", "--data", str(DATA), "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.glob("*.yaml"))
    assert written == sorted(p.name for p in CALIBRATION_DIR.glob("*.yaml"))
    for name in written:
        fresh = yaml.safe_load((tmp_path / name).read_text())
        committed = yaml.safe_load((CALIBRATION_DIR / name).read_text())
        _assert_close(fresh, committed, name)


def _assert_close(fresh, committed, where: str) -> None:
    if isinstance(committed, dict):
        assert isinstance(fresh, dict) and fresh.keys() == committed.keys(), where
        for key in committed:
            _assert_close(fresh[key], committed[key], f"{where}.{key}")
    elif isinstance(committed, list):
        assert isinstance(fresh, list) and len(fresh) == len(committed), where
        for i, (a, b) in enumerate(zip(fresh, committed)):
            _assert_close(a, b, f"{where}[{i}]")
    elif isinstance(committed, float):
        assert math.isclose(fresh, committed, rel_tol=1e-3, abs_tol=1e-9), f"{where}: {fresh} != {committed}"
    else:
        assert fresh == committed, where


def test_committed_calibrations_cover_the_measured_gpus_and_their_generations() -> None:
    assert {"a100-80gb", "h100-sxm", "a40"} <= set(COMMITTED)
    index = calibration_index(COMMITTED)
    assert index["h200"]["operators"] == "h100-sxm"  # nearest measured Hopper
    assert index["a100-40gb"]["operators"] == "a100-80gb"
    assert index["a10"]["operators"] == "a40"  # GDDR6 Ampere: nearer the A40 than the A100
    assert index["b200"] == dict.fromkeys(index["b200"], "default")  # no measured Blackwell
    on_disk = yaml.safe_load((CALIBRATION_DIR / "index.yaml").read_text())
    assert on_disk == index


# ------------------------------------------------------------------ instances
def test_runs_use_the_committed_calibration_by_default_and_none_turns_it_off(tmp_path) -> None:
    from simulator.runner import Simulation

    calibrated = Simulation(build_experiment(tmp_path, name="a.yaml")).cluster.instances[0].cost_model
    plain = Simulation(build_experiment(tmp_path, name="b.yaml", perf={"calibration": "none"})).cluster.instances[0]
    fitted = COMMITTED["h100-sxm"]
    assert calibrated.roofline.eff.gemm_compute == fitted.curves["gemm_compute"]
    assert calibrated.host.per_prefill_step_s > 0  # the fitted serving overhead
    assert plain.cost_model.roofline.eff == Efficiencies() and plain.cost_model.host == HostOverhead()


def test_overrides_replace_the_fitted_values(tmp_path) -> None:
    from simulator.runner import Simulation

    experiment = build_experiment(tmp_path, perf={"efficiencies": {"gemm_compute": 0.5},
                                                  "host_overhead_per_step_s": 0.002})
    cost = Simulation(experiment).cluster.instances[0].cost_model
    assert cost.roofline.eff.gemm_compute == 0.5 and cost.host.per_step_s == 0.002


def test_a_missing_calibration_path_is_a_one_line_config_error(tmp_path) -> None:
    from simulator.runner import Simulation

    with pytest.raises(ConfigError, match=r"perf\.calibration: .*not found") as err:
        Simulation(build_experiment(tmp_path, perf={"calibration": "nowhere/"}))
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ power cap
def test_a_power_cap_slows_prompts_and_leaves_decodes_nearly_alone() -> None:
    gpu = DEFAULT_CATALOG.get("gpu", "h100-sxm")
    model = DEFAULT_CATALOG.get("model", "llama-3.1-8b")
    resolved = resolve(gpu, COMMITTED)
    free = instance_perf(model, gpu, 1, 1, None, None, resolved)
    capped = instance_perf(model, gpu, 1, 1, None, None, resolved, power_cap_fraction=0.7)
    prompt = StepShape.for_sequence(4096, 0, samples=True)
    decode = StepShape(64, 64, 64, 64 * 1001.0, 64 * 1001)
    assert capped.compute_scale == capped_compute_scale(gpu, 0.7, COMMITTED["h100-sxm"].power_exponent) < 1
    assert capped.cost.step_time_s(prompt) / free.cost.step_time_s(prompt) > 1.2
    assert capped.cost.step_time_s(decode) / free.cost.step_time_s(decode) < 1.02


def test_capped_power_never_exceeds_the_cap() -> None:
    gpu = DEFAULT_CATALOG.get("gpu", "h100-sxm")
    power = PowerModel(gpu, 1, 500e12, 3e12, power_cap_w=0.7 * gpu.tdp_w)
    assert power.busy_energy_j(1.0, 500e12, 0.0) == pytest.approx(0.7 * gpu.tdp_w)
    assert power.busy_energy_j(1.0, 0.0, 3e12 * 0.5) < 0.7 * gpu.tdp_w  # a decode stays below it


@needs_data
def test_the_modelled_power_cap_matches_splitwises_capped_h100_rows() -> None:
    from simulator.perf.fidelity import fidelity
    from simulator.perf.measurements import read_measurements

    data = read_measurements(DATA / "splitwise_sim")
    records = fidelity(data, COMMITTED).records
    capped = records[(records["gpu"] == "h100-sxm@cap70") & records["excluded"].isna()]
    error = (capped["predicted_ms"] - capped["measured_ms"]).abs() / capped["measured_ms"]
    assert error[capped["op"] == "prompt"].mean() < 0.10
    assert error[capped["op"] == "token"].mean() < 0.05
