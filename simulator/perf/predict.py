"""The roofline's prediction of each measured quantity: operators, collectives, whole iterations.

Every measured row is mapped to the roofline operator that models it
(``target``), with the row's own model geometry and tensor-parallel degree, so
calibration and fidelity time exactly what the simulator times. Costs (FLOPs,
bytes, sizes) are computed once per table; times then follow for any set of
efficiencies, which is what the fit iterates over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from simulator.hardware import DEFAULT_CATALOG, LinkProfile, ModelSpec
from simulator.perf.efficiency import Efficiencies
from simulator.perf.measurements import GEOMETRY_COLUMNS
from simulator.perf.roofline import OperatorCost, Roofline, gemm
from simulator.perf.shape import StepShape

# Network profile folder -> (intra-node link, NVLink domain, host link, inter-node link), from the node
# profiles dgx-a100, dgx-h100, azure-nc-a100-v4 and azure-nc-h100-v5. The A40 pairs measured about 4 GB/s
# at 64 MiB, far below their NVLink bridge, so they are timed over PCIe 4.
NET_LINKS = {
    "a100_dgx": ("nvlink3", 8, "pcie4-x16", "ib-hdr"),
    "h100_dgx": ("nvlink4", 8, "pcie5-x16", "ib-ndr"),
    "a100_pairwise_nvlink": ("nvlink-bridge-a100", 2, "pcie4-x16", "azure-accelnet-80"),
    "h100_pairwise_nvlink": ("nvlink-bridge-h100-nvl", 2, "pcie5-x16", "azure-accelnet-80"),
    "a40_pairwise_nvlink": ("pcie4-x16", 2, "pcie4-x16", "azure-accelnet-80"),
}


# More than the L2 cache of the GPUs measured here (A100 40 MB, H100 50 MB).
L2_BYTES = 2.0 ** 26
# Margin over peak before a time counts as impossible: timer resolution (Vidur rounds to 1 us) and boost clocks.
PEAK_TOLERANCE = 1.1


@dataclass
class OperatorCosts:
    """Per measured row: the operator's class and name, its FLOPs and bytes, and the GPU's peaks."""

    op_class: np.ndarray
    name: np.ndarray
    flops: np.ndarray
    hbm_bytes: np.ndarray
    peak_flops: np.ndarray
    peak_bytes_per_s: np.ndarray


def geometry_model(key: tuple, name: str = "measured") -> ModelSpec:
    """A one-layer ``ModelSpec`` from a row's geometry columns (fp16, as the profiles ran)."""
    values = dict(zip(GEOMETRY_COLUMNS, key))
    spec = {k: int(values[k]) for k in GEOMETRY_COLUMNS if k != "gated_mlp"}
    spec.update(gated_mlp=bool(values["gated_mlp"]), name=name, num_layers=1, max_context_tokens=1 << 20,
                dtype="fp16")
    spec["sources"] = {k: "measurement file columns" for k in spec if k not in ("name", "gated_mlp", "dtype")}
    return ModelSpec.model_validate(spec)


def operator_costs(table: pd.DataFrame) -> OperatorCosts:
    """FLOPs and bytes of every row of an operator table, per GPU, as the roofline counts them."""
    n = len(table)
    out = OperatorCosts(np.empty(n, dtype=object), np.empty(n, dtype=object), np.zeros(n), np.zeros(n),
                        np.zeros(n), np.zeros(n))
    keys = ["gpu", "tp"] + GEOMETRY_COLUMNS
    for key, group in table.groupby(keys, sort=True):
        gpu = DEFAULT_CATALOG.get("gpu", key[0])
        roofline = Roofline(geometry_model(key[2:]), gpu, int(key[1]), 1, None, None, Efficiencies())
        for target, rows in group.groupby("target", sort=True):
            op = target_operator(roofline, target, rows)
            index = rows.index.to_numpy()
            out.op_class[index] = op.op_class
            out.name[index] = op.name
            out.flops[index] = np.broadcast_to(op.flops, len(rows))
            out.hbm_bytes[index] = np.broadcast_to(op.hbm_bytes, len(rows))
            out.peak_flops[index] = roofline.peak_flops
            out.peak_bytes_per_s[index] = roofline.hbm_bytes_per_s
    return out


def target_operator(roofline: Roofline, target: str, rows: pd.DataFrame) -> OperatorCost:
    """The roofline operator named ``target`` for the rows' token counts (arrays)."""
    tokens = rows["num_tokens"].to_numpy(dtype=float)
    if target.startswith("attention_"):
        return roofline.attention(_attention_shape(target, rows))
    shape = StepShape(tokens, tokens, tokens, tokens, tokens)
    special = _SHAPED_GEMMS.get(target)
    if special is not None:
        return special(roofline, tokens)
    for op in roofline.layer_operators(shape) + roofline.step_operators(shape):
        if op.name == target:
            return op
    raise KeyError(f"no roofline operator for target {target}")


def _attention_shape(target: str, rows: pd.DataFrame) -> StepShape:
    tokens = rows["num_tokens"].to_numpy(dtype=float)
    batch = np.nan_to_num(rows["batch_size"].to_numpy(dtype=float), nan=1.0)
    cached = np.nan_to_num(rows["context_tokens"].to_numpy(dtype=float))
    if target == "attention_decode":
        return StepShape(batch, batch, batch, batch * (cached + 1), batch * (cached + 1))
    chunk = tokens / batch
    return StepShape(tokens, batch, batch, batch * (chunk * cached + chunk * (chunk + 1) / 2),
                     batch * (cached + chunk))


def _gemm_shape(k: Callable[[ModelSpec, int], float],
                n: Callable[[ModelSpec, int], float]) -> Callable[[Roofline, np.ndarray], OperatorCost]:
    """A (tokens x k) @ (k x n) product with k and n from the model and TP degree."""
    def build(roofline: Roofline, tokens: np.ndarray) -> OperatorCost:
        m = roofline.model
        return gemm("proj", tokens, k(m, roofline.tp), n(m, roofline.tp), m.dtype_bytes)
    return build


def _activation_only(roofline: Roofline, tokens: np.ndarray) -> OperatorCost:
    """HuggingFace's ``act_fn``: the activation of the gate output alone (read and write it once)."""
    m = roofline.model
    width = m.ffn_hidden_size / roofline.tp
    return OperatorCost("mlp_act", "elementwise", 8 * tokens * width, m.dtype_bytes * 2 * tokens * width)


def _hidden(m: ModelSpec, t: int) -> float:
    return m.hidden_size


def _ffn(m: ModelSpec, t: int) -> float:
    return m.ffn_hidden_size / t


# Operators that HuggingFace layers run separately (LLMServingSim) and vLLM fuses. LLMServingSim times
# one Mixtral expert on all input tokens (its w1 at 1 token takes the time of one expert's weights).
_SHAPED_GEMMS: dict[str, Callable[[Roofline, np.ndarray], OperatorCost]] = {
    "q_proj": _gemm_shape(_hidden, lambda m, t: m.num_attention_heads * m.head_dim / t),
    "k_proj": _gemm_shape(_hidden, lambda m, t: m.num_kv_heads * m.head_dim / t),
    "v_proj": _gemm_shape(_hidden, lambda m, t: m.num_kv_heads * m.head_dim / t),
    "gate_proj": _gemm_shape(_hidden, _ffn),
    "up_proj": _gemm_shape(_hidden, _ffn),
    "down_proj": _gemm_shape(_ffn, _hidden),
    "lm_head_all": _gemm_shape(_hidden, lambda m, t: m.vocab_size / t),
    "act_only": _activation_only,
}


def physically_possible(costs: OperatorCosts, measured_ms: np.ndarray) -> np.ndarray:
    """Rows whose measured time leaves the roofline's FLOPs and bytes within the GPU's peak rates.

    A row that implies more than peak FLOP/s, or more than peak HBM bandwidth
    for more bytes than any L2 cache could have held, was not timed as
    described (LLMServingSim's H100 decode profile at batch >= 64 implies up to
    7x the HBM bandwidth): it is left out of fits and of the MAPE. Smaller
    operators may beat HBM bandwidth legitimately, their inputs still in L2.
    """
    allowed_s = measured_ms / 1e3 * PEAK_TOLERANCE
    too_fast_memory = (costs.hbm_bytes > costs.peak_bytes_per_s * allowed_s) & (costs.hbm_bytes > L2_BYTES)
    return (measured_ms > 0) & (costs.flops <= costs.peak_flops * allowed_s) & ~too_fast_memory


def operator_times_ms(costs: OperatorCosts, efficiencies: Callable[[str], Efficiencies],
                      gpus: np.ndarray) -> np.ndarray:
    """Roofline time of each row, in ms, with ``efficiencies(gpu)`` (same formula as ``Roofline.op_time_s``)."""
    out = np.zeros(len(gpus))
    for gpu in np.unique(gpus):
        eff = efficiencies(gpu)
        mine = gpus == gpu
        for op_class, name in sorted(set(zip(costs.op_class[mine], costs.name[mine]))):
            rows = mine & (costs.op_class == op_class) & (costs.name == name)
            flops, hbm = costs.flops[rows], costs.hbm_bytes[rows]
            compute = flops / (costs.peak_flops[rows] * eff.compute(op_class, flops))
            memory = hbm / (costs.peak_bytes_per_s[rows] * eff.memory(op_class, hbm, name))
            out[rows] = (np.maximum(compute, memory) + eff.kernel_launch_s) * 1e3
    return out


# ---------------------------------------------------------------- network
@dataclass
class NetworkCosts:
    """Per network row: the link it crosses, the GPUs involved and the bytes each GPU moves."""

    link: np.ndarray
    workers: np.ndarray
    size: np.ndarray
    wire_bytes: np.ndarray
    link_bytes_per_s: np.ndarray


def network_link(net: str, workers: int, per_node: int) -> str:
    """The link a collective of ``workers`` GPUs, ``per_node`` to a node, is limited by."""
    intra, domain, host, inter = NET_LINKS[net]
    if workers > per_node:
        return inter
    return intra if workers <= domain else host


def network_costs(table: pd.DataFrame) -> NetworkCosts:
    workers = table["num_workers"].to_numpy(dtype=float)
    links = np.array([network_link(n, int(w), int(d)) for n, w, d in
                      zip(table["net"], workers, table["devices_per_node"])], dtype=object)
    size = table["size_bytes"].to_numpy(dtype=float)
    ring = np.where(table["op"].to_numpy() == "all_reduce", 2 * (workers - 1) / workers, 1.0)
    bandwidth = np.array([link_profile(name).bytes_per_s for name in links])
    return NetworkCosts(links, workers, size, ring * size, bandwidth)


def link_profile(name: str) -> LinkProfile:
    return DEFAULT_CATALOG.get("link", name)


def network_times_ms(costs: NetworkCosts, ops: np.ndarray, curve: Callable[[str, str, int], Any]) -> np.ndarray:
    """Time of each row, in ms: ``latency + wire bytes / (link bandwidth x eta(size))``.

    ``curve(op, link, workers)`` returns ``(latency_s, efficiency)`` for a group of rows.
    """
    out = np.full(len(ops), np.nan)
    for key in sorted(set(zip(ops, costs.link, costs.workers.astype(int)))):
        rows = (ops == key[0]) & (costs.link == key[1]) & (costs.workers == key[2])
        fitted = curve(*key)
        if fitted is None:
            continue
        latency, eta = fitted
        size = costs.size[rows]
        out[rows] = (latency + costs.wire_bytes[rows] / (costs.link_bytes_per_s[rows] * _eval(eta, size))) * 1e3
    return out


def _eval(eta: Any, size: np.ndarray) -> Any:
    return eta(size) if callable(eta) else eta


# ------------------------------------------------------------- iterations
def iteration_shape(op: str, batch: float, prompt: float, output: float) -> StepShape:
    """The step(s) a whole-iteration row measured: one prefill, or every decode step (arrays)."""
    if op == "prompt":
        return StepShape(batch * prompt, batch, batch, batch * prompt * (prompt + 1) / 2, batch * prompt)
    cached = prompt + np.arange(1, max(int(output), 2), dtype=float) - 1  # before decode step j
    ones = np.full_like(cached, batch)
    return StepShape(ones, ones, ones, batch * (cached + 1), batch * (cached + 1))


def iteration_node(gpu: str):
    """The catalog node (links) a GPU's whole-iteration measurements ran on: the first that holds it."""
    for name in DEFAULT_CATALOG.names("node"):
        node = DEFAULT_CATALOG.get("node", name)
        if node.gpu == gpu:
            return node
    return None


def iteration_links(gpu: str, tp: int) -> tuple[LinkProfile | None, LinkProfile | None]:
    node = iteration_node(gpu)
    if node is None or tp == 1:
        return None, None
    domain = node.nvlink_domain_gpus or node.gpus_per_node
    name = node.intra_node_link if tp <= domain else node.host_link if tp <= node.gpus_per_node \
        else node.inter_node_link
    return link_profile(name), None


def iteration_exclusions(table: pd.DataFrame) -> np.ndarray:
    """Why a whole-iteration row cannot be compared ('' when it can).

    A configuration whose KV cache does not fit (0.9 of GPU memory minus the
    weights, as the simulator counts it) ran with preemption or failed; a
    prompt batch measured faster than half of it is a broken measurement.
    """
    reasons = np.full(len(table), "", dtype=object)
    for i, row in enumerate(table.itertuples()):
        gpu, model = DEFAULT_CATALOG.get("gpu", row.gpu), DEFAULT_CATALOG.get("model", row.model)
        usable = 0.9 * gpu.memory_bytes * row.tp - model.total_params * model.dtype_bytes
        if row.batch_size * (row.prompt_tokens + row.output_tokens) * model.kv_bytes_per_token > usable:
            reasons[i] = "KV cache does not fit"
    keys = ["source", "gpu", "model", "tp", "op", "prompt_tokens", "output_tokens", "power_cap_fraction"]
    means = table.groupby(keys + ["batch_size"], dropna=False)["measured_ms"].mean().reset_index()
    means = means.sort_values(keys + ["batch_size"], kind="stable")
    means["smaller"] = means.groupby(keys, dropna=False)["measured_ms"].shift(1)
    merged = table[keys + ["batch_size", "measured_ms"]].merge(means[keys + ["batch_size", "smaller"]],
                                                              on=keys + ["batch_size"], how="left")
    broken = (merged["measured_ms"] < 0.5 * merged["smaller"]).to_numpy() & (reasons == "")
    reasons[broken] = "faster than half the batch"
    return reasons
