"""Closed-loop clients: N users, each sending a request, waiting for the answer, thinking, and again.

Each client is a ``SessionSpec`` of independent calls (``carries_context``
false) with ``kind="client"`` and ``resubmit_on_reject`` true: the engine
releases a client's next call when the previous one has finished and the
think time has passed, so the offered load adapts to the cluster's speed.
Clients start spread evenly over ``[0, ramp_s)``. With ``num_requests``
instead of ``requests_per_client``, the calls are shared out as evenly as
possible (the first ``num_requests % clients`` clients make one more).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from simulator.engine.session import SessionSpec
from workloads.config_sessions import ClosedLoopConfig
from workloads.lengths import length_samplers
from workloads.samplers import duration_sampler
from workloads.sessions.chains import SESSION_CHUNK, split_calls
from workloads.stream import WorkloadStats


def closed_loop_clients(config: ClosedLoopConfig, num_requests: int | None, rng: np.random.Generator,
                        base_dir: Path, prefix: str, stats: WorkloadStats) -> Iterator[SessionSpec]:
    """The clients in order of their start times."""
    counts = _calls_per_client(config, num_requests)
    prompts, outputs = length_samplers(config.lengths, base_dir)
    think = duration_sampler(config.think_time)
    return _draw(config, counts, prompts, outputs, think, rng.spawn(3), prefix, stats)


def _draw(config, counts, prompts, outputs, think, streams, prefix, stats) -> Iterator[SessionSpec]:
    prompts_rng, outputs_rng, think_rng = streams
    for start in range(0, config.clients, SESSION_CHUNK):
        group = counts[start:start + SESSION_CHUNK]
        group = group[group > 0]
        if not len(group):
            return
        total = int(group.sum())
        prompt_tokens, prompt_clipped = prompts.sample(prompts_rng, total)
        output_tokens, output_clipped = outputs.sample(outputs_rng, total)
        stats.clipped_prompts += int(prompt_clipped.sum())
        stats.clipped_outputs += int(output_clipped.sum())
        chains = split_calls(group, prompt_tokens, output_tokens, think(think_rng, total), ("request", "request"))
        for index, chain in enumerate(chains, start=start):
            yield SessionSpec(f"{prefix}client-{index}", config.ramp_s * index / config.clients, chain,
                              carries_context=False, kind="client", resubmit_on_reject=True)


def _calls_per_client(config: ClosedLoopConfig, num_requests: int | None) -> np.ndarray:
    if config.requests_per_client is not None:
        return np.full(config.clients, config.requests_per_client, dtype=np.int64)
    assert num_requests is not None, "the config requires requests_per_client or num_requests"
    base, extra = divmod(num_requests, config.clients)
    return base + (np.arange(config.clients) < extra).astype(np.int64)
