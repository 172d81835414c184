"""Synthetic open-loop requests: an arrival process and two length samplers, drawn in chunks.

Each chunk draws ``CHUNK`` arrival times, prompt lengths and output lengths
from three independent random streams (spawned from the source's generator),
so changing one distribution leaves the draws of the others untouched.
Chunks are always drawn whole, so a shorter run is an exact prefix of a
longer one with the same seed. The stream is endless: limits stop it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from workloads.arrivals import arrival_process
from workloads.batch import RequestBatch
from workloads.config_generators import GeneratorConfig
from workloads.lengths import length_samplers
from workloads.stream import CHUNK


def generated_batches(config: GeneratorConfig, rng: np.random.Generator, base_dir: Path) -> Iterator[RequestBatch]:
    """Endless batches of ``CHUNK`` generated requests in arrival order."""
    process = arrival_process(config.arrivals)
    prompts, outputs = length_samplers(config.lengths, base_dir)
    return _draw(process, prompts, outputs, *rng.spawn(3))


def _draw(process, prompts, outputs, arrivals_rng, prompts_rng, outputs_rng) -> Iterator[RequestBatch]:
    while True:
        times = process.times(arrivals_rng, CHUNK)
        prompt_tokens, prompt_clipped = prompts.sample(prompts_rng, CHUNK)
        output_tokens, output_clipped = outputs.sample(outputs_rng, CHUNK)
        yield RequestBatch(times, prompt_tokens, output_tokens, prompt_clipped=prompt_clipped,
                           output_clipped=output_clipped)
