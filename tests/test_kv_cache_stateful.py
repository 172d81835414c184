"""Stateful property test of the paged KV cache: random admissions, growth, publishes and frees.

Requests draw their prompts' prefix hashes from a small pool of shared
prefixes, so prefix hits, shared reference counts, cached (evictable) blocks
and LRU eviction all happen. After every rule the block accounting must hold
(``KVCache.check``), usage stays within capacity, a refused ``grow`` changes
nothing, and the builder's fit prediction (``extra_blocks_needed``) agrees
with what attaching the prefix and growing actually does.
"""

from __future__ import annotations

import copy

import hypothesis.strategies as st
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from simulator.engine.kv_cache import KVCache
from simulator.engine.request import Request, RequestSpec

BLOCK = 4
SOURCE_BLOCK = 8  # prefix_block_tokens: two engine blocks per source hash

# Three families of shared prefixes; a request takes a leading slice of one family's
# hashes (so requests of a family share their first blocks), or private hashes.
PREFIX_FAMILIES = (
    (11, 12, 13, 14, 15, 16),
    (11, 12, 23, 24, 25, 26),  # shares its first two source blocks with family 0
    (31, 32, 33, 34, 35, 36),
)


def snapshot(kv: KVCache) -> tuple:
    """Everything a refused mutation must leave untouched."""
    holdings = {rid: (tuple(h.shared), h.private) for rid, h in kv.holdings.items()}
    return (kv.raw_free, dict(kv.refcount), tuple(kv.cached), holdings, kv.private_total)


class KVCacheMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.kv: KVCache | None = None
        self.fresh: list[Request] = []  # created, nothing allocated yet
        self.live: list[Request] = []  # holding blocks (possibly zero)
        self.next_id = 0
        self.unique_hash = 1000
        self.attached: dict[int, int] = {}  # request id -> prefix blocks it attached

    @initialize(num_blocks=st.integers(4, 24), watermark=st.integers(0, 2))
    def setup(self, num_blocks: int, watermark: int) -> None:
        self.kv = KVCache(num_blocks, BLOCK, watermark)

    # ------------------------------------------------------------- helpers
    def _pick(self, pool: list[Request], index: int) -> Request:
        return pool[index % len(pool)]

    def _held_tokens(self, request: Request) -> int:
        return self.kv.blocks_held(request) * BLOCK

    # --------------------------------------------------------------- rules
    @rule(family=st.sampled_from([0, 0, 1, 1, 2, -1]), hashes=st.sampled_from([6, 6, 4, 3, 2, 1, 0]),
          prompt=st.integers(1, 60), output=st.integers(1, 20))
    def new_request(self, family: int, hashes: int, prompt: int, output: int) -> None:
        if family < 0:
            prefix = tuple(range(self.unique_hash, self.unique_hash + hashes))
            self.unique_hash += hashes
        else:
            prefix = PREFIX_FAMILIES[family][:hashes]
        spec = RequestSpec(0.0, prompt, output, prefix_hashes=prefix, prefix_block_tokens=SOURCE_BLOCK)
        self.fresh.append(Request(self.next_id, spec))
        self.next_id += 1

    @rule(index=st.integers(0, 10_000), extra=st.integers(0, 40), use_hit=st.booleans())
    def attach_prefix(self, index: int, extra: int, use_hit: bool) -> None:
        """Admit a fresh request the way the step builder does: take the prefix hit, then grow."""
        if not self.fresh:
            return
        request = self._pick(self.fresh, index)
        kv = self.kv
        hit = kv.prefix_hit_blocks(request) if use_hit else 0
        assert request.id not in kv.holdings
        assert 0 <= hit <= len(kv.hashes(request))
        assert hit * BLOCK < request.known_tokens, "at least one prompt token is left to compute"
        target = hit * BLOCK + min(extra, request.known_tokens - hit * BLOCK)
        predicted_fit = kv.extra_blocks_needed(request, target, hit) <= kv.free_blocks
        before = snapshot(kv)
        used_before = kv.used_blocks
        kv.attach_prefix(request, hit)
        assert kv.blocks_held(request) == hit
        request.computed_tokens = hit * BLOCK
        grown = kv.grow(request, target)
        assert grown == predicted_fit, (
            f"extra_blocks_needed predicted fit={predicted_fit} but grow returned {grown}")
        if not grown:
            # Undo the prefix attach so the request stays fresh; the cache must be as before.
            kv.free(request)
            request.computed_tokens = 0
            raw_free, refcount, cached, holdings, private_total = before
            assert (kv.raw_free, kv.refcount, set(kv.cached), kv.private_total) == (
                raw_free, refcount, set(cached), private_total)
            assert {rid: (tuple(h.shared), h.private) for rid, h in kv.holdings.items()} == holdings
            assert kv.used_blocks == used_before
            return
        self.attached[request.id] = hit
        event(f"admitted with prefix hit: {hit > 0}")
        assert kv.blocks_held(request) == max(hit, kv.blocks_for_tokens(target))
        self.fresh.remove(request)
        self.live.append(request)

    @rule(index=st.integers(0, 10_000), extra=st.integers(0, 80))
    def grow(self, index: int, extra: int) -> None:
        if not self.live:
            return
        request = self._pick(self.live, index)
        kv = self.kv
        held = kv.blocks_held(request)
        target = max(request.computed_tokens, self._held_tokens(request)) + extra
        need = kv.blocks_for_tokens(target) - held
        free = kv.free_blocks
        before = snapshot(kv)
        cached = len(kv.cached)
        ok = kv.grow(request, target)
        event(f"grow refused: {not ok}")
        event(f"grow evicted cached blocks: {ok and len(kv.cached) < cached}")
        event(f"grow with cached blocks present: {cached > 0}")
        if not ok:
            assert need > free
            assert snapshot(kv) == before, "a refused grow must change nothing"
        else:
            assert need <= free
            assert kv.blocks_held(request) == max(held, kv.blocks_for_tokens(target))
            assert kv.free_blocks == free - max(0, need)

    @rule(picks=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 12)), min_size=1, max_size=5))
    def grow_all(self, picks: list[tuple[int, int]]) -> None:
        """Growing several requests at once (a decode run's commit) equals growing them in turn."""
        if not self.live:
            return
        kv = self.kv
        growths, seen = [], set()
        for index, extra in picks:
            request = self._pick(self.live, index)
            if request.id not in seen:
                seen.add(request.id)
                growths.append((request, max(request.computed_tokens, self._held_tokens(request)) + extra))
        stepwise = copy.deepcopy(kv)
        if not all(stepwise.grow(request, tokens) for request, tokens in growths):
            return  # grow_all is only called when everything fits
        event(f"grow_all evicted cached blocks: {len(stepwise.cached) < len(kv.cached)}")
        kv.grow_all(growths)
        assert snapshot(kv) == snapshot(stepwise)

    @rule(index=st.integers(0, 10_000), advance=st.integers(0, 80), generate=st.booleans())
    def publish(self, index: int, advance: int, generate: bool) -> None:
        """Compute some of the tokens the request holds blocks for, then publish its full blocks."""
        if not self.live:
            return
        request = self._pick(self.live, index)
        kv = self.kv
        capacity = min(self._held_tokens(request), request.known_tokens)
        request.computed_tokens = max(request.computed_tokens, min(capacity, request.computed_tokens + advance))
        if (generate and request.computed_tokens == request.known_tokens
                and request.generated_tokens < request.output_tokens):
            request.generated_tokens += 1  # a token was sampled; the next one's KV is not computed yet
        held, free = kv.blocks_held(request), kv.free_blocks
        kv.publish(request)
        assert kv.blocks_held(request) == held, "publishing moves blocks, it does not allocate"
        assert kv.free_blocks == free
        holding = kv.holdings.get(request.id)
        if holding is not None:
            hashes = kv.hashes(request)
            assert tuple(holding.shared) == hashes[:len(holding.shared)], "shared blocks are a prefix"
            assert len(holding.shared) <= max(self.attached[request.id],
                                              min(request.computed_tokens // BLOCK, len(hashes)))

    @rule(index=st.integers(0, 10_000), requeue=st.booleans())
    def free(self, index: int, requeue: bool) -> None:
        """Finish a request, or preempt it by recompute (it comes back as a fresh request)."""
        if not self.live:
            return
        request = self._pick(self.live, index)
        kv = self.kv
        held = kv.blocks_held(request)
        used = kv.used_blocks
        assert kv.free(request) == held
        assert kv.blocks_held(request) == 0
        assert kv.used_blocks <= used
        assert kv.used_blocks >= used - held
        self.live.remove(request)
        if requeue:
            request.computed_tokens = 0
            self.fresh.append(request)

    @rule()
    def free_everything(self) -> None:
        if not self.live:
            return
        for request in list(self.live):
            self.kv.free(request)
        self.live.clear()
        assert self.kv.used_blocks == 0, "with no holders every block is free (raw or cached)"
        assert self.kv.free_blocks == self.kv.total_blocks

    # ---------------------------------------------------------- invariants
    @invariant()
    def accounting_holds(self) -> None:
        if self.kv is None:
            return
        kv = self.kv
        kv.check()
        assert 0 <= kv.used_blocks <= kv.total_blocks
        assert kv.free_blocks >= 0
        assert kv.raw_free >= 0
        # Blocks held by live requests, counting a shared block once, are exactly the used ones.
        distinct_shared = {h for r in self.live for h in kv.holdings.get(r.id, _EMPTY).shared}
        private = sum(kv.holdings[r.id].private for r in self.live if r.id in kv.holdings)
        assert len(distinct_shared) + private == kv.used_blocks
        assert set(kv.holdings) <= {r.id for r in self.live}


class _Empty:
    shared: tuple = ()
    private = 0


_EMPTY = _Empty()

KVCacheMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=50, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
TestKVCache = KVCacheMachine.TestCase


def test_copy_of_snapshot_detects_changes() -> None:
    """The snapshot used above really sees a grow (guards against a vacuous check)."""
    kv = KVCache(8, BLOCK, 0)
    request = Request(0, RequestSpec(0.0, 10, 2))
    before = copy.deepcopy(snapshot(kv))
    assert kv.grow(request, 10)
    assert snapshot(kv) != before
    assert not kv.grow(request, 10_000)
