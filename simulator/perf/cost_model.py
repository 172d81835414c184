"""Step times for an instance: GPU roofline time plus host-CPU overhead.

``CostModel`` is the protocol the engine depends on; ``InstanceCostModel`` is
the roofline-based implementation. Both are pure: no state, no randomness, no
SimPy, so they can be property-tested and called on arrays of shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from simulator.perf.roofline import Roofline, compose_dense
from simulator.perf.shape import StepShape


class CostModel(Protocol):
    """Times engine steps and reports the work they do."""

    def step_time_s(self, shape: StepShape) -> Any: ...

    def work(self, shape: StepShape) -> tuple[Any, Any]: ...


@dataclass(frozen=True, slots=True)
class HostOverhead:
    """Per-step serving overhead beyond the GPU kernels: host CPU time and stack effects.

    ``per_step_s + per_sequence_s x sequences``, plus for steps that prefill
    (some sequence adds more than one token) ``per_prefill_step_s`` and
    ``per_prefill_token_s`` for every prefill token beyond
    ``prefill_knee_tokens``. The prefill terms describe what whole-iteration
    measurements show and kernel profiles do not: Splitwise's vLLM (2023)
    spent about 10 ms more on a prompt step than on a decode step, and its
    prefill throughput dropped beyond about 2k tokens per step.

    The defaults are uncalibrated round figures of the order vLLM shows
    without CPU/GPU overlap; ``servesim calibrate`` fits all five per GPU and
    tensor-parallel degree (``hardware_profiles/calibration/``).
    """

    per_step_s: float = 1e-3
    per_sequence_s: float = 1e-5
    per_prefill_step_s: float = 0.0
    per_prefill_token_s: float = 0.0
    prefill_knee_tokens: float = 0.0

    def __post_init__(self) -> None:
        if min(self.per_step_s, self.per_sequence_s, self.per_prefill_step_s, self.per_prefill_token_s,
               self.prefill_knee_tokens) < 0:
            raise ValueError("host overheads must be >= 0")

    def step_s(self, shape: StepShape) -> Any:
        base = self.per_step_s + self.per_sequence_s * shape.num_seqs
        if not (self.per_prefill_step_s or self.per_prefill_token_s):
            return base
        extra = shape.num_tokens - shape.num_seqs  # tokens beyond one per sequence: prefill work
        if not isinstance(extra, np.ndarray):
            # One step (the hot path): plain float operations, the same values as the array form.
            if extra <= 0:
                return base
            return base + (self.per_prefill_step_s + self.per_prefill_token_s *
                           max(extra - self.prefill_knee_tokens, 0.0))
        beyond = np.maximum(extra - self.prefill_knee_tokens, 0.0)
        return base + (extra > 0) * (self.per_prefill_step_s + self.per_prefill_token_s * beyond)


class InstanceCostModel:
    """Roofline GPU time plus host overhead: the cost model of an instance.

    The dense part of a step (everything but attention) depends only on the
    token and sample counts; it is memoised per pair. Decode batch sizes repeat
    step after step, and so do prefill token counts (a prompt's length, or the
    token budget when prompts are chunked), so both mostly hit the memo. Whole
    steps of fresh prompts (no cached context) are memoised too: a trace's
    prompt lengths repeat, and such a step depends on nothing else.
    """

    # Bounds each memo (the dense parts' and the fresh-prompt steps'; an entry is a few hundred
    # bytes, about 11 MiB for a full step memo); what comes beyond it is computed each time.
    MAX_MEMO = 1 << 15
    # The token-dependent dense parts are tabulated in blocks of this many token counts, at most
    # MAX_DENSE_BLOCKS of them (4 x 1024 floats each: 8 MiB in all).
    DENSE_BLOCK = 1024
    MAX_DENSE_BLOCKS = 256
    # Decode-step costs are memoised in blocks of this many context tokens per batch size;
    # at most MAX_DECODE_BLOCKS blocks (3 x 1024 floats each: 48 MiB in all) are kept, the
    # oldest made way for first. A run over Azure-conversation lengths visits about 700
    # (CodeLlama-34B, batches up to ~30) to 1,700 (Llama-2-70B, batches up to ~60) of them:
    # at 512, clearing the memo when full rebuilt each about three times.
    DECODE_BLOCK = 1024
    MAX_DECODE_BLOCKS = 2048

    def __init__(self, roofline: Roofline, host: HostOverhead) -> None:
        self.roofline = roofline
        self.host = host
        self._dense: dict[tuple[Any, Any], tuple[Any, Any, Any]] = {}
        self._dense_blocks: dict[int, np.ndarray] = {}
        self._heads: dict[int, tuple[float, float, float]] = {}
        self._decode_blocks: dict[tuple[int, int], np.ndarray] = {}
        self._last_work: tuple[StepShape | None, tuple[Any, Any]] = (None, (0.0, 0.0))
        self._steps: dict[StepShape, tuple[float, tuple[Any, Any]]] = {}  # whole steps (see step_time_s)

    def _dense_part(self, shape: StepShape) -> tuple[Any, Any, Any]:
        """(seconds incl. host overhead, FLOPs, bytes) of the dense part; the roofline part is memoised."""
        key = (shape.num_tokens, shape.num_sampled)
        found = self._dense.get(key)
        if found is None:
            found = self._dense_time_and_work(*key)
            if len(self._dense) < self.MAX_MEMO:
                self._dense[key] = found
        return found[0] + self.host.step_s(shape), found[1], found[2]

    def _dense_time_and_work(self, tokens: Any, sampled: Any) -> tuple[Any, Any, Any]:
        """``Roofline.dense_time_and_work``, read from tables for an integer count of tokens.

        Prefill and mixed steps bring token counts the memo has not seen (a prompt's
        length plus the decodes beside it), and evaluating a dozen operators for one
        count costs tens of microseconds. The parts that depend on the token count are
        tabulated for a block of counts at once and composed with the LM head's part
        in the roofline's own order, so the values are those of the direct evaluation
        (scalars and arrays give bit-identical results; see ``efficiency.Curve``).
        """
        if not (isinstance(tokens, int) and isinstance(sampled, int)) or tokens < 0:
            return self.roofline.dense_time_and_work(tokens, sampled)
        size = self.DENSE_BLOCK
        block, offset = divmod(tokens, size)
        table = self._dense_blocks.get(block)
        if table is None:
            if len(self._dense_blocks) >= self.MAX_DENSE_BLOCKS:
                self._dense_blocks.clear()  # bounds memory; refilled on demand
            counts = np.arange(block * size, (block + 1) * size, dtype=np.float64)
            table = self._dense_blocks[block] = np.array(np.broadcast_arrays(*self.roofline.dense_token_parts(counts)))
        head = self._heads.get(sampled)
        if head is None:
            head = self._heads[sampled] = tuple(float(x) for x in self.roofline.lm_head_parts(sampled))
        column = table[:, offset].tolist()
        return compose_dense(column, head)

    def step_time_s(self, shape: StepShape) -> Any:
        """(dense GPU time + host overhead) + attention: one order for steps and decode runs alike."""
        if isinstance(shape.num_tokens, np.ndarray):
            fixed = self.roofline.dense_time_s(shape.num_tokens, shape.num_sampled) + self.host.step_s(shape)
            return fixed + self.roofline.attention_time_s(shape)
        # Steps of fresh prompts alone (every KV entry read is one of the step's own tokens) depend
        # only on the prompts' lengths, which a trace repeats: such whole steps are memoised. Steps
        # with cached context (decodes, later chunks) seldom repeat and skip the memo.
        fresh = shape.kv_read_tokens == shape.num_tokens
        found = self._steps.get(shape) if fresh else None
        if found is None:
            fixed, flops, hbm = self._dense_part(shape)
            attention_s, attention_flops, attention_bytes = self.roofline.attention_time_and_work(shape)
            found = (fixed + attention_s, (flops + attention_flops, hbm + attention_bytes))
            if fresh and len(self._steps) < self.MAX_MEMO:
                self._steps[shape] = found
        # The engine asks for the work of the step it just timed: keep it (shapes are immutable).
        self._last_work = (shape, found[1])
        return found[0]

    def work(self, shape: StepShape) -> tuple[Any, Any]:
        if isinstance(shape.num_tokens, np.ndarray):
            return self.roofline.work(shape)
        timed, work = self._last_work
        if timed is shape:
            return work
        _, flops, hbm = self._dense_part(shape)
        attention_flops, attention_bytes = self.roofline.attention_work(shape)
        return flops + attention_flops, hbm + attention_bytes

    def decode_run(self, batch: int, attention_pairs: float, kv_read_tokens: float, length: int) -> np.ndarray:
        """Durations, FLOPs and HBM bytes (rows of a 3 x ``length`` array) of ``length`` decode
        steps of ``batch`` sequences.

        The first step has ``attention_pairs`` and ``kv_read_tokens``; each later
        step adds one token of context per sequence, so both grow by ``batch``.
        Mostly a strided view of a memoised block (read-only): a run reads its
        durations as a list, and its ledger sums the rows of many runs at once.
        """
        if attention_pairs == kv_read_tokens and float(attention_pairs).is_integer():
            first, size = int(attention_pairs), self.DECODE_BLOCK
            last = first + batch * (length - 1)
            block = first // size
            if last // size == block:
                return self._decode_block(batch, block)[:, first - block * size:last - block * size + 1:batch]
            if last // size == block + 1:  # the run crosses into the next block
                # The first step in the next block: the first context at or beyond its start.
                split = first + -(-((block + 1) * size - first) // batch) * batch
                head = self._decode_block(batch, block)[:, first - block * size::batch]
                tail = self._decode_block(batch, block + 1)[
                    :, split - (block + 1) * size:last - (block + 1) * size + 1:batch]
                return np.concatenate((head, tail), axis=1)
        growth = batch * np.arange(length, dtype=np.float64)
        return np.array(self._decode_steps(batch, attention_pairs + growth, kv_read_tokens + growth))

    def _decode_block(self, batch: int, block: int) -> np.ndarray:
        """Durations, FLOPs and bytes (rows) of decode steps of ``batch`` sequences whose
        total context is each of ``block * DECODE_BLOCK + (0 .. DECODE_BLOCK - 1)`` tokens.

        A decode step's cost depends only on the batch size and the total context
        (its attention pairs and KV reads, which are equal), and runs of one
        instance keep revisiting the same few ranges; a run then reads its steps
        as a strided slice instead of evaluating the roofline (two dozen numpy
        calls, whose per-call cost dominates for runs of a few dozen steps).
        The entries are the same elementwise float operations, so the values
        are those of the step computed alone.
        """
        key = (batch, block)
        table = self._decode_blocks.get(key)
        if table is None:
            if len(self._decode_blocks) >= self.MAX_DECODE_BLOCKS:
                del self._decode_blocks[next(iter(self._decode_blocks))]  # bounds memory: the oldest goes
            contexts = np.arange(block * self.DECODE_BLOCK, (block + 1) * self.DECODE_BLOCK, dtype=np.float64)
            table = np.array(self._decode_steps(batch, contexts, contexts))
            table.flags.writeable = False
            self._decode_blocks[key] = table
        return table

    def _decode_steps(self, batch: int, attention_pairs: np.ndarray,
                      kv_read_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Durations, FLOPs and HBM bytes of decode steps of ``batch`` sequences, one per entry
        of ``attention_pairs`` and ``kv_read_tokens``: ``step_time_s`` and ``work`` of each step
        (the same float operations), with attention evaluated once for both.
        """
        shape = StepShape(batch, batch, batch, attention_pairs, kv_read_tokens)
        seconds, flops, hbm = self._dense_part(shape)
        attention_s, attention_flops, attention_bytes = self.roofline.attention_time_and_work(shape)
        return seconds + attention_s, flops + attention_flops, hbm + attention_bytes

    def prefill_time_s(self, prompt_tokens: int) -> float:
        """Step time of a lone prompt computed in one step."""
        return self.step_time_s(StepShape.for_sequence(prompt_tokens, 0, samples=True))

    def decode_time_s(self, batch_size: int, context_tokens: int) -> float:
        """Step time of ``batch_size`` decodes, each with ``context_tokens`` cached."""
        one = StepShape.for_sequence(1, context_tokens, samples=True)
        return self.step_time_s(StepShape(batch_size, batch_size, batch_size,
                                          one.attention_pairs * batch_size,
                                          one.kv_read_tokens * batch_size))
