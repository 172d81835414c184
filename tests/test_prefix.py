"""Prefix sharing implied by trace hashes: ``implied_shared_prefix_tokens`` and the Mooncake hash ids.

The helper is checked three ways: hand-worked cases, a brute-force reference
that enumerates every engine block identity, and a serial replay through the
engine's own ``KVCache`` (infinite capacity, one request at a time), which is
the number a simulated Mooncake replay should reach when requests do not
overlap and nothing is evicted.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.engine.kv_cache import KVCache
from simulator.engine.request import Request, RequestSpec
from workloads import implied_shared_prefix_tokens
from workload_helpers import run, shared, trace

MOONCAKE = "mooncake/conversation_trace.jsonl"


def spec(hashes: tuple[int, ...], prompt: int, source: int = 512) -> RequestSpec:
    return RequestSpec(0.0, prompt, 1, prefix_hashes=hashes, prefix_block_tokens=source)


def reference(specs: list[RequestSpec], block_size: int) -> int:
    """Every engine block's identity spelled out: the hashes up to its last token's source block, and its index."""
    seen: set[tuple] = set()
    total = 0
    for s in specs:
        covered = min(s.prompt_tokens, len(s.prefix_hashes) * s.prefix_block_tokens) // block_size
        blocks = [(s.prefix_hashes[:((j + 1) * block_size - 1) // s.prefix_block_tokens + 1], j)
                  for j in range(covered)]
        hit = next((j for j, block in enumerate(blocks) if block not in seen), covered)
        if hit * block_size >= s.prompt_tokens:
            hit = (s.prompt_tokens - 1) // block_size
        total += hit * block_size
        seen.update(blocks)
    return total


def engine_hits(specs: list[RequestSpec], block_size: int) -> int:
    """Prefix-hit tokens of the engine's KV cache serving the specs one after another, never evicting."""
    cache = KVCache(num_blocks=10**9, block_size=block_size, watermark_blocks=0)
    total = 0
    for index, s in enumerate(specs):
        request = Request(index, s)
        hit = cache.prefix_hit_blocks(request)
        cache.attach_prefix(request, hit)
        assert cache.grow(request, s.prompt_tokens)
        request.computed_tokens = s.prompt_tokens
        cache.publish(request)
        cache.free(request)
        total += hit * block_size
    return total


@pytest.mark.parametrize(("specs", "block_size", "expected"), [
    ([spec((1, 2), 1024), spec((1, 2), 1024)], 16, 1008),       # all but the last block: one token computed
    ([spec((1, 2), 1024), spec((1, 3), 1024)], 16, 512),        # only the first 512-token block is shared
    ([spec((1, 2), 600), spec((1, 2), 1024)], 16, 592),         # the first request cached 37 whole blocks
    ([spec((1, 2), 1024), spec((1, 2), 1024)], 512, 512),       # whole engine blocks only
    ([spec((1, 2), 1024), spec((1, 2, 3), 2000)], 1024, 1024),  # engine blocks larger than source blocks
    ([spec((1,), 512), spec((2,), 512)], 16, 0),
    ([spec((1, 2), 1024), RequestSpec(0.0, 1024, 1), spec((1, 2), 1024)], 16, 1008),
])
def test_hand_worked_cases(specs, block_size, expected):
    assert implied_shared_prefix_tokens(specs, block_size) == expected == reference(specs, block_size)


requests = st.lists(st.tuples(st.lists(st.integers(0, 3), min_size=1, max_size=6), st.integers(1, 700)),
                    min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(requests=requests, block_size=st.sampled_from([1, 7, 16, 48, 100, 128, 256]),
       source=st.sampled_from([64, 100, 128]))
def test_matches_the_brute_force_reference(requests, block_size, source):
    # A small hash alphabet and short lists make shared prefixes frequent.
    specs = [spec(tuple(hashes), prompt, source) for hashes, prompt in requests]
    assert implied_shared_prefix_tokens(specs, block_size) == reference(specs, block_size)


def test_mooncake_specs_carry_the_hash_ids_and_the_implied_hits_match_the_engines_cache():
    specs = run(trace(shared(MOONCAKE), transforms={"first_n": 400}))
    assert all(s.prefix_block_tokens == 512 and len(s.prefix_hashes) == -(-s.prompt_tokens // 512)
               for s in specs)
    for block_size in (16, 512):
        implied = implied_shared_prefix_tokens(specs, block_size)
        assert implied == reference(specs, block_size) == engine_hits(specs, block_size)
    prompts = np.array([s.prompt_tokens for s in specs])
    assert 0.1 < implied_shared_prefix_tokens(specs, 16) / prompts.sum() < 0.9


def test_whole_mooncake_trace_at_the_source_block_size():
    specs = run(trace(shared(MOONCAKE)))
    assert implied_shared_prefix_tokens(specs, 512) == reference(specs, 512)


def test_block_size_must_be_positive():
    with pytest.raises(ValueError, match="block_size must be positive"):
        implied_shared_prefix_tokens([], 0)
