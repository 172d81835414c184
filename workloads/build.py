"""From a ``workload:`` configuration to the stream of requests the engine replays.

``build_workload`` does all the checking up front (reading traces and
empirical length files), then returns a lazy ``Workload``. Randomness comes
only from the generator passed in: it spawns one child stream each for arrival
gaps, prompt lengths and output lengths, so changing one distribution leaves
the draws of the others untouched, and the same seed gives the same requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from simulator.engine.request import RequestSpec
from workloads.arrivals import RenewalArrivals
from workloads.config import GeneratorConfig, LengthsConfig, WorkloadConfig
from workloads.lengths import LengthSampler, make_sampler, profile_samplers, resolve
from workloads.stream import Limits, Workload, WorkloadStats
from workloads.synthetic import Streams, generate
from workloads.trace import load_trace, replay, within_limits


def build_workload(config: WorkloadConfig, rng: np.random.Generator, base_dir: Path) -> Workload:
    """The requests of ``config`` in non-decreasing arrival order, made lazily.

    ``base_dir`` is the folder of the experiment file: relative trace and
    empirical paths are taken from there. Raises ``TraceError`` (one line,
    naming the file and the line or column) when a file cannot be used.
    Spawning child streams advances ``rng``'s spawn counter, so build each
    workload from a fresh generator of its seed to get the same requests again.
    """
    stats = WorkloadStats()
    limits = Limits(config.num_requests, config.duration_s)
    if config.trace is not None:
        trace = load_trace(config.trace, resolve(Path(base_dir), config.trace.path), stats)
        return Workload(replay(within_limits(trace, limits), config.max_output_tokens, stats), stats)
    assert config.generator is not None  # the config's validator guarantees one of the two
    return Workload(_generated(config.generator, rng, Path(base_dir), limits,
                               config.max_output_tokens, stats), stats)


def _generated(generator: GeneratorConfig, rng: np.random.Generator, base_dir: Path, limits: Limits,
               max_output_tokens: int | None, stats: WorkloadStats) -> Iterator[RequestSpec]:
    arrivals = RenewalArrivals.from_config(generator.arrivals)
    prompts, outputs = _length_samplers(generator.lengths, base_dir)
    return generate(arrivals, prompts, outputs, Streams.spawn(rng), limits, max_output_tokens, stats)


def _length_samplers(lengths: LengthsConfig, base_dir: Path) -> tuple[LengthSampler, LengthSampler]:
    if lengths.profile is not None:
        return profile_samplers(lengths.profile)
    assert lengths.prompt is not None and lengths.output is not None  # checked by the config
    return make_sampler(lengths.prompt, base_dir), make_sampler(lengths.output, base_dir)
