"""The last stage of every source: limits, length checks, context clipping, labels, then specs.

Request batches become ``RequestSpec`` objects here, one chunk at a time, and
only for rows within the limits. Every source's lengths get the same
treatment: counts outside ``[1, TOKEN_CEILING]`` (a zero in a trace) are
moved to the bound and counted, then prompt plus output is clipped to the
model's context and counted, then the label rules run.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import repeat

import numpy as np

from simulator.engine.request import RequestSpec
from workloads.batch import RequestBatch
from workloads.config_base import TOKEN_CEILING
from workloads.labels import Labeller
from workloads.lengths import clip_tokens
from workloads.stream import CHUNK, Limits, WorkloadStats


def request_specs(batches: Iterator[RequestBatch], limits: Limits, max_output_tokens: int | None,
                  context_tokens: int | None, labeller: Labeller, stats: WorkloadStats) -> Iterator[RequestSpec]:
    """Specs for the rows of ``batches`` within ``limits``."""
    handed_out = 0
    for big in batches:
        for start in range(0, len(big), CHUNK):
            batch = big.take(slice(start, start + CHUNK)) if len(big) > CHUNK else big
            rows = limits.rows_within(handed_out, batch.arrival_s)
            done = rows < len(batch) or limits.num_requests == handed_out + rows
            if rows < len(batch):
                batch = batch.take(slice(0, rows))
            _check_lengths(batch, stats)
            if context_tokens is not None:
                clip_to_context(batch, context_tokens, max_output_tokens, stats)
            if labeller.rules:
                labeller.label_batch(batch)
            yield from _specs(batch, max_output_tokens)
            handed_out += rows
            if done:
                return


def _check_lengths(batch: RequestBatch, stats: WorkloadStats) -> None:
    batch.prompt_tokens, prompt_moved = clip_tokens(batch.prompt_tokens, 1, TOKEN_CEILING)
    batch.output_tokens, output_moved = clip_tokens(batch.output_tokens, 1, TOKEN_CEILING)
    if batch.prompt_clipped is not None:
        prompt_moved |= batch.prompt_clipped
    if batch.output_clipped is not None:
        output_moved |= batch.output_clipped
    stats.clipped_prompts += int(np.count_nonzero(prompt_moved))
    stats.clipped_outputs += int(np.count_nonzero(output_moved))


def clip_to_context(batch: RequestBatch, context_tokens: int, max_output_tokens: int | None,
                    stats: WorkloadStats) -> None:
    """Cut prompt plus (capped) output to ``context_tokens``, keeping at least one output token.

    A prompt that alone fills the context keeps its first ``context - 1``
    tokens; the output then stops where the context ends, as a server with
    that ``max_model_len`` would stop it.
    """
    served = batch.output_tokens if max_output_tokens is None else np.minimum(batch.output_tokens,
                                                                              max_output_tokens)
    over = batch.prompt_tokens + served > context_tokens
    if not over.any():
        return
    batch.prompt_tokens = np.minimum(batch.prompt_tokens, context_tokens - 1)
    batch.output_tokens = np.where(over, np.minimum(served, context_tokens - batch.prompt_tokens),
                                   batch.output_tokens)
    stats.clipped_to_context += int(np.count_nonzero(over))


def _specs(batch: RequestBatch, max_output_tokens: int | None) -> Iterator[RequestSpec]:
    n = len(batch)
    columns = [batch.arrival_s.tolist(), batch.prompt_tokens.tolist(), batch.output_tokens.tolist()]
    if batch.prefix_hashes is None and not batch.labels:
        for arrival, prompt, output in zip(*columns, strict=True):
            yield RequestSpec(arrival, prompt, output, max_output_tokens)
        return
    labels = batch.labels

    def column(name: str, default: object):
        return labels[name].tolist() if name in labels else repeat(default, n)

    hashes = batch.prefix_hashes.tolist() if batch.prefix_hashes is not None else repeat((), n)
    for arrival, prompt, output, hashed, session, tenant, priority, slo in zip(
            *columns, hashes, column("session_id", None), column("tenant", "default"),
            column("priority", 0), column("slo_class", "default")):
        yield RequestSpec(arrival, prompt, output, max_output_tokens, hashed, batch.prefix_block_tokens,
                          session, tenant, priority, slo)
