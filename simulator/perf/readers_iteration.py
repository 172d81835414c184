"""Readers for whole-iteration timings: Splitwise's ``perf_model.csv`` and DistServe's fitted profiles.

Splitwise (Patel et al., ISCA 2024) measured vLLM on DGX-A100 and DGX-H100:
``prompt_time`` (ms, the prefill step of ``batch_size`` prompts of
``prompt_size`` tokens) and ``token_time`` (ms, the mean decode iteration over
``token_size`` output tokens). Its ``h100-80gb-pcap`` rows are the H100 with
its power capped at 70% of TDP (the paper's power-capping experiment).

DistServe (Zhong et al., OSDI 2024) publishes, instead of raw points,
coefficients fitted to A100 measurements: ``prefill_ms = a + b L + c L^2``
for ``L`` prompt tokens and ``decode_ms = a + b sum(context) + c batch``. We
evaluate them on a grid inside the range they were fitted on (prompts
128-2048 tokens; batches 1-256 of 256-1024-token contexts), and label the
rows ``distserve-<engine>`` so that they are never mistaken for raw data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import ProfileError, located
from simulator.perf.measurements import (GPU_ALIASES, ITERATION_COLUMNS, SkipFile, catalog_model,
                                         check_time_unit, frame, numeric, read_csv)

SPLITWISE_COLUMNS = ["model", "hardware", "tensor_parallel", "prompt_size", "batch_size", "token_size",
                     "prompt_time", "token_time"]
# Splitwise hardware names -> (catalog GPU, power cap as a fraction of TDP).
SPLITWISE_HARDWARE = {"a100-80gb": ("a100-80gb", None), "h100-80gb": ("h100-sxm", None),
                      "h100-80gb-pcap": ("h100-sxm", 0.7)}
DISTSERVE_PROMPTS = (128, 256, 512, 1024, 2048)
DISTSERVE_BATCHES = (1, 4, 16, 64, 128, 256)
DISTSERVE_CONTEXTS = (256, 1024)


def read_splitwise(path: Path, rel: str) -> tuple[str, pd.DataFrame]:
    """Two rows per measured configuration: its prompt time and its token time."""
    data = read_csv(path, SPLITWISE_COLUMNS)
    hardware = data["hardware"].astype(str)
    unknown = sorted(set(hardware) - set(SPLITWISE_HARDWARE))
    if unknown:
        raise ProfileError(located(path, "hardware", f"unknown hardware {', '.join(unknown)} "
                                                     f"(known: {', '.join(SPLITWISE_HARDWARE)})"))
    models = {name: catalog_model(name) for name in data["model"].astype(str).unique()}
    keep = data["model"].astype(str).map(lambda n: models[n] is not None).to_numpy()
    if not keep.any():
        raise SkipFile(f"none of the models {', '.join(models)} is in the catalog")
    data = data[keep].reset_index(drop=True)
    frames = []
    for phase, column, low in (("prompt", "prompt_time", 1.0), ("token", "token_time", 1.0)):
        times = numeric(data, column, path)
        check_time_unit(times, path, column, low, 1e6)
        frames.append(frame(ITERATION_COLUMNS, source="splitwise", file=rel,
                            gpu=data["hardware"].map(lambda h: SPLITWISE_HARDWARE[h][0]).to_numpy(),
                            model=data["model"].map(lambda n: models[n].name).to_numpy(),
                            tp=numeric(data, "tensor_parallel", path), op=phase,
                            batch_size=numeric(data, "batch_size", path),
                            prompt_tokens=numeric(data, "prompt_size", path),
                            output_tokens=numeric(data, "token_size", path),
                            power_cap_fraction=data["hardware"].map(
                                lambda h: SPLITWISE_HARDWARE[h][1]).to_numpy(dtype=float),
                            engine="vllm", measured_ms=times))
    return "iterations", pd.concat(frames, ignore_index=True)


def read_distserve(path: Path, rel: str) -> tuple[str, pd.DataFrame]:
    """Prefill and decode iteration times from DistServe's fitted coefficients, on a grid."""
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(located(path, "", f"cannot parse as JSON ({exc.__class__.__name__})")) from None
    if not isinstance(profile, dict) or not profile:
        raise ProfileError(located(path, "", "expected a non-empty mapping model -> tp -> coefficients"))
    # profiler-a100-80g.vllm.json -> GPU a100-80g, engine vllm
    stem = path.name.removeprefix("profiler-").removesuffix(".json")
    gpu_token, _, engine = stem.partition(".")
    if gpu_token.lower() not in GPU_ALIASES:
        raise SkipFile(f"unknown GPU '{gpu_token}' in the file name")
    rows = []
    for name, by_tp in profile.items():
        model = catalog_model(str(name))
        if model is None:
            continue
        for tp, coefficients in _items(by_tp, path, str(name)):
            rows += _distserve_rows(coefficients, path, f"{name}.{tp}", model.name, int(tp))
    if not rows:
        raise SkipFile("no model of the file is in the catalog")
    table = pd.DataFrame(rows, columns=["model", "tp", "op", "batch_size", "prompt_tokens", "output_tokens",
                                        "measured_ms"])
    check_time_unit(table["measured_ms"].to_numpy(), path, "prefill", 1.0, 1e6)
    table = frame(ITERATION_COLUMNS, source=f"distserve-{engine or 'distserve'}", file=rel,
                  gpu=GPU_ALIASES[gpu_token.lower()], power_cap_fraction=np.nan, engine=engine or "distserve",
                  **{c: table[c].to_numpy() for c in table.columns})
    return "iterations", table


def _items(by_tp: object, path: Path, where: str):
    if not isinstance(by_tp, dict):
        raise ProfileError(located(path, where, "expected a mapping tp -> coefficients"))
    for tp, coefficients in by_tp.items():
        if not str(tp).isdigit():
            raise ProfileError(located(path, f"{where}.{tp}", "tensor-parallel degree must be an integer"))
        yield tp, coefficients


def _distserve_rows(c: object, path: Path, where: str, model: str, tp: int) -> list[tuple]:
    try:
        prefill = [float(x) for x in c["prefill"]]
        small = [float(x) for x in c["decoding_smallbs"]]
        large = [float(x) for x in c["decoding_largebs"]]
        threshold = float(c["decoding_large_small_bs_threshold"])
    except (TypeError, KeyError, ValueError):
        raise ProfileError(located(path, where, "expected prefill, decoding_smallbs, decoding_largebs "
                                                "(three numbers each) and decoding_large_small_bs_threshold"))
    if len(prefill) != 3 or len(small) != 3 or len(large) != 3:
        raise ProfileError(located(path, where, "each coefficient list must hold three numbers"))
    rows = [(model, tp, "prompt", 1, n, 1, prefill[0] + prefill[1] * n + prefill[2] * n * n)
            for n in DISTSERVE_PROMPTS]
    for batch in DISTSERVE_BATCHES:
        a, b, k = small if batch <= threshold else large
        rows += [(model, tp, "token", batch, ctx, 2, a + b * batch * ctx + k * batch) for ctx in DISTSERVE_CONTEXTS]
    return rows
