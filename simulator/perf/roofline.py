"""Roofline timing of one engine step of a dense or MoE decoder on TP x PP GPUs.

Each operator of a layer is timed as
``max(FLOPs / (peak x eta_compute), bytes / (bandwidth x eta_memory)) + launch``,
with FLOPs and bytes counted per tensor-parallel shard and the efficiencies
taken at the operator's size (see ``simulator.perf.efficiency``). A layer's
operators follow vLLM's kernels (and Vidur's profiles of them): input norm,
QKV projection, rotary embedding, attention (causal pairs for new tokens; KV
bytes read), output projection, post-attention norm, MLP up (gate+up) and down
projections (MoE: a router and the experts the batch activates), activation,
residual add, and with TP > 1 two all-reduces of the hidden states. Per step
come the embedding lookup, the final norm, the LM head for sampled rows and
pipeline sends between stages. With PP the model keeps one batch in flight, so
a step's time is the sum over stages (exact latency, pessimistic throughput;
documented in the README).

All arithmetic works on floats or numpy arrays alike (see ``StepShape``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from simulator.hardware import GpuProfile, LinkProfile, ModelSpec
from simulator.perf.efficiency import Curve, Efficiencies
from simulator.perf.shape import StepShape


class OperatorCost(NamedTuple):
    """FLOPs and HBM bytes of one named operator on one GPU, and its class.

    A named tuple rather than a frozen dataclass: a step's timing builds a dozen
    of them, and a tuple is several times cheaper to construct.
    """

    name: str
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
        compute_scale: the fraction of peak FLOP/s the GPU can sustain at its
            power limit (1 uncapped; see ``simulator.perf.power.capped_compute_scale``).
    """

    def __init__(self, model: ModelSpec, gpu: GpuProfile, tp: int, pp: int,
                 tp_link: LinkProfile | None, pp_link: LinkProfile | None,
                 efficiencies: Efficiencies, compute_scale: float = 1.0) -> None:
        if not 0 < compute_scale <= 1:
            raise ValueError(f"compute_scale must be in (0, 1], got {compute_scale}")
        self.model, self.gpu, self.tp, self.pp = model, gpu, tp, pp
        self.tp_link, self.pp_link, self.eff = tp_link, pp_link, efficiencies
        self.peak_flops = gpu.peak_flops(model.dtype)
        self.compute_flops = self.peak_flops * compute_scale
        self.hbm_bytes_per_s = gpu.hbm_bytes_per_s
        # What attention reads of the model on every step, read once: the model is a pydantic
        # model, and each attribute read on one goes through its __getattr__ hook.
        self._layers = model.num_layers
        self._dtype_bytes = model.dtype_bytes
        self._q_out = model.num_attention_heads * model.head_dim / tp  # query width per GPU
        self._kv_out = 2 * model.num_kv_heads * model.head_dim / tp  # K and V widths per GPU
        # (op_class, name) -> (compute, memory) efficiency: resolved once, used every step.
        self._efficiencies: dict[tuple[str, str], tuple[Any, Any]] = {}

    # ----------------------------------------------------------- operator sizes
    def layer_operators(self, s: StepShape) -> list[OperatorCost]:
        """FLOPs and bytes of one layer's operators for batch shape ``s``, per GPU."""
        q_out, kv_out, d = self._q_out, self._kv_out, self._dtype_bytes
        hidden = self.model.hidden_size
        tokens = s.num_tokens
        return [
            self.norm("input_norm", tokens),
            gemm("qkv_proj", tokens, hidden, q_out + kv_out, d),
            OperatorCost("rope", "elementwise", 3 * tokens * (q_out + kv_out / 2),
                         d * 2 * tokens * (q_out + kv_out / 2)),
            self.attention(s),
            gemm("o_proj", tokens, q_out, hidden, d),
            self.norm("post_attention_norm", tokens),
            *self.mlp_operators(tokens),
            OperatorCost("residual_add", "elementwise", tokens * hidden, d * 3 * tokens * hidden),
        ]

    def attention(self, s: StepShape) -> OperatorCost:
        """Attention over ``s``: QK^T and PV for every causal pair; K/V read once per sequence."""
        q_out, kv_out, d = self._q_out, self._kv_out, self._dtype_bytes
        return OperatorCost("attention", "attention", 4 * s.attention_pairs * q_out,
                            d * (s.kv_read_tokens * kv_out + s.num_tokens * (2 * q_out + kv_out)))

    def norm(self, name: str, tokens: Any) -> OperatorCost:
        hidden, d = self.model.hidden_size, self.model.dtype_bytes
        return OperatorCost(name, "elementwise", 4 * tokens * hidden, d * (2 * tokens * hidden + hidden))

    def mlp_operators(self, tokens: Any) -> list[OperatorCost]:
        """Up (gate+up) and down projections and the activation; MoE adds the router."""
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
        ops = [
            OperatorCost("mlp_up", "gemm", 2 * routed * m.hidden_size * ffn * up_mats,
                         d * (active * m.hidden_size * ffn * up_mats + routed * (m.hidden_size + ffn * up_mats))),
            # Gated: read gate and up, write their product; plain: read and write once.
            OperatorCost("mlp_act", "elementwise", 8 * routed * ffn, d * (up_mats + 1) * routed * ffn),
            OperatorCost("mlp_down", "gemm", 2 * routed * ffn * m.hidden_size,
                         d * (active * ffn * m.hidden_size + routed * (ffn + m.hidden_size))),
        ]
        if m.num_experts > 1:
            ops.insert(0, gemm("router", tokens, m.hidden_size, m.num_experts, d))
        return ops

    def step_operators(self, s: StepShape) -> list[OperatorCost]:
        """Operators run once per step: embedding lookup, final norm and the LM head."""
        m, d = self.model, self.model.dtype_bytes
        return [OperatorCost("embedding", "elementwise", 0.0 * s.num_tokens, d * 2 * s.num_tokens * m.hidden_size),
                self.norm("final_norm", s.num_tokens), self.lm_head(s)]

    def lm_head(self, s: StepShape) -> OperatorCost:
        m, d = self.model, self.model.dtype_bytes
        vocab = m.vocab_size / self.tp
        sampled_any = s.num_sampled > 0
        return OperatorCost("lm_head", "gemm", 2 * s.num_sampled * m.hidden_size * vocab,
                            sampled_any * d * (m.hidden_size * vocab + s.num_sampled * (m.hidden_size + vocab)))

    # ----------------------------------------------------------------- timing
    def op_time_s(self, op: OperatorCost, maximum: Callable[[Any, Any], Any] = np.maximum) -> Any:
        key = (op.op_class, op.name)
        resolved = self._efficiencies.get(key)
        if resolved is None:
            resolved = self._efficiencies[key] = self.eff.of_operator(op.op_class, op.name)
        eta_compute, eta_memory = resolved
        # The same values as self.eff.compute(...) and self.eff.memory(...), without the lookups.
        if isinstance(eta_compute, Curve):
            eta_compute = eta_compute(op.flops)
        if isinstance(eta_memory, Curve):
            eta_memory = eta_memory(op.hbm_bytes)
        compute = op.flops / (self.compute_flops * eta_compute)
        memory = op.hbm_bytes / (self.hbm_bytes_per_s * eta_memory)
        return maximum(compute, memory) + self.eff.kernel_launch_s

    def all_reduce_time_s(self, message_bytes: Any) -> Any:
        """Ring all-reduce over ``tp`` GPUs: a fixed latency and 2(t-1)/t of the bytes per GPU.

        The latency is the calibrated one when set, else 2(t-1) link hops.
        """
        if self.tp == 1 or self.tp_link is None:
            return 0.0
        t, link = self.tp, self.tp_link
        latency = self.eff.collective_latency_s
        if latency is None:
            latency = 2 * (t - 1) * link.latency_s
        bandwidth = link.bytes_per_s * self.eff.memory("collective", message_bytes)
        return latency + 2 * (t - 1) / t * message_bytes / bandwidth

    def send_time_s(self, message_bytes: Any) -> Any:
        """One point-to-point send of ``message_bytes`` between pipeline stages."""
        link = self.pp_link
        latency = link.latency_s if self.eff.p2p_latency_s is None else self.eff.p2p_latency_s
        return latency + message_bytes / (link.bytes_per_s * self.eff.memory("p2p", message_bytes))

    def pipeline_send_time_s(self, tokens: Any) -> Any:
        if self.pp == 1 or self.pp_link is None:
            return 0.0
        return (self.pp - 1) * self.send_time_s(tokens * self.model.hidden_size * self.model.dtype_bytes)

    def breakdown_s(self, s: StepShape) -> dict[str, Any]:
        """Seconds spent per operator class over the whole model for shape ``s``."""
        out = self.dense_breakdown_s(s.num_tokens, s.num_sampled)
        out["attention"] = self.attention_time_s(s)
        return out

    def dense_operators(self, tokens: Any, sampled: Any) -> tuple[list[OperatorCost], list[OperatorCost]]:
        """A layer's operators but attention, and the per-step operators, for the given counts."""
        shape = StepShape(tokens, 0, sampled, 0.0, 0)
        layer = [op for op in self.layer_operators(shape) if op.op_class != "attention"]
        return layer, self.step_operators(shape)

    def dense_breakdown_s(self, tokens: Any, sampled: Any,
                          operators: tuple[list[OperatorCost], list[OperatorCost]] | None = None) -> dict[str, Any]:
        """Seconds per operator class for everything but attention (depends on counts only).

        ``operators``: ``dense_operators(tokens, sampled)`` when the caller has them already.
        """
        maximum = _maximum_for(tokens)
        layers = self._layers
        layer, per_step = operators if operators is not None else self.dense_operators(tokens, sampled)
        out: dict[str, Any] = {"gemm": 0.0, "elementwise": 0.0}
        for op in layer:
            out[op.op_class] = out[op.op_class] + layers * self.op_time_s(op, maximum)
        message = tokens * self.model.hidden_size * self.model.dtype_bytes
        out["collective"] = layers * 2 * self.all_reduce_time_s(message)
        *per_step, head = per_step
        for op in per_step:
            out[op.op_class] = out[op.op_class] + self.op_time_s(op, maximum)
        out["lm_head"] = (sampled > 0) * self.op_time_s(head, maximum)
        out["p2p"] = self.pipeline_send_time_s(tokens)
        return out

    def dense_time_s(self, tokens: Any, sampled: Any,
                     operators: tuple[list[OperatorCost], list[OperatorCost]] | None = None) -> Any:
        parts = self.dense_breakdown_s(tokens, sampled, operators)
        return parts["gemm"] + parts["elementwise"] + parts["collective"] + parts["lm_head"] + parts["p2p"]

    def dense_token_parts(self, tokens: Any) -> tuple[Any, Any, Any, Any]:
        """The parts of the dense time and work that depend on the token count alone.

        Returns ``(gemm + elementwise + collective seconds, p2p seconds, FLOPs, bytes)``
        without the LM head; with ``lm_head_parts`` they compose, in the same float
        operations, to ``dense_time_and_work`` (see ``compose_dense``). Arrays of token
        counts are accepted, so a cost model can tabulate them.
        """
        parts = self.dense_breakdown_s(tokens, 0)  # no samples: the LM head adds nothing
        flops, hbm = self.dense_work(tokens, 0)
        return (parts["gemm"] + parts["elementwise"]) + parts["collective"], parts["p2p"], flops, hbm

    def lm_head_parts(self, sampled: Any) -> tuple[Any, Any, Any]:
        """Seconds, FLOPs and bytes (all GPUs) of the LM head for ``sampled`` rows."""
        head = self.lm_head(StepShape(0, 0, sampled, 0.0, 0))
        seconds = (sampled > 0) * self.op_time_s(head, _maximum_for(sampled))
        return seconds, head.flops * self.tp, head.hbm_bytes * self.tp

    def dense_time_and_work(self, tokens: Any, sampled: Any) -> tuple[Any, Any, Any]:
        """``dense_time_s`` and ``dense_work`` from one construction of the operators."""
        operators = self.dense_operators(tokens, sampled)
        return (self.dense_time_s(tokens, sampled, operators),) + self.dense_work(tokens, sampled, operators)

    def attention_time_s(self, s: StepShape) -> Any:
        op = self.attention(s)
        return self._layers * self.op_time_s(op, _maximum_for(op.flops))

    def attention_time_and_work(self, s: StepShape) -> tuple[Any, Any, Any]:
        """``attention_time_s(s)`` and ``attention_work(s)`` from one evaluation of the operator."""
        op = self.attention(s)
        seconds = self._layers * self.op_time_s(op, _maximum_for(op.flops))
        scale = self._layers * self.tp
        return seconds, op.flops * scale, op.hbm_bytes * scale

    def gpu_time_s(self, s: StepShape) -> Any:
        """Time the GPUs are busy for one step of shape ``s`` (no host overhead).

        Always the dense part plus attention, in that order: a decode run keeps
        its token count while contexts grow, so the dense part is one number
        and only attention is an array - with the same float operations as a
        step timed on its own.
        """
        return self.dense_time_s(s.num_tokens, s.num_sampled) + self.attention_time_s(s)

    def dense_work(self, tokens: Any, sampled: Any,
                   operators: tuple[list[OperatorCost], list[OperatorCost]] | None = None) -> tuple[Any, Any]:
        """FLOPs and HBM bytes of everything but attention, summed over all GPUs."""
        ops, per_step = operators if operators is not None else self.dense_operators(tokens, sampled)
        flops = sum(op.flops for op in ops) * self._layers * self.tp
        hbm = sum(op.hbm_bytes for op in ops) * self._layers * self.tp
        for op in per_step:
            flops, hbm = flops + op.flops * self.tp, hbm + op.hbm_bytes * self.tp
        return flops, hbm

    def attention_work(self, s: StepShape) -> tuple[Any, Any]:
        op = self.attention(s)
        scale = self._layers * self.tp
        return op.flops * scale, op.hbm_bytes * scale

    def work(self, s: StepShape) -> tuple[Any, Any]:
        """Total FLOPs and HBM bytes of a step, summed over all ``tp x pp`` GPUs."""
        dense_flops, dense_bytes = self.dense_work(s.num_tokens, s.num_sampled)
        attention_flops, attention_bytes = self.attention_work(s)
        return dense_flops + attention_flops, dense_bytes + attention_bytes


def compose_dense(token_parts: tuple[Any, Any, Any, Any], head_parts: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
    """Dense seconds, FLOPs and bytes from ``dense_token_parts`` and ``lm_head_parts``.

    The additions are those of ``dense_time_s`` and ``dense_work`` in their order
    (the head is added after the collectives and before the p2p sends), so the
    result equals ``dense_time_and_work`` exactly.
    """
    before_head_s, p2p_s, flops, hbm = token_parts
    head_s, head_flops, head_bytes = head_parts
    return (before_head_s + head_s) + p2p_s, flops + head_flops, hbm + head_bytes


def _maximum_for(value: Any):
    """Element-wise max for arrays, the builtin for floats (the same IEEE result, faster)."""
    return np.maximum if isinstance(value, np.ndarray) else max


def gemm(name: str, tokens: Any, k: float, n: float, dtype_bytes: float) -> OperatorCost:
    """A (tokens x k) @ (k x n) matrix product: weights, input and output bytes."""
    return OperatorCost(name, "gemm", 2 * tokens * k * n, dtype_bytes * (k * n + tokens * (k + n)))
