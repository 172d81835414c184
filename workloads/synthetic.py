"""Synthetic workloads: an arrival process and two length samplers, drawn in chunks.

Each chunk draws ``CHUNK`` arrival gaps, prompt lengths and output lengths
from three independent random streams, then hands out the rows that fall
within the limits. Chunks are always drawn whole, so a shorter run is an
exact prefix of a longer one with the same seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from simulator.engine.request import RequestSpec
from workloads.arrivals import RenewalArrivals
from workloads.lengths import LengthSampler
from workloads.stream import CHUNK, Limits, WorkloadStats, specs_from_columns


@dataclass(frozen=True)
class Streams:
    """The independent random streams a synthetic workload draws from."""

    arrivals: np.random.Generator
    prompts: np.random.Generator
    outputs: np.random.Generator

    @classmethod
    def spawn(cls, rng: np.random.Generator) -> Streams:
        # Spawned children are independent of each other and fixed by the parent's seed.
        arrivals, prompts, outputs = rng.spawn(3)
        return cls(arrivals, prompts, outputs)


def generate(
    arrivals: RenewalArrivals, prompts: LengthSampler, outputs: LengthSampler,
    streams: Streams, limits: Limits, max_output_tokens: int | None, stats: WorkloadStats,
) -> Iterator[RequestSpec]:
    """Request specs in arrival order until a limit is reached."""
    if limits.num_requests is None and limits.duration_s is None:
        raise ValueError("a synthetic workload needs num_requests or duration_s")
    handed_out, now = 0, 0.0
    while True:
        times = arrivals.times_after(streams.arrivals, now, CHUNK)
        prompt_tokens, prompt_clipped = prompts.sample(streams.prompts, CHUNK)
        output_tokens, output_clipped = outputs.sample(streams.outputs, CHUNK)
        rows = limits.rows_within(handed_out, times)
        stats.clipped_prompts += int(np.count_nonzero(prompt_clipped[:rows]))
        stats.clipped_outputs += int(np.count_nonzero(output_clipped[:rows]))
        yield from specs_from_columns(times[:rows], prompt_tokens[:rows], output_tokens[:rows],
                                      max_output_tokens)
        handed_out += rows
        if rows < CHUNK or handed_out == limits.num_requests:
            return
        now = float(times[-1])
