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

A run may continue past a finish (``next_segment``): when requests finish and
nothing else happens on the instance, the next plan would be the same batch
without them, so the run goes on as a new *segment* over the survivors. Only
the finished requests are brought up to date then; the survivors' counters
stay as they were when the run started and advance once, when it ends. A
segment knows the steps before it (``offset``), so every lazy view (tokens
computed, KV in use) and the final commit count from the run's start.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate, cycle, islice, repeat
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
        blocks_added: blocks allocated by the start of step ``j`` beyond those the cache holds
            (for a later segment, beyond those reserved for the run's earlier steps).
        offset: steps of the run before this segment (0 for its first).
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
        # A later segment of a run (see next_segment): the run's steps before it, the end of the
        # run's first step, the end of the run's step before this segment.
        self.offset = 0
        # The batch's block offsets and KV read (sum of computed + 1) as of the run's start, for
        # the segment that may follow (set by whoever builds the segment); the run's step at
        # which its first request finishes (counted from the run's start).
        self.per_offset: list[int] = []
        self.kv_read_start = 0
        self.next_finish = 0
        self.first_end_s: float | None = None
        self.prev_end_s: float | None = None
        # Shared by the segments of a run: the gaps of its steps after each request's first, and
        # the requests that joined it after its start (id -> their join step, their position in
        # ``gaps``, the end of their first step); the joiners of this segment, counted.
        self.gaps = GapMaxima()
        self.joiners: dict[int, tuple[int, int, float]] = {}
        self.joined = 0
        # Implied blocks the cache holds already (reserved at the segment's end, while its finished
        # requests are released): kv_used_blocks must not count them twice.
        self.released_blocks = 0

    def steps_started_by(self, now: float) -> int:
        """How many steps of the run have started at time ``now`` (at least the first)."""
        return 1 + int(np.searchsorted(self.ends_s[:-1], now, side="right"))

    def steps_ended_by(self, now: float) -> int:
        return int(np.searchsorted(self.ends_s, now, side="right"))

    def first_end_at_or_after(self, now: float) -> int:
        """Index of the step in flight at ``now`` (the one that ends first at or after it)."""
        return min(int(np.searchsorted(self.ends_s, now, side="left")), self.length - 1)


class GapMaxima:
    """The largest inter-token gap since a given step of a decode run, over the steps logged so far.

    A run's requests are brought up to date lazily, so each one's largest gap is read once, when
    it is; requests that joined the run later count only the steps since they joined. Gaps are
    logged in order; a stack of the suffix maxima (each below the one under it) answers "the
    largest since position ``p``" by bisection, and an append pops the entries it overshadows.
    """

    def __init__(self) -> None:
        self.count = 0
        self._positions: list[int] = []
        self._values: list[float] = []

    def append(self, gap: float) -> None:
        values, positions = self._values, self._positions
        while values and values[-1] <= gap:
            values.pop()
            positions.pop()
        values.append(gap)
        positions.append(self.count)
        self.count += 1

    def since(self, position: int) -> float:
        """The largest gap logged at ``position`` or later (0.0 when there is none)."""
        index = bisect_left(self._positions, position)
        return self._values[index] if index < len(self._values) else 0.0


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


def blocks_added_per_step(per_offset: list[int], length: int, first_step: int = 0, carry: int = 0,
                          first_planned: bool = True) -> np.ndarray:
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
        added = accumulate(islice(cycle(per_offset), length - 1), initial=carry)
    else:
        start = (first_step - 1) % len(per_offset)
        rotated = per_offset[start:] + per_offset[:start]
        added = islice(accumulate(islice(cycle(rotated), length), initial=carry), 1, None)
    return np.fromiter(added, dtype=np.int64, count=length)


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
    length = int(np.searchsorted(added, kv.free_blocks, side="right"))
    if length < 2:
        return None
    durations, flops, hbm_bytes = run_costs(plan.shape, len(requests), length, cost_model)
    run = DecodeRun(plan, requests, start_s, length, durations, flops, hbm_bytes, added[:length])
    run.per_offset, run.kv_read_start, run.next_finish = per_offset, plan.shape.kv_read_tokens, fewest
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
    length = int(np.searchsorted(added, kv.free_blocks, side="right"))
    if length < 1:
        return None  # the first step needs a block that is not free: the policy preempts
    shape = StepShape(batch, batch, batch, float(kv_read), kv_read)
    plan = StepPlan(tuple(zip(requests, repeat(1))), shape, decodes=batch)
    durations, flops, hbm_bytes = run_costs(shape, batch, length, cost_model)
    run = DecodeRun(plan, list(requests), start_s, length, durations, flops, hbm_bytes, added[:length])
    run.per_offset, run.kv_read_start, run.next_finish = per_offset, kv_read, fewest
    return run


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
    """Advance the batch by the first ``steps`` steps of ``run``; returns the requests that finished."""
    close_segment(run, steps, gap_histogram)
    finished, _ = advance(run.requests, run, steps, kv, gap_histogram)
    return finished


def close_segment(run: DecodeRun, steps: int, gap_histogram) -> None:
    """Log the gaps of the segment's first ``steps`` steps (its last commit) and count them in the
    histogram: one per request per step, but a request's first step of the run, whose gap is
    its own, is counted when the request is brought up to date (``advance``)."""
    if steps <= 0:
        return
    durations, batch, gaps = run.durations_s, len(run.requests), run.gaps
    if run.offset:
        # The first step follows a step of the run; when other steps came between (whole prompts
        # prefilled while the run was held) the gap spans them.
        paused = run.prev_end_s is not None and run.prev_end_s != run.start_s
        first_gap = float(run.ends_s[0]) - run.prev_end_s if paused else float(durations[0])
        gaps.append(first_gap)
        if not paused and not run.joined:
            gap_histogram.add_repeated_each(durations[:steps], batch)
        else:
            if batch > run.joined:
                gap_histogram.add_repeated_each(np.array([first_gap]), batch - run.joined)
            if steps > 1:
                gap_histogram.add_repeated_each(durations[1:steps], batch)
    elif steps > 1:
        gap_histogram.add_repeated_each(durations[1:steps], batch)
    if steps > 1:
        gaps.append(float(durations[1:steps].max()))


def advance(requests: list[Request], run: DecodeRun, steps: int, kv: KVCache, gap_histogram,
            extra_steps: int = 0, last_end_s: float | None = None) -> tuple[list[Request], int]:
    """Bring ``requests`` of the run up to its step ``run.offset + steps + extra_steps``: counters,
    last token, largest gap, the blocks their later steps implied; returns those that finished
    and the blocks allocated.

    The segment must be closed for its ``steps`` (``close_segment``), and the gaps of
    ``extra_steps`` steps planned around the held run after it (ending at ``last_end_s``) logged.
    Each request's first gap (from its previous token to its first step of the run) goes to the
    histogram here; the others were counted when they were logged.
    """
    total = run.offset + steps + extra_steps
    first_end = float(run.ends_s[0]) if run.first_end_s is None else run.first_end_s
    if last_end_s is None:
        last_end_s = float(run.ends_s[steps - 1]) if steps else run.start_s  # 0 steps: a segment not begun
    log, joiners = run.gaps, run.joiners
    run_gap = log.since(0)
    block = kv.block_size
    finished = []
    gaps = []
    crossed = []  # (request, tokens) of requests whose later steps needed new blocks
    add_gap = gaps.append
    for request in requests:
        done, first, later = total, first_end, run_gap
        if joiners:
            joined = joiners.get(request.id)
            if joined is not None:
                join_step, position, first = joined
                done = total - join_step
                if done <= 0:
                    continue  # joined a segment that has not begun
                later = log.since(position)
        gap = first - request.last_token_s
        add_gap(gap)
        computed = request.computed_tokens
        request.computed_tokens = computed + done
        request.generated_tokens += done
        largest = gap if gap > later else later
        if largest > request.max_token_gap_s:
            request.max_token_gap_s = largest
        request.last_token_s = last_end_s
        # Blocks for the computed tokens are held (and, when a plan began the run, for its first
        # step's); a request needs more only if its run crossed a block boundary: those are
        # allocated together below.
        if (computed - 1) // block != (computed + done - 1) // block:
            crossed.append((request, computed + done))
        if request.generated_tokens >= request.output_tokens:
            request.finish_s = last_end_s
            finished.append(request)
            if joiners:
                joiners.pop(request.id, None)  # it leaves the run: keep the table to the requests in it
    allocated = kv.grow_all(crossed) if crossed else 0
    gap_histogram.extend(gaps)
    return finished, allocated


def split_finishing(run: DecodeRun, total: int | None = None) -> tuple[list[Request], list[Request], int]:
    """The requests of ``run`` that have finished by its step ``total`` (default: the segment's
    last), those that go on (plan order), and the step, counted from the run's start, at which
    the first of those finishes."""
    if total is None:
        total = run.offset + run.length
    finishing, going_on = [], []
    fewest = 1 << 62
    joiners = run.joiners
    for request in run.requests:
        # A request's counters are those of its start in the run: it has output - generated steps to go.
        finish = request.output_tokens - request.generated_tokens
        if joiners:
            joined = joiners.get(request.id)
            if joined is not None:
                finish += joined[0]
        if finish <= total:
            finishing.append(request)
        else:
            going_on.append(request)
            if finish < fewest:
                fewest = finish
    return finishing, going_on, fewest


def next_segment(run: DecodeRun, finished: list[Request], survivors: list[Request], fewest: int,
                 kv: KVCache, cost_model, *, first_step: int | None = None, start_s: float | None = None,
                 prev_end_s: float | None = None, joining: list[Request] = ()) -> DecodeRun | None:
    """The segment that continues ``run`` with ``survivors`` after ``finished`` left, or None.

    The blocks the run's steps so far implied are reserved in the cache already (see
    ``KVCache.reserve``). The next step is the run's step ``first_step`` (default: the one after
    this segment); each survivor's context then has grown by that many tokens since its start
    in the run, where its counters still stand. ``joining``: requests, up to date and decoding,
    that join the run here (after steps planned around it: ``start_s`` and ``prev_end_s`` are
    then when the segment starts and when the run's last step ended). The segment lasts until
    the next request finishes (``fewest``: that step, counted from the run's start), memory runs
    out or the run reaches ``MAX_RUN_STEPS`` in all.
    """
    if first_step is None:
        first_step = run.offset + run.length
    if start_s is None:
        start_s = prev_end_s = float(run.ends_s[-1])
    block = kv.block_size
    per_offset, kv_read = run.per_offset.copy(), run.kv_read_start
    for request in finished:  # their counters are up to date: step back to the run's frame
        computed = request.computed_tokens - first_step
        per_offset[-(computed + 1) % block] -= 1
        kv_read -= computed + 1
    joiners = run.joiners  # shared by the run's segments: an ended segment is not read again
    if joining:
        for request in joining:  # in the run's frame: as if it had started with the run, join steps behind
            computed = request.computed_tokens - first_step
            per_offset[-(computed + 1) % block] += 1
            kv_read += computed + 1
            finish = request.output_tokens - request.generated_tokens + first_step
            if finish < fewest:
                fewest = finish
    length = min(fewest, MAX_RUN_STEPS) - first_step
    if length < 1:
        return None
    added = blocks_added_per_step(per_offset, length, first_step)
    length = int(np.searchsorted(added, kv.free_blocks, side="right"))
    if length < 1:
        return None
    requests = survivors + list(joining) if joining else survivors
    batch = len(requests)
    # The shape a plan of these decodes would have (its pairs a float sum, as the builder keeps them).
    context = kv_read + batch * first_step
    shape = StepShape(batch, batch, batch, float(context), context)
    plan = StepPlan(tuple(zip(requests, repeat(1))), shape, decodes=batch)
    durations, flops, hbm_bytes = run_costs(shape, batch, length, cost_model)
    segment = DecodeRun(plan, requests, start_s, length, durations, flops, hbm_bytes, added[:length])
    segment.offset, segment.per_offset, segment.kv_read_start = first_step, per_offset, kv_read
    segment.next_finish = fewest
    segment.first_end_s = float(run.ends_s[0]) if run.first_end_s is None else run.first_end_s
    segment.prev_end_s = prev_end_s
    segment.gaps = run.gaps
    if joining:
        # A joiner's gaps after its first step start after this segment's first-step entry.
        position, first_end = run.gaps.count + 1, float(segment.ends_s[0])
        for request in joining:
            joiners[request.id] = (first_step, position, first_end)
        segment.joined = len(joining)
    segment.joiners = joiners
    return segment
