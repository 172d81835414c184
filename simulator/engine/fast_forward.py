"""Fast-forward: many identical decode steps timed by one vectorised call and waited once.

When a step is decode-only and the batch policy says the following steps
would repeat it (nothing waiting could join), the batch stays the same until
a request finishes or KV memory runs out. Step ``j`` of such a run differs
from the first only in context lengths, which grow by one token per request
per step, so all the steps' shapes - and through the cost model their
durations, FLOPs and bytes - are computed at once (as arrays, in the cost
model's memo). The durations are read as a Python list: a run is waited out a
few steps at a time, where slices, ``bisect`` and builtins cost a fraction of
numpy's calls; the work stays an array, which the run's ledger sums with many
other runs'. The instance then waits once, and commits the run in one pass
over the batch.

Results equal step-by-step mode: the same durations (the cost model does the
same float operations on arrays), step ends accumulated in the same order,
the same KV allocations (blocks are allocated at each step's start).

A run may continue past a finish (``next_segment``): when requests finish and
nothing else happens on the instance, the next plan would be the same batch
without them, so the run goes on as a new *segment* over the survivors. Only
the finished requests are brought up to date then; the survivors' counters
stay as they were when the run started and advance once, when it ends. A
segment knows the steps before it (``offset``), so every lazy view (tokens
computed, KV in use) and the final commit count from the run's start.
Requests may also join a run at a later segment (``next_segment``'s
``joining``, after the run was held around an arrival: see
``simulator.engine.run_driver``); each then counts from its own join step.
Bringing requests up to date is ``simulator.engine.run_progress``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate, cycle, islice, repeat
from typing import Any, Callable

import numpy as np

from simulator.engine.kv_cache import KVCache
from simulator.engine.request import Request
from simulator.engine.run_progress import FinishOrder, GapMaxima
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
        work: per-step durations, FLOPs and HBM bytes as the rows of a 3 x ``length`` array
            (for the run's ledger: durations are read from the list).
        blocks_added: blocks allocated by the start of step ``j`` beyond those the cache holds
            (for a later segment, beyond those reserved for the run's earlier steps).
        offset: steps of the run before this segment (0 for its first).
    """

    __slots__ = ("plan", "requests", "start_s", "length", "durations_s", "ends_s", "work",
                 "blocks_added", "offset", "per_offset", "kv_read_start", "first_end_s",
                 "prev_end_s", "gaps", "joiners", "joined", "finishes", "released_blocks")

    def __init__(self, plan: StepPlan, requests: list[Request], start_s: float, length: int,
                 durations_s: list[float], work: np.ndarray, blocks_added: list[int],
                 continues: DecodeRun | None = None) -> None:
        self.plan = plan
        self.requests = requests
        self.start_s = start_s
        self.length = length
        self.durations_s = durations_s
        # Step ends accumulate from the start one duration at a time, as the clock does when stepping.
        ends = list(accumulate(durations_s, initial=start_s))
        del ends[0]
        self.ends_s = ends
        self.work = work
        self.blocks_added = blocks_added
        # A later segment of a run (see next_segment): the run's steps before it, the end of the
        # run's first step, the end of the run's step before this segment.
        self.offset = 0
        # The batch's block offsets and KV read (sum of computed + 1) as of the run's start, for
        # the segment that may follow (set by whoever builds the segment).
        self.per_offset: list[int] = []
        self.kv_read_start = 0
        self.prev_end_s: float | None = None
        self.joined = 0  # the requests that joined the run at this segment, counted
        # Shared by the segments of a run (``continues``: the run's segment before this one): the
        # end of its first step; the gaps of its steps after each request's first; the requests
        # that joined it after its start (id -> their join step, their position in ``gaps``, the
        # end of their first step); when each request in it finishes (see FinishOrder).
        if continues is None:
            self.first_end_s: float | None = None
            self.gaps = GapMaxima()
            self.joiners: dict[int, tuple[int, int, float]] = {}
            self.finishes = FinishOrder()
        else:
            first_end = continues.first_end_s
            self.first_end_s = continues.ends_s[0] if first_end is None else first_end
            self.gaps, self.joiners, self.finishes = continues.gaps, continues.joiners, continues.finishes
        # Implied blocks the cache holds already (reserved at the segment's end, while its finished
        # requests are released): kv_used_blocks must not count them twice.
        self.released_blocks = 0

    @property
    def next_finish(self) -> int:
        """The run's step, counted from its start, at which its next request finishes."""
        return self.finishes.first

    def steps_started_by(self, now: float) -> int:
        """How many steps of the run have started at time ``now`` (at least the first)."""
        return 1 + bisect_right(self.ends_s, now, 0, self.length - 1)

    def steps_ended_by(self, now: float) -> int:
        return bisect_right(self.ends_s, now)

    def first_end_at_or_after(self, now: float) -> int:
        """Index of the step in flight at ``now`` (the one that ends first at or after it)."""
        return min(bisect_left(self.ends_s, now), self.length - 1)


class RunLedger:
    """Busy time, FLOPs, HBM bytes, energy and KV use of committed decode-run steps, summed in batches.

    Nothing reads these totals before the end of a simulation, and numpy's
    cost per call, not per element, dominates for runs of a few steps; so a
    commit notes its run's work array (mostly a view of the cost model's memo)
    and steps, and ``flush`` joins many runs' steps and evaluates the power
    model and the sums over them at once. (A view keeps its memo block alive
    until then, should the memo drop it: at most a few hundred blocks.)

    Args:
        stats: the instance's totals (``busy_s``, ``flops``, ``hbm_bytes``, ``energy_j``,
            ``kv_usage_integral``, ``kv_peak_fraction``).
        energy_j: joules of steps from their durations, FLOPs and bytes (the power model).
        total_blocks: the instance's KV blocks (usage is a fraction of them).
    """

    # Steps held before a flush.
    FLUSH_AT = 1 << 12

    def __init__(self, stats, energy_j: EnergyFn, total_blocks: int) -> None:
        self.stats, self.energy_j, self.total_blocks = stats, energy_j, total_blocks
        self._work: list[tuple[np.ndarray, int]] = []  # per commit: its run's work, its steps
        self._added: list[int] = []  # blocks each step implied beyond its commit's first step's use
        self._used: list[int] = []  # per commit: KV in use at its first step
        self._steps: list[int] = []  # per commit: its steps
        self._pending = 0

    def add(self, run: DecodeRun, steps: int, used_blocks: int) -> None:
        """Account the first ``steps`` steps of ``run``; ``used_blocks``: KV in use at its first step."""
        self._work.append((run.work, steps))
        self._added.extend(run.blocks_added[:steps])
        self._used.append(used_blocks)
        self._steps.append(steps)
        self._pending += steps
        if self._pending >= self.FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Add what was accounted since the last flush to the totals."""
        if not self._work:
            return
        durations, flops, hbm_bytes = np.concatenate([work[:, :steps] for work, steps in self._work], axis=1)
        used = (np.repeat(self._used, self._steps) + np.array(self._added, dtype=np.int64)) / self.total_blocks
        self._work, self._added, self._used, self._steps, self._pending = [], [], [], [], 0
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


def blocks_added_per_step(per_offset: list[int], length: int, first_step: int = 0, carry: int = 0,
                          first_planned: bool = True) -> list[int]:
    """Cumulative blocks the batch allocates by the start of each of ``length`` steps of the run,
    from step ``first_step`` of the run on, on top of ``carry`` blocks implied before.

    A request with ``c`` tokens computed after the first step has ``o`` free
    slots in its last block; it needs a new block at the start of steps
    ``o + 1``, ``o + 1 + block``, ... So step ``j >= 1`` adds one block for
    every request whose ``o == (j - 1) mod block``: ``per_offset[o]`` counts them.
    The run's first step (``j = 0``) adds none when its plan allocated them (``first_planned``);
    otherwise it adds one for every request with ``o == block - 1`` (a multiple of ``block`` computed).
    """
    # Iterators rather than numpy: runs are a few dozen steps, where numpy's per-call cost dominates.
    if first_step == 0 and first_planned:
        return list(accumulate(islice(cycle(per_offset), length - 1), initial=carry))
    start = (first_step - 1) % len(per_offset)
    rotated = per_offset[start:] + per_offset[:start]
    added = list(accumulate(islice(cycle(rotated), length), initial=carry))
    del added[0]
    return added


def steps_that_fit(added: list[int], free_blocks: int) -> int:
    """How many leading steps' blocks (``added``, cumulative) fit in ``free_blocks``."""
    if not added or added[-1] <= free_blocks:
        return len(added)  # the usual case
    return bisect_right(added, free_blocks)


def build_run(plan: StepPlan, start_s: float, kv: KVCache, cost_model, max_steps: int) -> DecodeRun | None:
    """The longest run that starts with ``plan`` (None when it would be a single step)."""
    block = kv.block_size
    requests, per_offset = [], [0] * block
    fewest = 1 << 62
    for request, _ in plan.entries:  # one pass: the batch, its block offsets, the first to finish
        requests.append(request)
        per_offset[-(request.computed_tokens + 1) % block] += 1
        remaining = request.output_tokens - request.generated_tokens
        if remaining < fewest:
            fewest = remaining
    length = min(max_steps, MAX_RUN_STEPS, fewest)
    if length < 2:
        return None
    added = blocks_added_per_step(per_offset, length)
    length = steps_that_fit(added, kv.free_blocks)
    if length < 2:
        return None
    durations, work = run_costs(plan.shape, len(requests), length, cost_model)
    run = DecodeRun(plan, requests, start_s, length, durations, work, _cut(added, length))
    run.per_offset, run.kv_read_start = per_offset, plan.shape.kv_read_tokens
    run.finishes.add(requests, 0)
    return run


def unplanned_run(requests: list[Request], start_s: float, kv: KVCache, cost_model,
                  limits) -> DecodeRun | None:
    """The run of ``requests`` (an instance's running batch, in order) when every one of them
    only decodes, built without a plan; None when one does not, or the first step does not fit.

    What a policy declaring ``steady_through_finishes`` plans when nothing waits (see
    ``RunDriver.unplanned``), so the run is the same; its first step's blocks are
    implied like the later ones' instead of allocated by the plan.
    """
    batch = len(requests)
    if not batch or batch > limits.max_num_seqs or batch > limits.max_batched_tokens:
        return None
    block = kv.block_size
    per_offset = [0] * block
    kv_read, fewest = 0, 1 << 62
    for request in requests:
        computed = request.computed_tokens
        if request.prompt_tokens + request.generated_tokens - computed != 1 or not request.generated_tokens:
            return None  # still prefilling, or its first token not sampled: the policy decides
        per_offset[-(computed + 1) % block] += 1
        kv_read += computed + 1
        remaining = request.output_tokens - request.generated_tokens
        if remaining < fewest:
            fewest = remaining
    length = min(MAX_RUN_STEPS, fewest)
    added = blocks_added_per_step(per_offset, length, first_planned=False)
    length = steps_that_fit(added, kv.free_blocks)
    if length < 1:
        return None  # the first step needs a block that is not free: the policy preempts
    shape = StepShape(batch, batch, batch, float(kv_read), kv_read)
    plan = StepPlan(tuple(zip(requests, repeat(1))), shape, decodes=batch)
    durations, work = run_costs(shape, batch, length, cost_model)
    run = DecodeRun(plan, list(requests), start_s, length, durations, work, _cut(added, length))
    run.per_offset, run.kv_read_start = per_offset, kv_read
    run.finishes.add(requests, 0)
    return run


def _cut(added: list[int], length: int) -> list[int]:
    """``added`` without its steps beyond ``length`` (in place: it is the run's own)."""
    del added[length:]
    return added


def shift_frame(per_offset: list[int], kv_read: int, requests, step: int, block: int, sign: int) -> int:
    """Put up-to-date ``requests`` into (``sign`` +1) or take them out of (-1) a run's block
    offsets and KV read at its step ``step``, in the run's frame: as if each had started with
    the run, ``step`` tokens behind where it is. ``per_offset`` changes in place; returns the KV read."""
    for request in requests:
        computed = request.computed_tokens - step
        per_offset[-(computed + 1) % block] += sign
        kv_read += sign * (computed + 1)
    return kv_read


def run_costs(shape: StepShape, batch: int, length: int, cost_model) -> tuple[list[float], np.ndarray]:
    """Durations (a list) and durations, FLOPs and HBM bytes (the rows of a 3 x ``length``
    array) of ``length`` decode steps that start with ``shape``.

    Context grows by one token per request per step, so attention pairs and
    KV reads grow by ``batch`` per step; token, sequence and sample counts stay
    scalars, so the cost model's dense part is one cached number and only
    attention is computed per step.
    """
    fused = getattr(cost_model, "decode_run", None)
    if fused is not None:
        work = fused(batch, shape.attention_pairs, shape.kv_read_tokens, length)
        return work[0].tolist(), work
    growth = batch * np.arange(length, dtype=np.float64)
    pairs = shape.attention_pairs + growth
    kv_read = shape.kv_read_tokens + growth
    shapes = StepShape(batch, batch, batch, pairs, kv_read)
    # A cost model may answer a scalar when nothing in it depends on context length.
    columns = (cost_model.step_time_s(shapes), *cost_model.work(shapes))
    work = np.array([np.broadcast_to(np.asarray(column, dtype=np.float64), (length,)) for column in columns])
    return work[0].tolist(), work


def next_segment(run: DecodeRun, finished: list[Request], survivors: list[Request],
                 kv: KVCache, cost_model, *, first_step: int | None = None, start_s: float | None = None,
                 prev_end_s: float | None = None, joining: list[Request] = (),
                 survivor_entries: tuple | None = None) -> DecodeRun | None:
    """The segment that continues ``run`` with ``survivors`` after ``finished`` left, or None.

    The blocks the run's steps so far implied are reserved in the cache already (see
    ``KVCache.reserve``). The next step is the run's step ``first_step`` (default: the one after
    this segment); each survivor's context then has grown by that many tokens since its start
    in the run, where its counters still stand. ``joining``: requests, up to date and decoding,
    that join the run here (after steps planned around it: ``start_s`` and ``prev_end_s`` are
    then when the segment starts and when the run's last step ended). The segment lasts until
    the next request finishes (the run's ``next_finish``, or a joiner's finish if sooner), memory
    runs out or the run reaches ``MAX_RUN_STEPS`` in all. ``survivor_entries``: the survivors'
    plan entries, ``(request, 1)`` in their order, when the caller has them (see ``split_finishing``).
    """
    fewest = run.next_finish
    if first_step is None:
        first_step = run.offset + run.length
    if start_s is None:
        start_s = prev_end_s = float(run.ends_s[-1])
    block = kv.block_size
    per_offset = run.per_offset.copy()
    kv_read = shift_frame(per_offset, run.kv_read_start, finished, first_step, block, -1)
    if joining:
        kv_read = shift_frame(per_offset, kv_read, joining, first_step, block, +1)
        for request in joining:
            finish = request.output_tokens - request.generated_tokens + first_step
            if finish < fewest:
                fewest = finish
    length = min(fewest, MAX_RUN_STEPS) - first_step
    if length < 1:
        return None
    added = blocks_added_per_step(per_offset, length, first_step)
    length = steps_that_fit(added, kv.free_blocks)
    if length < 1:
        return None
    requests = survivors + list(joining) if joining else survivors
    batch = len(requests)
    # The shape a plan of these decodes would have (its pairs a float sum, as the builder keeps them).
    context = kv_read + batch * first_step
    shape = StepShape(batch, batch, batch, float(context), context)
    if survivor_entries is None:
        entries = tuple(zip(requests, repeat(1)))
    elif joining:
        entries = survivor_entries + tuple(zip(joining, repeat(1)))
    else:
        entries = survivor_entries
    plan = StepPlan(entries, shape, decodes=batch)
    durations, work = run_costs(shape, batch, length, cost_model)
    segment = DecodeRun(plan, requests, start_s, length, durations, work, _cut(added, length), continues=run)
    segment.offset, segment.per_offset, segment.kv_read_start = first_step, per_offset, kv_read
    segment.prev_end_s = prev_end_s
    if joining:
        run.finishes.add(joining, first_step)
        # A joiner's gaps after its first step start after this segment's first-step entry.
        position, first_end = run.gaps.count + 1, float(segment.ends_s[0])
        joiners = run.joiners  # shared by the run's segments: an ended segment is not read again
        for request in joining:
            joiners[request.id] = (first_step, position, first_end)
        segment.joined = len(joining)
    return segment
