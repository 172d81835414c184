"""From a ``workload:`` configuration to the stream of work the engine replays.

``build_workload`` builds one stream per source (reading trace heads and
length files, so errors surface now), merges several sources by arrival time,
and returns a lazy ``Workload``. Randomness comes only from the generator
passed in: a single source uses it directly (so its draws do not depend on
the schema around it), and a list of sources spawns one child per source, so
adding a source leaves the others' requests unchanged.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from simulator.errors import ConfigError
from workloads.config import SourceConfig, WorkloadConfig
from workloads.emit import request_specs
from workloads.labels import Labeller
from workloads.lengths import resolve
from workloads.servegen import servegen_batches
from workloads.sessions.agent import agent_tasks
from workloads.sessions.chains import session_items
from workloads.sessions.closed_loop import closed_loop_clients
from workloads.sessions.conversation import conversations
from workloads.stream import MAX_ARRIVAL_S, Limits, WorkItem, Workload, WorkloadStats, calls_of
from workloads.synthetic import generated_batches
from workloads.trace import trace_batches


def build_workload(config: WorkloadConfig, rng: np.random.Generator, base_dir: Path,
                   max_context_tokens: int | None = None) -> Workload:
    """The work of ``config`` in non-decreasing arrival order, made lazily.

    ``base_dir`` is the folder of the experiment file: relative paths are taken
    from there. With ``max_context_tokens`` (the model's context length), every
    request's prompt plus output is clipped to it and sessions end before a
    call that would not fit; both are counted in ``Workload.stats``. Raises
    ``TraceError`` (one line naming the file and the line or column) when a
    file cannot be used. Spawning child streams advances ``rng``'s spawn
    counter, so build each workload from a fresh generator of its seed.
    """
    stats = WorkloadStats()
    limits = Limits(config.num_requests, config.duration_s)
    sources = config.source_list()
    if config.sources is None:
        return Workload(_not_empty(_within_time(_source(sources[0], "", rng, limits, config, Path(base_dir),
                                                        max_context_tokens, stats)), "workload", limits), stats)
    streams = []
    for index, (source, child) in enumerate(zip(sources, rng.spawn(len(sources)), strict=True)):
        source_limits = Limits(source.num_requests, source.duration_s)
        streams.append(_not_empty(_source(source, source.name or f"source{index}", child, source_limits, config,
                                          Path(base_dir), max_context_tokens, stats),
                                  f"workload.sources.{index}", source_limits))
    return Workload(_not_empty(_within_time(_limited(heapq.merge(*streams, key=_arrival), limits)), "workload",
                               limits), stats)


def _source(source: SourceConfig, name: str, rng: np.random.Generator, limits: Limits, config: WorkloadConfig,
            base_dir: Path, context: int | None, stats: WorkloadStats) -> Iterator[WorkItem]:
    rules = [*source.labels, *config.labels]
    prefix = f"{name}/" if name else ""
    cap = config.max_output_tokens
    if source.closed_loop is not None or source.sessions is not None:
        if source.closed_loop is not None:
            calls = limits.num_requests if limits.num_requests is not None else config.num_requests
            sessions = closed_loop_clients(source.closed_loop, calls, rng, base_dir, prefix, stats)
        elif source.sessions.kind == "agent":
            sessions = agent_tasks(source.sessions, rng, base_dir, prefix, stats)
        else:
            sessions = conversations(source.sessions, rng, base_dir, prefix, stats)
        return session_items(sessions, limits, cap, context, _labeller(rules, name, rng), stats)
    if source.generator is not None:
        batches = generated_batches(source.generator, rng, base_dir)
    elif source.servegen is not None:
        batches = servegen_batches(source.servegen, resolve(base_dir, source.servegen.path), rng)
    else:
        columns = {column for rule in rules for column in (rule.when.columns or {})}
        batches = trace_batches(source.trace, resolve(base_dir, source.trace.path), rng, stats, columns)
    return request_specs(batches, limits, cap, context, _labeller(rules, name, rng), stats)


def _labeller(rules: list, name: str, rng: np.random.Generator) -> Labeller:
    # Spawned after the source took its own streams, so label rules never change the requests.
    return Labeller(rules, name, rng.spawn(1)[0])


def _within_time(items: Iterator[WorkItem]) -> Iterator[WorkItem]:
    """``items``, stopping with a ``ConfigError`` at an arrival later than ``MAX_ARRIVAL_S``.

    Beyond it float64 times lose sub-microsecond resolution and latencies become noise; such
    arrivals come from a rate near zero or a trace read in the wrong time unit.
    """
    for item in items:
        if not item.arrival_s <= MAX_ARRIVAL_S:
            raise ConfigError(f"workload: a request arrives at {item.arrival_s:g} s, later than the "
                              f"{MAX_ARRIVAL_S:g} s (about 31 years) servesim simulates; check the arrival rate "
                              "or the trace's time unit")
        yield item


def _not_empty(items: Iterator[WorkItem], where: str, limits: Limits) -> Iterator[WorkItem]:
    """``items``, or a ``ConfigError`` naming ``where`` when the stream holds no work at all.

    Every source is checked alike (a trace that keeps no rows fails earlier, naming its file):
    a run with nothing to replay would only write a summary of nulls.
    """
    first = next(items, None)
    if first is None:
        bounds = []
        if limits.num_requests is not None:
            bounds.append(f"num_requests: {limits.num_requests} (a session or closed-loop client counts whole, "
                          "with all its calls)")
        if limits.duration_s is not None:
            bounds.append(f"duration_s: {limits.duration_s:g} (nothing arrives before it)")
        raise ConfigError(f"{where}: no requests left to replay" +
                          (f" within {' and '.join(bounds)}; raise the limit" if bounds else ""))
    return itertools.chain([first], items)


def _arrival(item: WorkItem) -> float:
    return item.arrival_s


def _limited(items: Iterator[WorkItem], limits: Limits) -> Iterator[WorkItem]:
    """``items`` up to the workload-wide limits (``num_requests`` counts calls)."""
    handed_out = 0
    for item in items:
        if limits.duration_s is not None and item.arrival_s >= limits.duration_s:
            return
        calls = calls_of(item)
        if limits.num_requests is not None and handed_out + calls > limits.num_requests:
            return
        handed_out += calls
        yield item
