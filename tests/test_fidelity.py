"""``servesim fidelity`` and ``servesim calibrate`` on small hand-written measurement folders,
bad files, and the acceptance numbers on ../shared/data (skipped when it is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.cli import main
from simulator.perf.calibration import CALIBRATION_DIR, load_calibrations
from simulator.perf.fidelity import RECORD_FIELDS, breakdown, fidelity
from simulator.perf.measurements import read_measurements

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")
VIDUR_OPS = ["attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj", "input_layernorm", "add"]


# ------------------------------------------------------------------ small folders
def _stats(frame: pd.DataFrame, op: str, values_ms: np.ndarray) -> None:
    for stat in ("min", "max", "mean", "median"):
        frame[f"time_stats.{op}.{stat}"] = values_ms
    frame[f"time_stats.{op}.std"] = 0.0


def write_vidur_mlp(folder: Path, scale: float = 1.0) -> Path:
    """An mlp.csv for a model that is not in the catalog (geometry from the columns)."""
    rows = [(tokens, tp) for tp in (1, 2) for tokens in (1, 64, 512, 2048)]
    frame = pd.DataFrame({"n_head": 16, "n_kv_head": 4, "n_embd": 2048, "n_expanded_embd": 5632,
                          "vocab_size": 32000, "use_gated_mlp": True,
                          "num_tokens": [r[0] for r in rows], "num_tensor_parallel_workers": [r[1] for r in rows]})
    tokens = frame["num_tokens"].to_numpy()
    for i, op in enumerate(VIDUR_OPS):
        _stats(frame, op, scale * (0.005 + 1e-5 * (i + 1) * tokens))
    path = folder / "h100" / "acme" / "Tiny-1B" / "mlp.csv"
    path.parent.mkdir(parents=True)
    frame.to_csv(path, index=False)
    return path


def write_network(folder: Path) -> Path:
    sizes = np.array([2048, 65536, 1 << 20, 1 << 24])
    frame = pd.DataFrame({"rank": 0, "num_workers": 4, "size": sizes, "collective": "all_reduce",
                          "devices_per_node": 4, "max_devices_per_node": 8})
    _stats(frame, "all_reduce", 0.02 + sizes / 2e8)
    path = folder / "network" / "h100_dgx" / "all_reduce.csv"
    path.parent.mkdir(parents=True)
    frame.to_csv(path, index=False)
    return path


def write_splitwise(folder: Path) -> Path:
    frame = pd.DataFrame({"model": "llama2-70b", "hardware": ["h100-80gb", "h100-80gb-pcap"],
                          "prompt_size": 512, "batch_size": 1, "token_size": 128, "peak_power": 0.0,
                          "average_power": 0.0, "prompt_time": [60.0, 78.0], "token_time": [29.0, 29.0],
                          "e2e_time": [3800.0, 3810.0], "tensor_parallel": 4})
    path = folder / "splitwise_sim" / "perf_model.csv"
    path.parent.mkdir(parents=True)
    frame.to_csv(path, index=False)
    return path


def write_layers(folder: Path, column: str = "latency(ns)") -> Path:
    frame = pd.DataFrame({"layer_name": ["q_proj", "attn", "input_layernorm"] * 2, "input": [16] * 3 + [256] * 3,
                          "kv_cache": 0, "tp_size": 1, column: [20000, 9000, 20000, 30000, 15000, 40000]})
    path = folder / "llmservingsim" / "profiler_v0_H100" / "meta-llama" / "Llama-3.1-8B" / "tp1" / "layers.csv"
    path.parent.mkdir(parents=True)
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "measurements"
    write_vidur_mlp(root)
    write_network(root)
    write_splitwise(root)
    write_layers(root)
    return root


def test_fidelity_json_has_one_record_per_row_and_operator(folder, tmp_path, capsys) -> None:
    out = tmp_path / "fidelity.json"
    assert main(["fidelity", "--measurements", str(folder), "--json", str(out), "--plot",
                 str(tmp_path / "scatter.png")]) == 0
    payload = json.loads(out.read_text())
    records = pd.DataFrame(payload["records"])
    assert list(payload["records"][0]) == RECORD_FIELDS
    counts = records.groupby("source").size().to_dict()
    # 8 Vidur rows x 6 ops; 4 network rows; 2 Splitwise rows x (prompt, token); 6 layer rows
    assert counts == {"vidur": 8 * 6 + 4, "splitwise": 4, "llmservingsim": 6}
    vidur = records[(records["source"] == "vidur") & (records["op"] == "add")]
    assert set(vidur["model"]) == {"Tiny-1B"} and vidur["batch_size"].isna().all()  # null, not 0
    network = records[records["op"] == "all_reduce"]
    assert network["model"].isna().all() and (network["tp"] == 4).all() and network["size_bytes"].notna().all()
    assert set(records.loc[records["source"] == "splitwise", "gpu"]) == {"h100-sxm", "h100-sxm@cap70"}
    assert (records["predicted_ms"] > 0).all()
    summary = pd.DataFrame(payload["summary"])
    assert {"source", "gpu", "op", "mape"} <= set(summary.columns)
    assert ((summary["source"] == "vidur") & (summary["op"] == "layer")).any()
    assert (tmp_path / "scatter.png").stat().st_size > 0
    assert "MAPE" in capsys.readouterr().out


def test_a_model_outside_the_catalog_without_geometry_is_skipped_with_a_note(tmp_path, capsys) -> None:
    root = tmp_path / "m"
    write_layers(root)
    (root / "llmservingsim" / "profiler_v0_H100" / "meta-llama" / "Llama-3.1-8B").rename(
        root / "llmservingsim" / "profiler_v0_H100" / "meta-llama" / "Unknown-9B")
    write_vidur_mlp(root)
    assert main(["fidelity", "--measurements", str(root), "--no-plot"]) == 0
    assert "skipped llmservingsim/profiler_v0_H100/meta-llama/Unknown-9B/tp1/layers.csv" in capsys.readouterr().out


# ------------------------------------------------------------------ bad files
def _drop_column(path: Path, column: str) -> None:
    pd.read_csv(path).drop(columns=[column]).to_csv(path, index=False)


def _times_in_ns(path: Path) -> None:
    frame = pd.read_csv(path)
    for column in [c for c in frame.columns if c.startswith("time_stats.")]:
        frame[column] *= 1e6
    frame.to_csv(path, index=False)


@pytest.mark.parametrize("damage, expected", [
    (lambda root: _drop_column(write_vidur_mlp(root), "num_tokens"), "missing column(s) num_tokens"),
    (lambda root: _times_in_ns(write_vidur_mlp(root)), "implausible"),
    (lambda root: write_vidur_mlp(root).write_text(""), "empty file"),
    (lambda root: write_splitwise(root).write_text("model,hardware\n"), "missing column"),
    (lambda root: write_layers(root, column="latency(ms)"), "missing column latency(ns)"),
    (lambda root: pd.read_csv(write_network(root)).assign(size=lambda f: f["size"] / 2**20).to_csv(
        root / "network" / "h100_dgx" / "all_reduce.csv", index=False), "expected bytes"),
])
def test_a_bad_measurement_file_fails_with_one_line_naming_it(tmp_path, capsys, damage, expected) -> None:
    root = tmp_path / "m"
    root.mkdir()
    damage(root)
    assert main(["fidelity", "--measurements", str(root), "--no-plot"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expected in err and str(root) in err


def test_calibrate_without_a_data_folder_fails_with_one_line(tmp_path, capsys) -> None:
    assert main(["calibrate", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "absent" in err


def test_calibrate_on_a_small_folder_writes_files_that_read_back(tmp_path) -> None:
    from simulator.perf.calibration_io import calibration_dict, read_calibration

    root = tmp_path / "m"
    write_vidur_mlp(root)
    write_network(root)
    out = tmp_path / "out"
    assert main(["calibrate", "--data", str(root), "--out", str(out)]) == 0
    written = read_calibration(out / "h100-sxm.yaml")
    assert written.curves and written.links and (out / "index.yaml").exists()
    assert calibration_dict(read_calibration(out / "h100-sxm.yaml")) == calibration_dict(written)


# ------------------------------------------------------------------ acceptance on the public data
@pytest.fixture(scope="module")
def public() -> pd.DataFrame:
    return fidelity(read_measurements(DATA), load_calibrations(CALIBRATION_DIR))


@needs_data
def test_vidur_per_layer_mape_is_at_most_10_percent_per_gpu(public) -> None:
    layers = public.summary[(public.summary["source"] == "vidur") & (public.summary["op"] == "layer")]
    assert set(layers["gpu"]) == {"a100-80gb", "a40", "h100-sxm"}
    assert (layers["mape"] <= 0.10).all(), layers


@needs_data
def test_leave_one_model_out_per_layer_mape_is_at_most_15_percent() -> None:
    for gpu, calibration in load_calibrations(CALIBRATION_DIR).items():
        cv = calibration.report.get("operators", {}).get("leave_one_model_out", {})
        assert all(value <= 0.15 for value in cv.values()), (gpu, cv)


@needs_data
def test_splitwise_llama_2_70b_mape_is_at_most_10_percent(public) -> None:
    table = breakdown(public.records, ("splitwise",), ["gpu", "model", "tp", "op"])
    llama = table[(table["model"] == "llama-2-70b") & table["gpu"].isin(["a100-80gb", "h100-sxm"])]
    assert len(llama) == 2 * 3 * 2 and (llama["mape"] <= 0.10).all(), llama  # GPUs x TP 2/4/8 x phases


@needs_data
def test_all_reduce_and_send_recv_mape_is_at_most_15_percent(public) -> None:
    table = breakdown(public.records, ("vidur",), ["op"])
    network = table[table["op"].isin(["all_reduce", "send_recv"])]
    assert len(network) == 2 and (network["mape"] <= 0.15).all(), network
