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

from itertools import accumulate, cycle, islice
from typing import Any, Callable

import numpy as np

from simulator.engine.kv_cache import KVCache
from simulator.engine.request import Request
from simulator.engine.step import StepPlan
from simulator.perf.shape import StepShape

EnergyFn = Callable[[np.ndarray, Any, Any], Any]
MAX_RUN_STEPS = 8192  # bounds the arrays; a longer stretch simply becomes several runs


class DecodeRun:
    """A planned run of ``length`` decode steps of one fixed batch, starting at ``start_s``.

    The first step is the plan already built (its KV is allocated); steps
    ``1 .. length-1`` allocate their blocks when they start.

    Attributes:
        requests: the batch, in plan order.
        durations_s, ends_s: per-step durations and end times.
        flops, hbm_bytes: per-step work (arrays, or one number for every step).
        blocks_added: blocks allocated by the start of step ``j`` beyond the first plan's.
    """

    def __init__(self, plan: StepPlan, requests: list[Request], start_s: float, length: int,
                 durations_s: np.ndarray, flops: Any, hbm_bytes: Any, blocks_added: np.ndarray) -> None:
        self.plan = plan
        self.requests = requests
        self.start_s = start_s
        self.length = length
        self.durations_s = durations_s
        # Step ends accumulate from the start one duration at a time, as the clock does when stepping.
        ends = durations_s.copy()
        ends[0] += start_s
        self.ends_s = np.add.accumulate(ends, out=ends)  # np.cumsum, without its wrapper
        self.flops, self.hbm_bytes = flops, hbm_bytes
        self.blocks_added = blocks_added

    def steps_started_by(self, now: float) -> int:
        """How many steps of the run have started at time ``now`` (at least the first)."""
        return 1 + int(np.searchsorted(self.ends_s[:-1], now, side="right"))

    def steps_ended_by(self, now: float) -> int:
        return int(np.searchsorted(self.ends_s, now, side="right"))

    def first_end_at_or_after(self, now: float) -> int:
        """Index of the step in flight at ``now`` (the one that ends first at or after it)."""
        return min(int(np.searchsorted(self.ends_s, now, side="left")), self.length - 1)


class RunLedger:
    """Busy time, FLOPs, HBM bytes, energy and KV use of committed decode-run steps, summed in batches.

    Nothing reads these totals before the end of a simulation, and numpy's
    cost per call, not per element, dominates for runs of a few dozen steps;
    so commits only keep views of their steps' arrays, and ``flush`` evaluates
    the power model and the sums over many runs at once.

    Args:
        stats: the instance's totals (``busy_s``, ``flops``, ``hbm_bytes``, ``energy_j``,
            ``kv_usage_integral``, ``kv_peak_fraction``).
        energy_j: joules of steps from their durations, FLOPs and bytes (the power model).
        total_blocks: the instance's KV blocks (usage is a fraction of them).
    """

    # Array elements held before a flush (views keep whole run arrays alive): small enough
    # that many instances hold little memory, large enough that flushes are rare.
    FLUSH_AT = 1 << 12

    def __init__(self, stats, energy_j: EnergyFn, total_blocks: int) -> None:
        self.stats, self.energy_j, self.total_blocks = stats, energy_j, total_blocks
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._used_blocks: list[int] = []
        self._steps: list[int] = []
        self._held = 0

    def add(self, run: DecodeRun, steps: int, used_blocks: int) -> None:
        """Account the first ``steps`` steps of ``run``; ``used_blocks``: KV in use at its first step."""
        flops, hbm_bytes = run.flops, run.hbm_bytes
        if not isinstance(flops, np.ndarray) or not isinstance(hbm_bytes, np.ndarray):
            flops, hbm_bytes = np.broadcast_arrays(flops, hbm_bytes, run.durations_s)[:2]
        self._parts.append((run.durations_s[:steps], flops[:steps], hbm_bytes[:steps], run.blocks_added[:steps]))
        self._used_blocks.append(used_blocks)
        self._steps.append(steps)
        self._held += run.length
        if self._held >= self.FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Add what was accounted since the last flush to the totals."""
        if not self._parts:
            return
        durations, flops, hbm_bytes, added = (np.concatenate(column) for column in zip(*self._parts))
        used = (np.repeat(self._used_blocks, self._steps) + added) / self.total_blocks
        self._parts, self._used_blocks, self._steps, self._held = [], [], [], 0
        stats = self.stats
        stats.busy_s += float(durations.sum())
        stats.flops += float(flops.sum())
        stats.hbm_bytes += float(hbm_bytes.sum())
        stats.energy_j += float(np.sum(self.energy_j(durations, flops, hbm_bytes)))
        # Not np.dot: on long vectors BLAS may start threads that spin on other cores.
        stats.kv_usage_integral += float(np.sum(used * durations))
        stats.kv_peak_fraction = max(stats.kv_peak_fraction, float(used.max()))


def plan_is_decode_only(plan: StepPlan) -> bool:
    """Every entry computes exactly one token of a request that already has a first token."""
    if plan.preempted or plan.swapped_out or plan.swapped_in or plan.rejected or plan.is_empty:
        return False
    return plan.decodes == len(plan.entries)


def blocks_added_per_step(per_offset: list[int], length: int) -> np.ndarray:
    """Cumulative blocks the batch allocates by the start of each step of the run.

    A request with ``c`` tokens computed after the first step has ``o`` free
    slots in its last block; it needs a new block at the start of steps
    ``o + 1``, ``o + 1 + block``, ... So step ``j >= 1`` adds one block for
    every request whose ``o == (j - 1) mod block``: ``per_offset[o]`` counts them.
    """
    # Iterators rather than numpy: runs are a few dozen steps, where numpy's per-call cost dominates.
    added = accumulate(islice(cycle(per_offset), length - 1), initial=0)
    return np.fromiter(added, dtype=np.int64, count=length)


def build_run(plan: StepPlan, start_s: float, kv: KVCache, cost_model, max_steps: int) -> DecodeRun | None:
    """The longest run that starts with ``plan`` (None when it would be a single step)."""
    block = kv.block_size
    requests, per_offset = [], [0] * block
    length = min(max_steps, MAX_RUN_STEPS)
    for request, _ in plan.entries:  # one pass: the batch, its block offsets, the first to finish
        requests.append(request)
        per_offset[-(request.computed_tokens + 1) % block] += 1
        remaining = request.output_tokens - request.generated_tokens
        if remaining < length:
            length = remaining
    if length < 2:
        return None
    added = blocks_added_per_step(per_offset, length)
    length = int(np.searchsorted(added, kv.free_blocks, side="right"))
    if length < 2:
        return None
    durations, flops, hbm_bytes = run_costs(plan.shape, len(requests), length, cost_model)
    return DecodeRun(plan, requests, start_s, length, durations, flops, hbm_bytes, added[:length])


def run_costs(shape: StepShape, batch: int, length: int, cost_model) -> tuple[np.ndarray, Any, Any]:
    """Durations, FLOPs and HBM bytes of ``length`` decode steps that start with ``shape``.

    Context grows by one token per request per step, so attention pairs and
    KV reads grow by ``batch`` per step; token, sequence and sample counts stay
    scalars, so the cost model's dense part is one cached number and only
    attention is computed per step.
    """
    fused = getattr(cost_model, "decode_run", None)
    if fused is not None:
        return fused(batch, shape.attention_pairs, shape.kv_read_tokens, length)
    growth = batch * np.arange(length, dtype=np.float64)
    pairs = shape.attention_pairs + growth
    kv_read = shape.kv_read_tokens + growth
    shapes = StepShape(batch, batch, batch, pairs, kv_read)
    # A cost model may answer a scalar when nothing in it depends on context length.
    durations = np.broadcast_to(np.asarray(cost_model.step_time_s(shapes), dtype=np.float64), (length,))
    flops, hbm_bytes = cost_model.work(shapes)
    return durations, flops, hbm_bytes


def commit_run(run: DecodeRun, steps: int, kv: KVCache, gap_histogram) -> list[Request]:
    """Advance the batch by ``steps`` decode steps; returns the requests that finished."""
    first_end = float(run.ends_s[0])
    last_end = float(run.ends_s[steps - 1])
    later_gap = float(run.durations_s[1:steps].max()) if steps > 1 else 0.0
    block = kv.block_size
    finished = []
    gaps = []
    crossed = []  # (request, tokens) of requests whose later steps needed new blocks
    add_gap = gaps.append
    for request in run.requests:
        gap = first_end - request.last_token_s
        add_gap(gap)
        computed = request.computed_tokens
        request.computed_tokens = computed + steps
        request.generated_tokens += steps
        largest = gap if gap > later_gap else later_gap
        if largest > request.max_token_gap_s:
            request.max_token_gap_s = largest
        request.last_token_s = last_end
        # The plan allocated the first step's block; a later step needs one only when the
        # request crosses a block boundary: those are allocated together below.
        if computed // block != (computed + steps - 1) // block:
            crossed.append((request, computed + steps))
        if request.generated_tokens >= request.output_tokens:
            request.finish_s = last_end
            finished.append(request)
    if crossed:
        kv.grow_all(crossed)
    gap_histogram.extend(gaps)
    if steps > 1:
        gap_histogram.add_repeated_each(run.durations_s[1:steps], len(run.requests))
    return finished
