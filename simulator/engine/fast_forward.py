"""Fast-forward: many identical decode steps timed by one vectorised call and waited once.

When a step is decode-only and the batch policy says the following steps
would repeat it (nothing waiting could join), the batch stays the same until
a request finishes or KV memory runs out. Step ``j`` of such a run differs
from the first only in context lengths, which grow by one token per request
per step, so all the steps' shapes - and through the cost model their
durations, FLOPs and bytes - are arrays computed at once. The instance then
waits once, and commits the run in one pass over the batch.

Results equal step-by-step mode: the same durations (the cost model does the
same float operations on arrays), step ends accumulated in the same order,
the same KV allocations (blocks are allocated at each step's start).
"""

from __future__ import annotations

import numpy as np

from simulator.engine.kv_cache import KVCache
from simulator.engine.request import Request
from simulator.engine.step import StepPlan
from simulator.perf.shape import StepShape

MAX_RUN_STEPS = 8192  # bounds the arrays; a longer stretch simply becomes several runs


class DecodeRun:
    """A planned run of ``length`` decode steps of one fixed batch, starting at ``start_s``.

    The first step is the plan already built (its KV is allocated); steps
    ``1 .. length-1`` allocate their blocks when they start.

    Attributes:
        requests: the batch, in plan order.
        durations_s, ends_s: per-step durations and end times.
        blocks_added: blocks allocated by the start of step ``j`` beyond the first plan's.
        shapes: the steps' shapes (counts are scalars; contexts are arrays).
    """

    def __init__(self, plan: StepPlan, start_s: float, length: int, durations_s: np.ndarray,
                 blocks_added: np.ndarray, shapes: StepShape) -> None:
        self.plan = plan
        self.requests = [request for request, _ in plan.entries]
        self.start_s = start_s
        self.length = length
        self.durations_s = durations_s
        self.ends_s = np.cumsum(np.concatenate(([start_s], durations_s)))[1:]
        self.blocks_added = blocks_added
        self.shapes = shapes

    def shapes_of_first(self, steps: int) -> StepShape:
        """The shapes of the first ``steps`` steps (work is computed only for committed steps)."""
        s = self.shapes
        return StepShape(s.num_tokens, s.num_seqs, s.num_sampled, s.attention_pairs[:steps],
                         s.kv_read_tokens[:steps])

    def steps_started_by(self, now: float) -> int:
        """How many steps of the run have started at time ``now`` (at least the first)."""
        return 1 + int(np.searchsorted(self.ends_s[:-1], now, side="right"))

    def steps_ended_by(self, now: float) -> int:
        return int(np.searchsorted(self.ends_s, now, side="right"))

    def first_end_at_or_after(self, now: float) -> int:
        """Index of the step in flight at ``now`` (the one that ends first at or after it)."""
        return min(int(np.searchsorted(self.ends_s, now, side="left")), self.length - 1)


def plan_is_decode_only(plan: StepPlan) -> bool:
    """Every entry computes exactly one token of a request that already has a first token."""
    if plan.preempted or plan.swapped_out or plan.swapped_in or plan.rejected or plan.is_empty:
        return False
    return all(tokens == 1 and request.generated_tokens >= 1 and request.pending_compute_tokens == 1
               for request, tokens in plan.entries)


def blocks_added_per_step(cached_tokens: np.ndarray, block_size: int, length: int) -> np.ndarray:
    """Cumulative blocks the batch allocates by the start of each step of the run.

    A request with ``c`` tokens computed after the first step has ``o`` free
    slots in its last block; it needs a new block at the start of steps
    ``o + 1``, ``o + 1 + block``, ... So step ``j >= 1`` adds one block for
    every request whose ``o == (j - 1) mod block``.
    """
    offsets = (-cached_tokens) % block_size
    per_offset = np.bincount(offsets, minlength=block_size)
    added = np.zeros(length, dtype=np.int64)
    np.cumsum(per_offset[np.arange(length - 1) % block_size], out=added[1:])
    return added


def build_run(plan: StepPlan, start_s: float, kv: KVCache, cost_model, max_steps: int) -> DecodeRun | None:
    """The longest run that starts with ``plan`` (None when it would be a single step)."""
    requests = [request for request, _ in plan.entries]
    remaining = min(r.output_tokens - r.generated_tokens for r in requests)
    length = min(remaining, max_steps, MAX_RUN_STEPS)
    if length < 2:
        return None
    cached = np.fromiter((r.computed_tokens + 1 for r in requests), dtype=np.int64, count=len(requests))
    added = blocks_added_per_step(cached, kv.block_size, length)
    length = int(np.searchsorted(added, kv.free_blocks, side="right"))
    if length < 2:
        return None
    added = added[:length]
    batch = len(requests)
    steps = np.arange(length, dtype=np.float64)
    shape = plan.shape
    # Token, sequence and sample counts stay scalars: the cost model's dense part is
    # then one cached number and only attention is computed per step.
    shapes = StepShape(batch, batch, batch, shape.attention_pairs + batch * steps,
                       shape.kv_read_tokens + batch * steps)
    # A cost model may answer a scalar when nothing in it depends on context length.
    durations = np.broadcast_to(np.asarray(cost_model.step_time_s(shapes), dtype=np.float64), (length,))
    return DecodeRun(plan, start_s, length, durations, added, shapes)


def commit_run(run: DecodeRun, steps: int, kv: KVCache, gap_histogram) -> list[Request]:
    """Advance the batch by ``steps`` decode steps; returns the requests that finished."""
    first_end = float(run.ends_s[0])
    last_end = float(run.ends_s[steps - 1])
    later_gap = float(run.durations_s[1:steps].max()) if steps > 1 else 0.0
    finished = []
    for request in run.requests:
        gap = first_end - request.last_token_s
        gap_histogram.add(gap)
        request.computed_tokens += steps
        request.generated_tokens += steps
        request.max_token_gap_s = max(request.max_token_gap_s, gap, later_gap)
        request.last_token_s = last_end
        kv.grow(request, request.computed_tokens)
        if request.generated_tokens >= request.output_tokens:
            request.finish_s = last_end
            finished.append(request)
    if steps > 1:
        gap_histogram.add_repeated_each(run.durations_s[1:steps], len(run.requests))
    return finished
