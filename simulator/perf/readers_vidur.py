"""Readers for Vidur's profiles: per-operator ``mlp.csv``, ``attention.csv`` and network CSVs.

Vidur (Agrawal et al., MLSys 2024) times each operator of one transformer
layer with sarathi-serve's (vLLM-derived) kernels and stores
``time_stats.<op>.{min,max,mean,median,std}`` in milliseconds. We use the
median, as Vidur's own predictor does. ``mlp.csv`` carries the model geometry
in its columns (``n_head, n_kv_head, n_embd, n_expanded_embd, vocab_size,
use_gated_mlp``), so any model's profile can be read without a catalog entry.
The attention profile's reshape ops are bookkeeping copies of about 1 us (at
the file's 1 us resolution) and are not read. Vidur's legacy ``cpu_overheads.csv``
(host CPU time per step) is not read either: the whole-iteration times the
serving overhead is fitted to (``simulator.perf.calibrate_serving``) include
that CPU time and the stack effects a CPU profile misses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import ProfileError, located
from simulator.perf.measurements import (GEOMETRY_COLUMNS, NETWORK_COLUMNS, OPERATOR_COLUMNS,
                                         SkipFile, check_time_unit, frame, gpu_from_path, numeric, read_csv)

# Vidur operator name -> the roofline operator that predicts it.
MLP_OPS = {"emb": "embedding", "input_layernorm": "input_norm", "attn_pre_proj": "qkv_proj",
           "attn_rope": "rope", "attn_post_proj": "o_proj", "post_attention_layernorm": "post_attention_norm",
           "mlp_up_proj": "mlp_up", "mlp_act": "mlp_act", "mlp_down_proj": "mlp_down", "add": "residual_add"}
MLP_GEOMETRY = ["n_head", "n_kv_head", "n_embd", "n_expanded_embd", "vocab_size", "use_gated_mlp",
                "num_tokens", "num_tensor_parallel_workers"]
ATTENTION_KEYS = ["n_embd", "n_q_head", "n_kv_head", "num_tensor_parallel_workers", "batch_size",
                  "prefill_chunk_size", "kv_cache_size", "is_prefill"]
# Network profile folders: the GPU they ran on. The pairwise-NVLink boxes are
# Azure NC A100 v4 (A100 PCIe) and an H100 NVL VM; see simulator/perf/predict.py for their links.
NET_GPUS = {"a100_dgx": "a100-80gb", "h100_dgx": "h100-sxm", "a100_pairwise_nvlink": "a100-80gb-pcie",
            "h100_pairwise_nvlink": "h100-nvl", "a40_pairwise_nvlink": "a40"}
# The median of a file's per-operator times lies between 0.1 us and 1 s (in ns it would be 1e3x larger).
OP_LOW_MS, OP_HIGH_MS = 1e-4, 1e3


def read_mlp(path: Path, rel: str) -> tuple[str, pd.DataFrame]:
    """Every non-attention operator of one layer, one row per measured row and operator."""
    data = read_csv(path, MLP_GEOMETRY)
    ops = [op for op in MLP_OPS if f"time_stats.{op}.median" in data.columns]
    if not ops:
        raise ProfileError(located(path, "", "no time_stats.<op>.median column for any Vidur operator"))
    gpu = gpu_from_path(path, rel)
    geometry = _mlp_geometry(data, path)
    model = Path(rel).parts[-2] if len(Path(rel).parts) >= 3 else geometry_label(geometry)
    tokens = numeric(data, "num_tokens", path)
    frames = []
    for op in ops:
        column = f"time_stats.{op}.median"
        times = numeric(data, column, path)
        frames.append(frame(OPERATOR_COLUMNS + GEOMETRY_COLUMNS, source="vidur", file=rel, gpu=gpu, model=model,
                            tp=numeric(data, "num_tensor_parallel_workers", path), op=op, target=MLP_OPS[op],
                            num_tokens=tokens, batch_size=np.nan, context_tokens=np.nan, measured_ms=times,
                            **geometry))
    table = pd.concat(frames, ignore_index=True)
    check_time_unit(table["measured_ms"].to_numpy(), path, "time_stats.*.median", OP_LOW_MS, OP_HIGH_MS)
    return "operators", table


def _mlp_geometry(data: pd.DataFrame, path: Path) -> dict[str, np.ndarray]:
    heads = numeric(data, "n_head", path)
    hidden = numeric(data, "n_embd", path)
    if (heads <= 0).any() or (hidden % heads != 0).any():
        raise ProfileError(located(path, "n_head", "n_embd must be a positive multiple of n_head"))
    gated = data["use_gated_mlp"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
    return {"hidden_size": hidden, "num_attention_heads": heads, "num_kv_heads": numeric(data, "n_kv_head", path),
            "head_dim": hidden / heads, "ffn_hidden_size": numeric(data, "n_expanded_embd", path),
            "vocab_size": numeric(data, "vocab_size", path), "gated_mlp": gated,
            "num_experts": 1, "experts_per_token": 1}


def read_attention(path: Path, rel: str) -> tuple[str, pd.DataFrame]:
    """Prefill and decode attention of one layer (Vidur format, also used by LLMServingSim)."""
    data = read_csv(path, ATTENTION_KEYS)
    for column in ("time_stats.attn_prefill.median", "time_stats.attn_decode.median"):
        if column not in data.columns:
            raise ProfileError(located(path, "", f"missing column {column}"))
    gpu = gpu_from_path(path, rel)
    prefill = data["is_prefill"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
    batch = numeric(data, "batch_size", path)
    chunk = numeric(data, "prefill_chunk_size", path)
    hidden, heads = numeric(data, "n_embd", path), numeric(data, "n_q_head", path)
    times = np.where(prefill, numeric(data, "time_stats.attn_prefill.median", path),
                     numeric(data, "time_stats.attn_decode.median", path))
    keep = np.isfinite(times)
    geometry = {"hidden_size": hidden, "num_attention_heads": heads, "num_kv_heads": numeric(data, "n_kv_head", path),
                "head_dim": hidden / heads,
                # Attention does not depend on these; placeholders keep the geometry complete.
                "ffn_hidden_size": 4 * hidden, "vocab_size": 32000, "gated_mlp": True,
                "num_experts": 1, "experts_per_token": 1}
    table = frame(OPERATOR_COLUMNS + GEOMETRY_COLUMNS, source=_attention_source(rel), file=rel, gpu=gpu,
                  model=_attention_model(rel, hidden, heads, geometry["num_kv_heads"]),
                  tp=numeric(data, "num_tensor_parallel_workers", path),
                  op=np.where(prefill, "attn_prefill", "attn_decode"),
                  target=np.where(prefill, "attention_prefill", "attention_decode"),
                  num_tokens=np.where(prefill, batch * chunk, batch), batch_size=batch,
                  context_tokens=numeric(data, "kv_cache_size", path), measured_ms=times, **geometry)
    table = table[keep].reset_index(drop=True)
    if table.empty:
        raise ProfileError(located(path, "", "no rows with an attention time"))
    check_time_unit(table["measured_ms"].to_numpy(), path, "time_stats.attn_*.median", OP_LOW_MS, OP_HIGH_MS)
    return "operators", table


def _attention_source(rel: str) -> str:
    return "llmservingsim" if "llmservingsim" in rel.lower() else "vidur"


def _attention_model(rel: str, hidden: np.ndarray, heads: np.ndarray, kv: np.ndarray) -> str:
    parts = Path(rel).parts
    # <org>/<model>/tp<N>/attention.csv names its model; Vidur's legacy file sits under the GPU folder.
    if len(parts) >= 4 and parts[-2].lower().startswith("tp") and parts[-2][2:].isdigit():
        return parts[-3]
    return geometry_label({"hidden_size": hidden, "num_attention_heads": heads, "num_kv_heads": kv})


def geometry_label(geometry: dict) -> str:
    """A name for a model known only by its shape, e.g. ``d8192-h64-kv8``."""
    first = {k: int(np.asarray(v).flat[0]) for k, v in geometry.items()
             if k in ("hidden_size", "num_attention_heads", "num_kv_heads")}
    return f"d{first['hidden_size']}-h{first['num_attention_heads']}-kv{first['num_kv_heads']}"


def read_network(path: Path, rel: str) -> tuple[str, pd.DataFrame]:
    """All-reduce or send/recv times by message size, workers and workers per node."""
    collective = path.stem
    column = f"time_stats.{collective}.median"
    data = read_csv(path, ["size", "num_workers", "devices_per_node", column])
    net = Path(rel).parts[-2] if len(Path(rel).parts) >= 2 else ""
    if net not in NET_GPUS:
        raise SkipFile(f"unknown network set-up '{net}' (known: {', '.join(NET_GPUS)})")
    times = numeric(data, column, path)
    check_time_unit(times, path, column, 1e-4, 1e4)
    sizes = numeric(data, "size", path)
    if np.median(sizes) < 1024:
        raise ProfileError(located(path, "size", "message sizes look like KiB or MiB; expected bytes"))
    table = frame(NETWORK_COLUMNS, source="vidur", file=rel, gpu=NET_GPUS[net], net=net, op=collective,
                  num_workers=numeric(data, "num_workers", path),
                  devices_per_node=numeric(data, "devices_per_node", path), size_bytes=sizes, measured_ms=times)
    return "network", table
