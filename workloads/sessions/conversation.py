"""Multi-turn conversations: each turn appends a user message to the whole conversation so far.

A conversation arrives by the configured process and has a number of turns
drawn from ``turns``. Turn ``k`` sends the user's message (``lengths.prompt``;
the first also carries ``system_prompt_tokens``) after the previous reply
and a think time; its prompt is every earlier message and reply plus the new
message, so consecutive turns share a growing KV prefix (the engine derives
the prefix hashes from the session id).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from simulator.engine.session import SessionSpec
from workloads.arrivals import arrival_process
from workloads.config_sessions import ConversationConfig
from workloads.lengths import length_samplers
from workloads.samplers import count_sampler, duration_sampler
from workloads.sessions.chains import SESSION_CHUNK, split_calls
from workloads.stream import WorkloadStats


def conversations(config: ConversationConfig, rng: np.random.Generator, base_dir: Path, prefix: str,
                  stats: WorkloadStats) -> Iterator[SessionSpec]:
    """Endless conversations (or ``num_sessions`` of them) in arrival order."""
    process = arrival_process(config.arrivals)
    turns = count_sampler(config.turns)
    prompts, outputs = length_samplers(config.lengths, base_dir)
    think = duration_sampler(config.think_time)
    return _draw(config, process, turns, prompts, outputs, think, rng.spawn(5), prefix, stats)


def _draw(config, process, turns, prompts, outputs, think, streams, prefix, stats) -> Iterator[SessionSpec]:
    arrivals_rng, turns_rng, prompts_rng, outputs_rng, think_rng = streams
    made = 0
    while config.num_sessions is None or made < config.num_sessions:
        n = SESSION_CHUNK if config.num_sessions is None else min(SESSION_CHUNK, config.num_sessions - made)
        times = process.times(arrivals_rng, n).tolist()
        counts = turns(turns_rng, n)
        total = int(counts.sum())
        messages, prompt_clipped = prompts.sample(prompts_rng, total)
        replies, output_clipped = outputs.sample(outputs_rng, total)
        stats.clipped_prompts += int(prompt_clipped.sum())
        stats.clipped_outputs += int(output_clipped.sum())
        firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        messages[firsts] += config.system_prompt_tokens
        calls = split_calls(counts, messages, replies, think(think_rng, total), ("turn", "turn"))
        for index, (arrival, chain) in enumerate(zip(times, calls)):
            yield SessionSpec(f"{prefix}conversation-{made + index}", arrival, chain, carries_context=True,
                              kind="conversation")
        made += n
