"""One engine step as data: the builder policies fill, and the frozen plan it yields.

A batch policy never touches KV blocks or queues directly. It asks the
``StepBuilder`` to add requests with a number of tokens, to preempt or to swap
in; the builder enforces the token budget, the sequence cap and KV fit (with
the watermark for new admissions), refuses what does not fit, and keeps the
batch's ``StepShape`` up to date. ``build()`` freezes the result into a
``StepPlan`` that the cost model times and the instance commits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from simulator.engine.host import HostKVTier
from simulator.engine.kv_cache import KVCache
from simulator.engine.queues import InstanceQueues
from simulator.engine.request import REJECTED, RUNNING, Request, SWAPPED, WAITING
from simulator.perf.shape import StepShape


class Refusal(enum.Enum):
    """Why the builder refused to add a request."""

    INVALID = "not schedulable, already in this step, or token count out of range"
    TOKEN_BUDGET = "the step's token budget is spent"
    SEQUENCE_CAP = "the step's sequence cap is reached"
    KV_MEMORY = "not enough free KV blocks"


class StepPlan(NamedTuple):
    """What one step computes: ``(request, new_tokens)`` entries, and what it moved.

    A named tuple (immutable) rather than a frozen dataclass: one is built every
    step, and a tuple is several times cheaper to construct.

    Attributes:
        entries: requests in the batch with the tokens each computes this step.
        shape: aggregates the cost model reads.
        preempted: requests preempted by recompute while the step was built.
        swapped_out, swapped_in: requests whose KV moved over the host link.
        swap_bytes: bytes those swaps moved (they add to the step's time).
        rejected: waiting requests refused for good while the step was built.
        decodes: entries that compute one token of a request that already has a first
            token (pure decodes); a step of only these may start a fast-forward run.
        held: leading entries that are decodes of a held decode run's requests (see
            ``HeldDecodes``): their counters stand behind, and the run driver commits them.
    """

    entries: tuple[tuple[Request, int], ...]
    shape: StepShape
    preempted: tuple[Request, ...] = ()
    swapped_out: tuple[Request, ...] = ()
    swapped_in: tuple[Request, ...] = ()
    swap_bytes: float = 0.0
    rejected: tuple[Request, ...] = ()
    decodes: int = 0
    held: int = 0

    @property
    def is_empty(self) -> bool:
        return not self.entries

    @property
    def num_tokens(self) -> int:
        return self.shape.num_tokens


@dataclass(frozen=True, slots=True)
class StepLimits:
    """Per-step caps: batched tokens and sequences."""

    max_batched_tokens: int
    max_num_seqs: int


class HeldDecodes(NamedTuple):
    """The running batch of an instance whose decode run was cut short by an arrival and is held:
    its requests' counters stand behind (where each joined the run), so the next step's decodes
    are given as aggregates (the run's arithmetic) rather than read from each request.

    Attributes:
        requests: the batch, in admission order (every running request of the instance).
        kv_read_tokens: the step's context of the batch: the sum of each request's computed
            tokens plus one (its attention pairs are the same number).
        new_blocks: KV blocks the batch needs for this step (requests that cross into a block).
        entries: ``(request, 1)`` for each of ``requests``: the step's leading plan entries (the
            run driver keeps them from one held step to the next while nobody finishes).
    """

    requests: list[Request]
    kv_read_tokens: int
    new_blocks: int
    entries: tuple[tuple[Request, int], ...]


_SCHEDULABLE = (WAITING, RUNNING)


def requests_after(running: list[Request], batch: list[Request]) -> list[Request] | None:
    """The running requests after ``batch`` (a held run's requests), when ``batch`` leads the
    running list; None when it does not (the running list changed under the held run)."""
    members = len(batch)
    if len(running) < members or (members and running[members - 1] is not batch[-1]):
        return None
    return running[members:]


class StepBuilder:
    """Collects one step's batch while enforcing budgets and KV capacity.

    Args:
        kv: the instance's KV cache (allocations happen as requests are added).
        queues: the instance's queues (admission and preemption move requests).
        host: the host DRAM tier for swaps, or None when swapping is off.
        limits: token and sequence caps of this step.
        kv_bytes_per_token: bytes of one token's KV on this instance.
        held: the running batch when it is a held decode run (see ``add_held_decodes``).
    """

    def __init__(self, kv: KVCache, queues: InstanceQueues, host: HostKVTier | None,
                 limits: StepLimits, kv_bytes_per_token: float, held: HeldDecodes | None = None) -> None:
        self.kv, self.queues, self.host, self.limits = kv, queues, host, limits
        self.kv_bytes_per_token = kv_bytes_per_token
        self.held = held
        self.tokens_left = limits.max_batched_tokens
        self.seqs_left = limits.max_num_seqs
        self._entries: list[tuple[Request, int]] = []  # after the held decodes' entries, if any
        self._held_entries: tuple[tuple[Request, int], ...] = ()
        self._in_batch: set[int] = set()
        self._preempted: list[Request] = []
        self._swapped_out: list[Request] = []
        self._swapped_in: list[Request] = []
        self._swap_bytes = 0.0
        self._rejected: list[Request] = []
        self._tokens = self._sampled = self._kv_read = 0
        self._pairs = 0.0
        self._decodes = 0
        self._held = 0

    # ----------------------------------------------------------------- queries
    def in_batch(self, request: Request) -> bool:
        return request.id in self._in_batch

    def pending_tokens(self, request: Request) -> int:
        """Tokens the request would compute to reach its next token, after prefix hits."""
        pending = request.prompt_tokens + request.generated_tokens - request.computed_tokens
        if request.status is WAITING and request.computed_tokens == 0:
            return pending - self.kv.prefix_hit_blocks(request) * self.kv.block_size
        return pending

    def check(self, request: Request, num_tokens: int) -> Refusal | None:
        """Why ``add(request, num_tokens)`` would be refused, or None if it would succeed."""
        if request.id in self._in_batch or request.status not in _SCHEDULABLE:
            return Refusal.INVALID
        if num_tokens < 1 or num_tokens > self.pending_tokens(request):
            return Refusal.INVALID
        if num_tokens > self.tokens_left:
            return Refusal.TOKEN_BUDGET
        if self.seqs_left < 1:
            return Refusal.SEQUENCE_CAP
        if request.status is WAITING:
            hit = self.kv.prefix_hit_blocks(request) if request.computed_tokens == 0 else 0
            need = self.kv.extra_blocks_needed(request, hit * self.kv.block_size + num_tokens, hit)
            if need + self.kv.watermark_blocks > self.kv.free_blocks:
                return Refusal.KV_MEMORY
        elif self.kv.extra_blocks_needed(request, request.computed_tokens + num_tokens) > self.kv.free_blocks:
            return Refusal.KV_MEMORY
        return None

    # --------------------------------------------------------------- actions
    def add(self, request: Request, num_tokens: int) -> bool:
        """Schedule ``num_tokens`` new tokens of ``request``; False (and no change) if refused.

        A waiting request is admitted: it takes its prefix-cache hit, gets its
        blocks (leaving the watermark free) and joins the running batch.
        """
        cached = request.computed_tokens
        if request.status is RUNNING:
            # Hot path (every decode of every step): the checks of check(), inlined;
            # grow() itself refuses, without change, when memory is short.
            known = request.prompt_tokens + request.generated_tokens
            if (request.id in self._in_batch or num_tokens < 1 or num_tokens > self.tokens_left
                    or num_tokens > known - cached or self.seqs_left < 1
                    or not self._grow_running(request, cached, num_tokens)):
                return False
            if num_tokens == 1 and known - cached == 1 and request.generated_tokens:
                self._decodes += 1
        else:
            if self.check(request, num_tokens) is not None:
                return False
            self._admit(request)
            cached = request.computed_tokens
            ok = self.kv.grow(request, cached + num_tokens)
            assert ok, "fit was checked"
        self._entries.append((request, num_tokens))
        self._in_batch.add(request.id)
        self.tokens_left -= num_tokens
        self.seqs_left -= 1
        self._tokens += num_tokens
        self._pairs += num_tokens * cached + num_tokens * (num_tokens + 1) / 2
        self._kv_read += cached + num_tokens
        self._sampled += cached + num_tokens == request.prompt_tokens + request.generated_tokens
        return True

    def add_running(self, requests: list[Request], start: int = 0) -> int:
        """Add ``requests[start:]`` in order, each running one with its pending tokens (clipped
        to what is left of the token budget); stop at the first that ``add`` refuses.

        The common loop of batch policies in one call. Requests no longer running
        (preempted while this step was built) and requests with no token to compute
        within the budget are skipped, as a policy's loop would. Returns the index of
        the refused request, or ``len(requests)`` when none was refused.
        """
        # add()'s running branch, with the builder's fields in locals: this loop runs for
        # every request of every step, so attribute traffic is most of its cost.
        running, in_batch, entries = RUNNING, self._in_batch, self._entries
        block, grow = self.kv.block_size, self.kv.grow
        tokens_left, seqs_left = self.tokens_left, self.seqs_left
        total, pairs, kv_read, sampled, decodes = self._tokens, self._pairs, self._kv_read, self._sampled, self._decodes
        for index in range(start, len(requests)):
            request = requests[index]
            if request.status is not running:
                continue
            cached = request.computed_tokens
            known = request.prompt_tokens + request.generated_tokens
            pending = known - cached
            num_tokens = pending if pending < tokens_left else tokens_left
            if num_tokens < 1:
                continue
            if request.id in in_batch or seqs_left < 1:
                break
            # _grow_running, inlined: only a request that crosses into a new block calls the cache.
            if not (cached and (cached - 1) // block == (cached + num_tokens - 1) // block or
                    grow(request, cached + num_tokens)):
                break
            if num_tokens == 1 and pending == 1 and request.generated_tokens:
                decodes += 1
            entries.append((request, num_tokens))
            in_batch.add(request.id)
            tokens_left -= num_tokens
            seqs_left -= 1
            total += num_tokens
            pairs += num_tokens * cached + num_tokens * (num_tokens + 1) / 2
            kv_read += cached + num_tokens
            sampled += cached + num_tokens == known
        else:
            index = len(requests)
        self.tokens_left, self.seqs_left = tokens_left, seqs_left
        self._tokens, self._pairs, self._kv_read, self._sampled, self._decodes = total, pairs, kv_read, sampled, decodes
        return index

    def add_held_decodes(self) -> bool:
        """Add one decode token of every request of the held batch (``held``), as ``add_running``
        over it would, without reading the requests; False (and no change) when there is no held
        batch, it does not lead the running batch or this is not the step's first entry, or a cap
        or KV refuses it.

        Running requests after the held batch (``beside_held``: newcomers that joined the
        running batch while the run was held) are the policy's to add, with ``add_running``;
        this refuses unless memory suffices for all their pending tokens as well, so adding them
        never needs a preemption (a held batch cannot be preempted: its counters stand behind).

        The batch's blocks for the step are reserved (the run driver gives them to the
        requests when it brings them up to date). The requests are not recorded as in the
        step for ``in_batch``: only preemption asks that, and a held batch is never preempted.
        """
        held, beside = self.held, self.beside_held
        if held is None or self._entries or self._held or beside is None:
            return False
        batch = len(held.requests)
        if batch > self.tokens_left or batch > self.seqs_left:
            return False
        kv = self.kv
        beside_blocks = sum(kv.extra_blocks_needed(r, r.prompt_tokens + r.generated_tokens) for r in beside)
        if held.new_blocks + beside_blocks > kv.free_blocks:
            return False
        kv.reserve(held.new_blocks)
        self._held_entries = held.entries
        self.tokens_left -= batch
        self.seqs_left -= batch
        self._tokens += batch
        # add_running sums cached + 1 per decode as floats; the sums are exact integers either way.
        self._pairs += float(held.kv_read_tokens)
        self._kv_read += held.kv_read_tokens
        self._sampled += batch
        self._decodes += batch
        self._held = batch
        return True

    @property
    def beside_held(self) -> list[Request] | None:
        """The running requests after the held batch (newcomers), when the held batch leads the
        running batch; None when there is no held batch or it does not lead it."""
        return None if self.held is None else requests_after(self.queues.running, self.held.requests)

    def preempt(self, request: Request) -> None:
        """Take a running request off the GPU: swap its KV out if possible, else drop it.

        The request must not already be in this step's batch.
        """
        if request.status is not RUNNING or self.in_batch(request):
            raise ValueError(f"cannot preempt {request!r}: not running, or already in this step")
        request.num_preemptions += 1
        nbytes = self.kv.blocks_held(request) * self.kv.block_size * self.kv_bytes_per_token
        if self.host is not None and self.host.can_hold(nbytes):
            self.kv.free(request)
            self.host.store(nbytes)
            self.queues.park_swapped(request)
            self._swapped_out.append(request)
            self._swap_bytes += nbytes
            return
        lost = request.computed_tokens
        self.kv.free(request)
        request.recomputed_tokens += lost
        request.computed_tokens = 0
        self.queues.requeue_front(request, lost)
        self._preempted.append(request)

    def swap_in(self, request: Request) -> bool:
        """Bring a swapped request's KV back (leaving the watermark free); False if it does not fit."""
        if request.status is not SWAPPED:
            raise ValueError(f"cannot swap in {request!r}: not swapped")
        need = self.kv.blocks_for_tokens(request.computed_tokens)
        if need + self.kv.watermark_blocks > self.kv.free_blocks:
            return False
        self.kv.grow(request, request.computed_tokens)
        nbytes = need * self.kv.block_size * self.kv_bytes_per_token
        assert self.host is not None
        self.host.release(nbytes)
        self.queues.admit(request)
        self._swapped_in.append(request)
        self._swap_bytes += nbytes
        return True

    def reject(self, request: Request, reason: str) -> None:
        """Refuse a waiting request for good (e.g. a prompt no step could ever hold)."""
        if request.status is not WAITING:
            raise ValueError(f"cannot reject {request!r}: only waiting requests can be rejected")
        self.queues.drop_waiting(request)
        request.status = REJECTED
        request.reject_reason = reason
        self._rejected.append(request)

    def build(self) -> StepPlan:
        entries = self._held_entries + tuple(self._entries) if self._held else tuple(self._entries)
        shape = StepShape(self._tokens, len(entries), self._sampled, self._pairs, self._kv_read)
        return StepPlan(entries, shape, tuple(self._preempted),
                        tuple(self._swapped_out), tuple(self._swapped_in), self._swap_bytes,
                        tuple(self._rejected), self._decodes, self._held)

    # --------------------------------------------------------------- helpers
    def _grow_running(self, request: Request, cached: int, num_tokens: int) -> bool:
        """Blocks for ``num_tokens`` more tokens of a running request; False if memory is short.

        A running request holds blocks for its computed tokens (an invariant the
        guards check), so tokens that stay in its last block need no call to the cache.
        """
        block = self.kv.block_size
        if cached and (cached - 1) // block == (cached + num_tokens - 1) // block:
            return True
        return self.kv.grow(request, cached + num_tokens)

    def _admit(self, request: Request) -> None:
        if request.computed_tokens == 0:
            hit = self.kv.prefix_hit_blocks(request)
            if hit:
                self.kv.attach_prefix(request, hit)
                hit_tokens = hit * self.kv.block_size
                request.computed_tokens = hit_tokens
                request.prefix_hit_tokens += hit_tokens
                self.queues.pending_tokens -= hit_tokens
        self.queues.admit(request)
