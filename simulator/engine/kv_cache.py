"""Paged KV memory of one instance: a block pool with reference counts and a prefix index.

Blocks are counted, not addressed: no policy or mechanism here needs to know
which physical block holds what, only how many each request holds and which
of its leading blocks are shared. A request holds

* shared blocks: its leading full prompt blocks, identified by a chained hash,
  reference-counted and findable by other requests with the same prefix;
* private blocks: the rest, owned by it alone.

A shared block whose reference count drops to zero stays cached (so a later
request with the same prefix skips its prefill) but is evictable: it counts as
free and is reclaimed, least recently used first, when an allocation needs it.
Invariant: ``raw_free + cached + referenced_shared + private_total + reserved == total``.

Retention (``simulator.engine.retention``) may *pin* indexed blocks under a
key (a workflow between two calls): a pin holds a reference like a request
does, so pinned blocks are neither free nor evictable until unpinned.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from simulator.engine.request import Request


@dataclass(slots=True)
class Holding:
    """The blocks one request holds: chained hashes of its shared blocks, and a count."""

    shared: list[int] = field(default_factory=list)
    private: int = 0

    @property
    def blocks(self) -> int:
        return len(self.shared) + self.private


def block_hashes(request: Request, block_size: int) -> tuple[int, ...]:
    """Chained identities of the request's full blocks that its prefix hashes cover.

    The workload gives hashes of blocks of ``prefix_block_tokens`` tokens (512
    in Mooncake). Engine block ``j`` ends inside source block ``k``; its content
    depends on source blocks ``0..k``, so its identity chains those hashes and
    adds ``j``.
    """
    spec = request.spec
    if not spec.prefix_hashes:
        return ()
    source = spec.prefix_block_tokens
    # Hashes may cover generated tokens too (a session's next call re-reads them).
    covered = min(request.prompt_tokens + request.output_tokens, len(spec.prefix_hashes) * source) // block_size
    chain, chains = 0, []
    for value in spec.prefix_hashes:
        chain = hash((chain, value))
        chains.append(chain)
    return tuple(hash((chains[((j + 1) * block_size - 1) // source], j)) for j in range(covered))


class KVCache:
    """Block accounting for one instance.

    Args:
        num_blocks: blocks of ``block_size`` tokens the instance can hold.
        block_size: tokens per block.
        watermark_blocks: blocks a new admission must leave free (vLLM keeps 1%)
            so that running requests can grow without immediate preemption.
    """

    def __init__(self, num_blocks: int, block_size: int, watermark_blocks: int) -> None:
        if num_blocks <= 0 or block_size <= 0 or watermark_blocks < 0:
            raise ValueError("num_blocks and block_size must be positive, watermark >= 0")
        self.total_blocks = num_blocks
        self.block_size = block_size
        self.watermark_blocks = watermark_blocks
        self.raw_free = num_blocks
        self.refcount: dict[int, int] = {}
        self.cached: OrderedDict[int, None] = OrderedDict()  # refcount 0, LRU first
        self.holdings: dict[int, Holding] = {}
        self.private_total = 0
        self.reserved = 0  # blocks taken for requests that have not claimed them yet (see reserve)
        self._hash_cache: dict[int, tuple[int, ...]] = {}
        self.pins: dict[object, list[int]] = {}  # retention pins: key -> hashes it references
        self.pin_refs: dict[int, int] = {}  # hash -> references held by pins

    # ----------------------------------------------------------------- queries
    @property
    def free_blocks(self) -> int:
        """Blocks an allocation can get: never used, or cached and evictable."""
        return self.raw_free + len(self.cached)

    @property
    def used_blocks(self) -> int:
        return self.total_blocks - self.free_blocks

    def blocks_held(self, request: Request) -> int:
        holding = self.holdings.get(request.id)
        return holding.blocks if holding else 0

    def blocks_for_tokens(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def hashes(self, request: Request) -> tuple[int, ...]:
        if not request.spec.prefix_hashes:
            return ()
        found = self._hash_cache.get(request.id)
        if found is None:
            found = self._hash_cache[request.id] = block_hashes(request, self.block_size)
        return found

    def prefix_hit_blocks(self, request: Request) -> int:
        """Leading blocks of the request already in the index (shared or cached).

        At least one prompt token is always left to compute, as in vLLM, so
        that the step that finishes the prompt samples the first token.
        """
        if not request.spec.prefix_hashes:
            return 0  # the usual case: a prompt that shares nothing (asked several times per admission)
        hit = 0
        for value in self.hashes(request):
            if value not in self.refcount:
                break
            hit += 1
        if hit * self.block_size >= request.known_tokens:
            hit = (request.known_tokens - 1) // self.block_size
        return hit

    def extra_blocks_needed(self, request: Request, total_tokens: int, hit_blocks: int = 0) -> int:
        """Blocks to allocate so the request can hold ``total_tokens`` tokens of KV.

        ``hit_blocks`` cached blocks the request would take from the index
        count towards what it holds; cached ones (refcount 0) are also counted
        in ``free_blocks``, so they are added back to the need.
        """
        held = self.blocks_held(request)
        target = self.blocks_for_tokens(total_tokens)
        reused_cached = 0
        if hit_blocks:
            hashes = self.hashes(request)
            reused_cached = sum(1 for h in hashes[:hit_blocks] if h in self.cached)
        return max(0, target - held - hit_blocks) + reused_cached

    # ------------------------------------------------------------- mutations
    def attach_prefix(self, request: Request, hit_blocks: int) -> None:
        """Make the request share its first ``hit_blocks`` blocks from the index."""
        holding = self.holdings.setdefault(request.id, Holding())
        assert holding.blocks == 0, "prefix is attached before any other allocation"
        for value in self.hashes(request)[:hit_blocks]:
            if self.refcount[value] == 0:
                del self.cached[value]
            self.refcount[value] += 1
            holding.shared.append(value)

    def grow(self, request: Request, total_tokens: int) -> bool:
        """Give the request enough private blocks for ``total_tokens``; False if memory is short."""
        holding = self.holdings.get(request.id)
        if holding is None:
            holding = self.holdings[request.id] = Holding()
        need = -(-total_tokens // self.block_size) - len(holding.shared) - holding.private
        if need <= 0:
            return True
        if need > self.free_blocks:
            return False
        taken = min(need, self.raw_free)
        self.raw_free -= taken
        for _ in range(need - taken):
            self._evict_one_cached()
        holding.private += need
        self.private_total += need
        return True

    def grow_all(self, growths: list[tuple[Request, int]]) -> int:
        """``grow`` each ``(request, total_tokens)`` in turn, when the caller knows all fit;
        returns the blocks allocated.

        A decode run commits the blocks its steps implied (the run was sized to fit
        them) for every request that crossed a block boundary: one call rather than
        one per request. Evictions are anonymous and least recently used first, so
        taking the total at once leaves the same state as growing one by one.
        """
        holdings, size, added = self.holdings, self.block_size, 0
        for request, total_tokens in growths:
            holding = holdings.get(request.id)
            if holding is None:
                holding = holdings[request.id] = Holding()
            need = -(-total_tokens // size) - len(holding.shared) - holding.private
            if need > 0:
                holding.private += need
                added += need
        from_reserve = min(added, self.reserved)
        self.reserved -= from_reserve
        self._take(added - from_reserve)
        self.private_total += added
        return added

    def reserve(self, blocks: int) -> None:
        """Take ``blocks`` from the pool now for requests that claim them later (``grow_all`` draws
        on the reservation first).

        A decode run that goes on past a finish takes the blocks its steps implied before
        the finished requests free theirs, as stepping would have, so that later allocations
        evict the same cached blocks; the survivors claim them when the run ends.
        """
        self._take(blocks)
        self.reserved += blocks

    def _take(self, blocks: int) -> None:
        """Remove ``blocks`` from the pool: never-used ones first, then cached ones, LRU first."""
        if blocks > self.free_blocks:
            raise AssertionError(f"{blocks} implied blocks do not fit in {self.free_blocks} free")
        taken = min(blocks, self.raw_free)
        self.raw_free -= taken
        for _ in range(blocks - taken):
            self._evict_one_cached()

    def publish(self, request: Request) -> None:
        """Turn the request's computed full prompt blocks into shared, indexed blocks."""
        hashes = self.hashes(request)
        holding = self.holdings.get(request.id)
        if not hashes or holding is None:
            return
        computed_full = min(request.computed_tokens // self.block_size, len(hashes))
        while len(holding.shared) < computed_full and holding.private > 0:
            value = hashes[len(holding.shared)]
            if value in self.refcount:
                # Another request computed the same block concurrently; keep ours private.
                return
            self.refcount[value] = 1
            holding.shared.append(value)
            holding.private -= 1
            self.private_total -= 1

    def free(self, request: Request) -> int:
        """Release every block the request holds; returns how many it held."""
        holding = self.holdings.pop(request.id, None)
        self._hash_cache.pop(request.id, None)
        if holding is None:
            return 0
        # Tail blocks become evictable before head blocks: insert them first.
        for value in reversed(holding.shared):
            self.refcount[value] -= 1
            if self.refcount[value] == 0:
                self.cached[value] = None
        self.raw_free += holding.private
        self.private_total -= holding.private
        return holding.blocks

    # ------------------------------------------------------------------ pins
    def shared_hashes(self, request: Request) -> tuple[int, ...]:
        """The indexed blocks the request holds, in order."""
        holding = self.holdings.get(request.id)
        return tuple(holding.shared) if holding else ()

    def indexed_prefix(self, hashes: tuple[int, ...] | list[int]) -> int:
        """How many leading ``hashes`` are in the index (held, pinned or cached)."""
        count = 0
        for value in hashes:
            if value not in self.refcount:
                break
            count += 1
        return count

    def pin(self, key: object, hashes: tuple[int, ...] | list[int]) -> int:
        """Reference the indexed leading ``hashes`` under ``key`` (replacing its old pin); returns how many."""
        kept = list(hashes[:self.indexed_prefix(hashes)])
        for value in kept:
            if self.refcount[value] == 0:
                del self.cached[value]
            self.refcount[value] += 1
            self.pin_refs[value] = self.pin_refs.get(value, 0) + 1
        self.unpin(key)
        if kept:
            self.pins[key] = kept
        return len(kept)

    def unpin(self, key: object, drop: bool = False) -> int:
        """Release ``key``'s pin; blocks nobody else holds become cached (LRU), or free with ``drop``."""
        hashes = self.pins.pop(key, None)
        if not hashes:
            return 0
        for value in reversed(hashes):
            self.refcount[value] -= 1
            left = self.pin_refs[value] - 1
            if left:
                self.pin_refs[value] = left
            else:
                del self.pin_refs[value]
            if self.refcount[value] == 0:
                if drop:
                    del self.refcount[value]
                    self.raw_free += 1
                else:
                    self.cached[value] = None
        return len(hashes)

    def load_pinned(self, key: object, hashes: tuple[int, ...] | list[int]) -> bool:
        """Pin ``hashes`` under ``key``, allocating the blocks not indexed (a reload from host).

        False, and no change, when the missing blocks do not fit in free memory.
        """
        present = [h for h in hashes if h in self.refcount]
        reusable = sum(1 for h in present if self.refcount[h] == 0)
        missing = len(hashes) - len(present)
        if missing > self.free_blocks - reusable:
            return False
        self.pin(key, present)
        own = self.pins.setdefault(key, [])
        for value in hashes:
            if value in self.refcount:
                continue
            if self.raw_free:
                self.raw_free -= 1
            else:
                self._evict_one_cached()
            self.refcount[value] = 1
            self.pin_refs[value] = self.pin_refs.get(value, 0) + 1
            own.append(value)
        if not own:
            del self.pins[key]
        return True

    def pin_only_blocks(self) -> int:
        """Blocks that only pins reference (retained KV that no request in flight holds)."""
        return sum(1 for value, refs in self.pin_refs.items() if self.refcount[value] == refs)

    def drop_cached(self) -> int:
        """Forget every cached block (the GPU's memory is gone, e.g. it was switched off); returns how many."""
        dropped = len(self.cached)
        for value in self.cached:
            del self.refcount[value]
        self.cached.clear()
        self.raw_free += dropped
        return dropped

    def _evict_one_cached(self) -> None:
        value, _ = self.cached.popitem(last=False)
        del self.refcount[value]
        # An evicted block returns to the raw pool, then is taken by the caller.

    # ------------------------------------------------------------ invariants
    def check(self) -> None:
        """Raise AssertionError if the accounting is inconsistent (used by tests)."""
        referenced = sum(1 for v in self.refcount.values() if v > 0)
        assert all(v >= 0 for v in self.refcount.values())
        assert all(self.refcount[h] == 0 for h in self.cached)
        assert self.raw_free >= 0 and self.private_total >= 0
        assert self.reserved >= 0
        assert self.raw_free + len(self.cached) + referenced + self.private_total + self.reserved == self.total_blocks
        assert self.private_total == sum(h.private for h in self.holdings.values())
        held = {h for hold in self.holdings.values() for h in hold.shared}
        assert referenced == len(held | set(self.pin_refs))
        assert all(self.refcount[h] >= refs > 0 for h, refs in self.pin_refs.items())
        counted: dict[int, int] = {}
        for hashes in self.pins.values():
            assert hashes, "an empty pin is removed"
            for value in hashes:
                counted[value] = counted.get(value, 0) + 1
        assert counted == self.pin_refs
