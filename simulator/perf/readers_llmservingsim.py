"""Reader for LLMServingSim's per-layer profiles (``<org>/<model>/tp<N>/layers.csv``).

LLMServingSim (CASYS KAIST) profiled HuggingFace-style layers on an H100 with
the PyTorch profiler: ``layer_name, input`` (tokens), ``kv_cache``,
``tp_size`` and ``latency(ns)`` in nanoseconds. Projections are separate
(q/k/v, gate/up), the LM head runs on every input token, a Mixtral expert
(``expert.w1/w2/w3``) is one expert run on all input tokens, and norms, RoPE
and the activation (SiLU alone) are unfused PyTorch kernels, several times slower than vLLM's
fused ones (so servesim, which models fused kernels, under-predicts them; the
fidelity table shows by how much). The files carry no geometry, so the model
must be in the catalog; other models are skipped with a note.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import ProfileError, located
from simulator.perf.measurements import (GEOMETRY_COLUMNS, OPERATOR_COLUMNS, SkipFile, catalog_model,
                                         check_time_unit, frame, gpu_from_path, numeric, read_csv)
from simulator.perf.readers_vidur import OP_HIGH_MS, OP_LOW_MS

# LLMServingSim layer -> the operator that predicts it (see simulator/perf/predict.py).
LAYER_TARGETS = {
    "embedding": "embedding", "input_layernorm": "input_norm", "q_proj": "q_proj", "k_proj": "k_proj",
    "v_proj": "v_proj", "rope": "rope", "attn": "attention_prefill", "o_proj": "o_proj",
    "post_layernorm": "post_attention_norm", "gate_proj": "gate_proj", "up_proj": "up_proj",
    "act_fn": "act_only", "down_proj": "down_proj", "final_layernorm": "final_norm", "lm_head": "lm_head_all",
    "gate": "router", "expert.w1": "gate_proj", "expert.w3": "up_proj", "expert.w2": "down_proj",
}
LATENCY = "latency(ns)"


def read_layers(path: Path, rel: str) -> tuple[str, pd.DataFrame]:
    """One row per measured layer, tokens and TP degree; times converted from ns to ms."""
    data = read_csv(path, ["layer_name", "input", "kv_cache", "tp_size"])
    if LATENCY not in data.columns:
        other = [c for c in data.columns if c.startswith("latency")]
        hint = f" (found {other[0]}; the format's unit is ns)" if other else ""
        raise ProfileError(located(path, "", f"missing column {LATENCY}{hint}"))
    parts = Path(rel).parts
    name = parts[-3] if len(parts) >= 3 else ""
    model = catalog_model(name)
    if model is None:
        raise SkipFile(f"model '{name}' is not in the catalog and the file carries no geometry")
    times = numeric(data, LATENCY, path) / 1e6
    check_time_unit(times, path, LATENCY, OP_LOW_MS, OP_HIGH_MS, unit="ns converted to ms")
    layers = data["layer_name"].astype(str)
    known = layers.isin(list(LAYER_TARGETS)).to_numpy()
    if not known.any():
        raise ProfileError(located(path, "layer_name", "no known layer names"))
    geometry = {"hidden_size": model.hidden_size, "num_attention_heads": model.num_attention_heads,
                "num_kv_heads": model.num_kv_heads, "head_dim": model.head_dim,
                "ffn_hidden_size": model.ffn_hidden_size, "vocab_size": model.vocab_size,
                "gated_mlp": model.gated_mlp, "num_experts": model.num_experts,
                "experts_per_token": model.experts_per_token}
    table = frame(OPERATOR_COLUMNS + GEOMETRY_COLUMNS, source="llmservingsim", file=rel,
                  gpu=gpu_from_path(path, rel), model=model.name, tp=numeric(data, "tp_size", path),
                  op=layers.to_numpy(), target=layers.map(LAYER_TARGETS).to_numpy(),
                  num_tokens=numeric(data, "input", path), batch_size=np.nan,
                  context_tokens=numeric(data, "kv_cache", path), measured_ms=times, **geometry)
    return "operators", table[known].reset_index(drop=True)
