"""Roofline timing of one engine step of a dense or MoE decoder on TP x PP GPUs.

Each operator of a layer is timed as
``max(FLOPs / (peak x eta_compute), bytes / (bandwidth x eta_memory)) + launch``,
with FLOPs and bytes counted per tensor-parallel shard. The layer's operators
are: QKV projection, attention (causal pairs for new tokens; KV bytes read),
output projection, MLP up (gate+up) and down projections (MoE: the experts the
batch activates), elementwise work (norms, RoPE, activation, residuals) and,
with TP > 1, two all-reduces of the hidden states. Per step come the LM head
for sampled rows and pipeline sends between stages. With PP the model keeps
one batch in flight, so a step's time is the sum over stages (exact latency,
pessimistic throughput; documented in the README).

All arithmetic works on floats or numpy arrays alike (see ``StepShape``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from simulator.hardware import GpuProfile, LinkProfile, ModelSpec
from simulator.perf.efficiency import Efficiencies
from simulator.perf.shape import StepShape


@dataclass(frozen=True, slots=True)
class OperatorCost:
    """FLOPs and HBM bytes of one operator on one GPU, and its class."""

    op_class: str
    flops: Any
    hbm_bytes: Any


class Roofline:
    """Times steps of ``model`` on ``tp`` x ``pp`` GPUs of one type.

    Args:
        model: the model architecture.
        gpu: the GPU type (peak FLOP/s for the model's dtype, HBM bandwidth).
        tp, pp: tensor- and pipeline-parallel degrees.
        tp_link: the link all-reduces cross (None when ``tp == 1``).
        pp_link: the link pipeline stages send over (None when ``pp == 1``).
        efficiencies: achieved fractions of peak per operator class.
    """

    def __init__(self, model: ModelSpec, gpu: GpuProfile, tp: int, pp: int,
                 tp_link: LinkProfile | None, pp_link: LinkProfile | None,
                 efficiencies: Efficiencies) -> None:
        self.model, self.gpu, self.tp, self.pp = model, gpu, tp, pp
        self.tp_link, self.pp_link, self.eff = tp_link, pp_link, efficiencies
        self.peak_flops = gpu.peak_flops(model.dtype)
        self.hbm_bytes_per_s = gpu.hbm_bytes_per_s

    # ----------------------------------------------------------- operator sizes
    def layer_operators(self, s: StepShape) -> list[OperatorCost]:
        """FLOPs and bytes of one layer's operators for batch shape ``s``, per GPU."""
        m, t, d = self.model, self.tp, self.model.dtype_bytes
        hidden, head_dim = m.hidden_size, m.head_dim
        q_out = m.num_attention_heads * head_dim
        kv_out = 2 * m.num_kv_heads * head_dim
        tokens = s.num_tokens
        ops = [
            _gemm(tokens, hidden, (q_out + kv_out) / t, d),
            OperatorCost("attention",
                         4 * s.attention_pairs * head_dim * m.num_attention_heads / t,
                         d * (s.kv_read_tokens * kv_out / t + tokens * (2 * q_out + kv_out) / t)),
            _gemm(tokens, q_out / t, hidden, d),
        ]
        ops.extend(self._mlp_operators(tokens))
        elementwise_bytes = d * tokens * (10 * hidden + 2 * (q_out + kv_out) / t
                                          + 3 * m.ffn_hidden_size * m.experts_per_token / t)
        ops.append(OperatorCost("elementwise", 8 * tokens * hidden, elementwise_bytes))
        return ops

    def _mlp_operators(self, tokens: Any) -> list[OperatorCost]:
        m, t, d = self.model, self.tp, self.model.dtype_bytes
        up_mats = 2 if m.gated_mlp else 1
        routed = tokens * m.experts_per_token
        if m.num_experts == 1:
            active = 1.0
        else:
            # Expected number of distinct experts hit by `tokens` tokens routed uniformly.
            miss = 1.0 - m.experts_per_token / m.num_experts
            active = m.num_experts * (1.0 - miss ** tokens)
        ffn = m.ffn_hidden_size / t
        up = OperatorCost("gemm", 2 * routed * m.hidden_size * ffn * up_mats,
                          d * (active * m.hidden_size * ffn * up_mats + routed * (m.hidden_size + ffn * up_mats)))
        down = OperatorCost("gemm", 2 * routed * ffn * m.hidden_size,
                            d * (active * ffn * m.hidden_size + routed * (ffn + m.hidden_size)))
        return [up, down]

    def lm_head(self, s: StepShape) -> OperatorCost:
        m, d = self.model, self.model.dtype_bytes
        vocab = m.vocab_size / self.tp
        sampled_any = s.num_sampled > 0
        return OperatorCost("gemm", 2 * s.num_sampled * m.hidden_size * vocab,
                            sampled_any * d * (m.hidden_size * vocab + s.num_sampled * (m.hidden_size + vocab)))

    # ----------------------------------------------------------------- timing
    def op_time_s(self, op: OperatorCost, maximum: Callable[[Any, Any], Any]) -> Any:
        compute = op.flops / (self.peak_flops * self.eff.compute(op.op_class, op.flops))
        memory = op.hbm_bytes / (self.hbm_bytes_per_s * self.eff.memory(op.op_class, op.hbm_bytes))
        return maximum(compute, memory) + self.eff.kernel_launch_s

    def all_reduce_time_s(self, message_bytes: Any) -> Any:
        """Ring all-reduce over ``tp`` GPUs: 2(t-1) latency hops and 2(t-1)/t of the bytes."""
        if self.tp == 1 or self.tp_link is None:
            return 0.0
        t, link = self.tp, self.tp_link
        bandwidth = link.bytes_per_s * self.eff.memory("collective")
        return 2 * (t - 1) * link.latency_s + 2 * (t - 1) / t * message_bytes / bandwidth

    def pipeline_send_time_s(self, tokens: Any) -> Any:
        if self.pp == 1 or self.pp_link is None:
            return 0.0
        message = tokens * self.model.hidden_size * self.model.dtype_bytes
        link = self.pp_link
        return (self.pp - 1) * (link.latency_s + message / (link.bytes_per_s * self.eff.memory("p2p")))

    def breakdown_s(self, s: StepShape) -> dict[str, Any]:
        """Seconds spent per operator class over the whole model for shape ``s``."""
        maximum = np.maximum if isinstance(s.num_tokens, np.ndarray) else max
        layers = self.model.num_layers
        out: dict[str, Any] = {"gemm": 0.0, "attention": 0.0, "elementwise": 0.0}
        for op in self.layer_operators(s):
            out[op.op_class] = out[op.op_class] + layers * self.op_time_s(op, maximum)
        message = s.num_tokens * self.model.hidden_size * self.model.dtype_bytes
        out["collective"] = layers * 2 * self.all_reduce_time_s(message)
        out["lm_head"] = (s.num_sampled > 0) * self.op_time_s(self.lm_head(s), maximum)
        out["p2p"] = self.pipeline_send_time_s(s.num_tokens)
        return out

    def gpu_time_s(self, s: StepShape) -> Any:
        """Time the GPUs are busy for one step of shape ``s`` (no host overhead)."""
        parts = self.breakdown_s(s)
        return (parts["gemm"] + parts["attention"] + parts["elementwise"] + parts["collective"]
                + parts["lm_head"] + parts["p2p"])

    def work(self, s: StepShape) -> tuple[Any, Any]:
        """Total FLOPs and HBM bytes of a step, summed over all ``tp x pp`` GPUs."""
        ops = self.layer_operators(s)
        flops = sum(op.flops for op in ops) * self.model.num_layers * self.tp
        hbm = sum(op.hbm_bytes for op in ops) * self.model.num_layers * self.tp
        head = self.lm_head(s)
        return flops + head.flops * self.tp, hbm + head.hbm_bytes * self.tp


def _gemm(tokens: Any, k: float, n: float, dtype_bytes: float) -> OperatorCost:
    """A (tokens x k) @ (k x n) matrix product: weights, input and output bytes."""
    return OperatorCost("gemm", 2 * tokens * k * n, dtype_bytes * (k * n + tokens * (k + n)))
