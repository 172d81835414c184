"""Agent tasks: a chain of LLM calls separated by tool executions.

A task arrives by the configured process and makes ``calls_per_task`` calls.
The first prompt is the task itself (``first_prompt_tokens``); every later
call appends the tool's output (``step_prompt_tokens``) to the context so far
(every earlier prompt and output), after the tool ran for ``tool_latency_s``.
The engine releases a call only when the previous one and its tool wait have
finished, and measures the task's completion time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from simulator.engine.session import SessionSpec
from workloads.arrivals import arrival_process
from workloads.config_sessions import AgentConfig
from workloads.lengths import make_sampler
from workloads.samplers import count_sampler, duration_sampler
from workloads.sessions.agent_profiles import agent_dists
from workloads.sessions.chains import SESSION_CHUNK, split_calls
from workloads.stream import WorkloadStats


def agent_tasks(config: AgentConfig, rng: np.random.Generator, base_dir: Path, prefix: str,
                stats: WorkloadStats) -> Iterator[SessionSpec]:
    """Endless agent tasks (or ``num_sessions`` of them) in arrival order."""
    dists = agent_dists(config)
    process = arrival_process(config.arrivals)
    calls = count_sampler(dists["calls_per_task"])
    first, step, output = (make_sampler(dists[name], base_dir)
                           for name in ("first_prompt_tokens", "step_prompt_tokens", "output_tokens"))
    tool = duration_sampler(dists["tool_latency_s"])
    return _draw(config, process, calls, (first, step, output), tool, rng.spawn(6), prefix, stats)


def _draw(config, process, calls, samplers, tool, streams, prefix, stats) -> Iterator[SessionSpec]:
    first, step, output = samplers
    agent_type = config.profile or "agent"
    made = 0
    while config.num_sessions is None or made < config.num_sessions:
        n = SESSION_CHUNK if config.num_sessions is None else min(SESSION_CHUNK, config.num_sessions - made)
        times = process.times(streams[0], n).tolist()
        counts = calls(streams[1], n)
        total = int(counts.sum())
        prompts, prompt_clipped = step.sample(streams[2], total)
        firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        prompts[firsts], first_clipped = first.sample(streams[3], n)
        prompt_clipped[firsts] = first_clipped
        outputs, output_clipped = output.sample(streams[4], total)
        stats.clipped_prompts += int(prompt_clipped.sum())
        stats.clipped_outputs += int(output_clipped.sum())
        chains = split_calls(counts, prompts, outputs, tool(streams[5], total), ("task", "tool_result"))
        for index, (arrival, chain) in enumerate(zip(times, chains)):
            yield SessionSpec(f"{prefix}{agent_type}-{made + index}", arrival, chain, carries_context=True,
                              kind="workflow", agent_type=agent_type)
        made += n
