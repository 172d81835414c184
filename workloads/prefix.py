"""The prefix-cache hits a trace implies, computed from its hashes alone (independently of the engine).

``implied_shared_prefix_tokens`` answers: with a perfect, infinite prefix
cache of ``block_size``-token blocks, serving the requests one after another,
how many prompt tokens would be read from the cache? A request's engine
block ``j`` (whole blocks of its prompt only) is identified by the hashes of
every source block up to the one holding the block's last token, plus ``j``;
the first request with that identity computes it, later ones hit, and a
request's hits stop at its first miss. As in vLLM, at least one prompt token
is always computed, so the step that finishes the prompt samples a token.

Identities are kept exactly (a trie of hash prefixes, no hashing collisions)
and per trie node only the furthest engine block seen so far is stored, so
the cost is per source block, not per engine block.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from simulator.engine.request import RequestSpec


class PerfectPrefixCache:
    """An infinite prefix cache of ``block_size``-token blocks, fed one request at a time."""

    def __init__(self, block_size: int) -> None:
        if block_size <= 0:
            raise ValueError("block_size must be positive")
        self.block_size = block_size
        self._nodes: dict[tuple[int, int], int] = {}
        self._furthest: dict[int, int] = {}  # trie node -> blocks covered by the longest request through it

    def serve(self, hashes: Sequence[int], prompt_tokens: int, source_block_tokens: int) -> int:
        """Prompt tokens of this request found in the cache; its blocks are cached afterwards."""
        if not hashes:
            return 0
        size = self.block_size
        path, node = [], 0
        for value in hashes:
            node = self._nodes.setdefault((node, value), len(self._nodes) + 1)
            path.append(node)
        covered = min(prompt_tokens, len(path) * source_block_tokens) // size
        hit = self._hit_blocks(path, covered, source_block_tokens)
        if hit * size >= prompt_tokens:
            hit = (prompt_tokens - 1) // size
        used = 0 if covered == 0 else (covered * size - 1) // source_block_tokens + 1
        for node in path[:used]:
            if self._furthest.get(node, 0) < covered:
                self._furthest[node] = covered
        return hit * size

    def _hit_blocks(self, path: list[int], covered: int, source: int) -> int:
        hit = 0
        while hit < covered:
            # Engine block `hit` ends in source block k; it is cached if an earlier request
            # went through the same trie node and covered at least hit + 1 blocks.
            k = ((hit + 1) * self.block_size - 1) // source
            reach = self._furthest.get(path[k], 0)
            if reach <= hit:
                break
            # Every engine block ending in source block k, up to `reach`, is cached too.
            hit = min(reach, (k + 1) * source // self.block_size, covered)
        return hit


def implied_shared_prefix_tokens(specs: Iterable[object], block_size: int) -> int:
    """Prompt tokens a perfect infinite prefix cache of ``block_size``-token blocks would serve.

    Items that are not ``RequestSpec`` or have no ``prefix_hashes`` hit nothing
    and add nothing to the cache.
    """
    cache = PerfectPrefixCache(block_size)
    return sum(cache.serve(spec.prefix_hashes, spec.prompt_tokens, spec.prefix_block_tokens)
               for spec in specs if isinstance(spec, RequestSpec) and spec.prefix_hashes)
