"""Bringing a decode run's requests up to date: its gap log, closing segments, finishes.

While a run is in progress (``simulator.engine.fast_forward``) its requests'
counters stand where they joined it. The steps' shared gaps are logged and
counted as each segment closes; a request is brought up to date once - when
it finishes, when the run ends, or when the policy needs it - with its own
count of steps, its first gap and the largest gap since it joined.
"""

from __future__ import annotations

from bisect import bisect_left
from heapq import heappop, heappush
from typing import TYPE_CHECKING

from simulator.engine.kv_cache import KVCache
from simulator.engine.request import Request

if TYPE_CHECKING:
    from simulator.engine.fast_forward import DecodeRun


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
                gap_histogram.add_repeated(first_gap, batch - run.joined)
            if steps > 1:
                gap_histogram.add_repeated_each(durations[1:steps], batch)
    elif steps > 1:
        gap_histogram.add_repeated_each(durations[1:steps], batch)
    if steps > 1:
        gaps.append(max(durations[1:steps]))


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


def split_finishing(run: DecodeRun, total: int | None = None,
                    entries: tuple | None = None) -> tuple[list[Request], list[Request], tuple]:
    """The requests of ``run`` that have finished by its step ``total`` (default: the segment's
    last) and those that go on, both in plan order, with the plan entries of those that go on;
    the finishers leave ``run.finishes``.

    ``entries``: the batch's plan entries, ``(request, 1)`` in the order of ``run.requests``
    (default: the segment's plan's). The survivors' entries are those same tuples: building
    a hundred new ones costs several microseconds a segment, a copy and a deletion well under one.
    """
    if total is None:
        total = run.offset + run.length
    if entries is None:
        entries = run.plan.entries
    finishing = run.finishes.pop_until(total)
    if 8 * len(finishing) > len(run.requests):  # many at once: one pass
        leaving = {id(request) for request in finishing}
        going_on, kept = [], []
        for entry in entries:
            if id(entry[0]) not in leaving:
                going_on.append(entry[0])
                kept.append(entry)
        return finishing, going_on, tuple(kept)
    going_on, kept = list(run.requests), list(entries)
    for request in finishing:
        # identity, in C: the batch is not visited in Python; the entries are in the same order
        position = going_on.index(request)
        del going_on[position]
        del kept[position]
    return finishing, going_on, tuple(kept)


class FinishOrder:
    """The steps at which a decode run's requests finish, counted from the run's start, in a heap.

    A segment ends at the first of them; its end takes out the requests that finish there
    without visiting the rest of the batch (which at a few hundred requests cost more than
    the segment's other work). Entries carry the order the requests joined the run, which
    is their order in its plan, so finishers come out in plan order as well.
    """

    __slots__ = ("_heap", "_joined")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Request]] = []
        self._joined = 0

    def add(self, requests, join_step: int) -> None:
        """Requests whose counters stand at the run's step ``join_step`` join it."""
        heap, joined = self._heap, self._joined
        for request in requests:
            heappush(heap, (request.output_tokens - request.generated_tokens + join_step, joined, request))
            joined += 1
        self._joined = joined

    def pop_until(self, step: int) -> list[Request]:
        """Take out the requests that finish by the run's step ``step``; plan order."""
        heap = self._heap
        popped = []
        while heap and heap[0][0] <= step:
            popped.append(heappop(heap))
        if len(popped) > 1:
            popped.sort(key=_joined_order)
        return [entry[2] for entry in popped]

    @property
    def first(self) -> int:
        """The step at which the next request finishes (a huge number when none is left)."""
        return self._heap[0][0] if self._heap else 1 << 62


def _joined_order(entry: tuple[int, int, Request]) -> int:
    return entry[1]
