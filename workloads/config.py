"""The ``workload:`` section of an experiment, as strict pydantic models.

A workload has one source of requests, or a list of ``sources`` whose
streams are merged by arrival time. A source is exactly one of:

- ``generator``: open-loop arrivals and lengths (``config_generators``);
- ``trace``: a trace file to replay, with transforms (``config_trace``);
- ``servegen``: per-client ServeGen descriptions (``config_sessions``);
- ``closed_loop``: a fixed number of users with think times;
- ``sessions``: multi-turn conversations or agent tasks.

The models only check shape and numbers; files are opened later, by
``build_workload``, and paths are relative to the experiment file's folder.
This module re-exports the parts so callers import the schema from one place.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from workloads.config_base import MAX_SECONDS, TOKEN_CEILING, StrictModel, Tokens
from workloads.config_dists import (
    CountDist, DurationDist, EmpiricalLength, FixedLength, LengthDist, LognormalLength, QuantileLength,
    UniformLength,
)
from workloads.config_generators import ArrivalConfig, GeneratorConfig, LengthsConfig
from workloads.config_labels import LabelRule
from workloads.config_sessions import (
    MAX_CALLS_PER_CLIENT, AgentConfig, ClosedLoopConfig, ConversationConfig, ServeGenConfig, SessionsConfig,
)
from workloads.config_trace import TraceColumns, TraceConfig, TransformsConfig

__all__ = [
    "TOKEN_CEILING", "AgentConfig", "ArrivalConfig", "ClosedLoopConfig", "ConversationConfig", "CountDist",
    "DurationDist", "EmpiricalLength", "FixedLength", "GeneratorConfig", "LabelRule", "LengthDist",
    "LengthsConfig", "LognormalLength", "QuantileLength", "ServeGenConfig", "SessionsConfig", "SourceConfig",
    "TraceColumns", "TraceConfig", "TransformsConfig", "UniformLength", "WorkloadConfig",
]

SOURCE_KINDS = ("generator", "trace", "servegen", "closed_loop", "sessions")


class _Source(StrictModel):
    """The five kinds of source; exactly one is set."""

    generator: GeneratorConfig | None = None
    trace: TraceConfig | None = None
    servegen: ServeGenConfig | None = None
    closed_loop: ClosedLoopConfig | None = None
    sessions: SessionsConfig | None = None

    def source_kinds(self) -> list[str]:
        """The source keys that are set."""
        return [kind for kind in SOURCE_KINDS if getattr(self, kind) is not None]

    def needs_limit(self) -> str | None:
        """Why this source cannot stop by itself without ``num_requests``/``duration_s``, if it cannot."""
        if self.generator is not None:
            return "a generator needs 'num_requests' or 'duration_s' (or both) to stop"
        if self.sessions is not None and self.sessions.num_sessions is None:
            return "sessions need 'num_sessions', 'num_requests' or 'duration_s' to stop"
        return None


class SourceConfig(_Source):
    """One entry of ``sources``: a source, its own limits and labels, and a ``name`` for label rules."""

    name: str | None = Field(default=None, min_length=1)
    num_requests: int | None = Field(default=None, gt=0)
    duration_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    labels: list[LabelRule] = []

    @model_validator(mode="after")
    def _one_kind(self) -> SourceConfig:
        if len(self.source_kinds()) != 1:
            raise ValueError(f"give exactly one of {', '.join(SOURCE_KINDS)}")
        return self


class WorkloadConfig(_Source):
    """Where requests come from, and when to stop.

    Generation stops at whichever of ``num_requests`` and ``duration_s``
    (arrivals strictly before it) comes first. ``num_requests`` counts LLM
    calls: a session counts its calls, and the stream stops before a session
    that would overshoot. ``max_output_tokens`` is the users' cap on every
    request. ``labels`` apply to every source, after the source's own labels.
    """

    sources: list[SourceConfig] | None = Field(default=None, min_length=1)
    num_requests: int | None = Field(default=None, gt=0)
    duration_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    max_output_tokens: Tokens | None = None
    labels: list[LabelRule] = []

    @model_validator(mode="after")
    def _one_source(self) -> WorkloadConfig:
        direct = self.source_kinds()
        if len(direct) != (1 if self.sources is None else 0):
            raise ValueError(f"give exactly one of {', '.join(SOURCE_KINDS)}, or a list of 'sources'")
        global_limit = self.num_requests is not None or self.duration_s is not None
        for source in self.source_list():
            reason = source.needs_limit()
            if reason and not global_limit and source.num_requests is None and source.duration_s is None:
                raise ValueError(reason)
            loop = source.closed_loop
            calls = source.num_requests or self.num_requests
            if loop and loop.requests_per_client is None and calls is None:
                raise ValueError("closed_loop needs 'requests_per_client' or 'num_requests'")
            if loop and loop.requests_per_client is None and -(-calls // loop.clients) > MAX_CALLS_PER_CLIENT:
                raise ValueError(f"closed_loop: num_requests / clients must be at most {MAX_CALLS_PER_CLIENT:,} "
                                 "calls per client")
        names = [source.name for source in self.source_list() if source.name is not None]
        if len(names) != len(set(names)):
            raise ValueError("source names must be unique")
        self._label_sources_exist()
        return self

    def _label_sources_exist(self) -> None:
        """A rule's ``when.source`` must name a source (an unnamed one is ``source<index>``), or it never holds."""
        sources = self.sources or []
        known = [source.name or f"source{index}" for index, source in enumerate(sources)]
        rule_lists = [("labels", self.labels)] + [(f"sources.{i}.labels", s.labels) for i, s in enumerate(sources)]
        for where, rules in rule_lists:
            for index, rule in enumerate(rules):
                wanted = rule.when.source
                if wanted is not None and wanted not in known:
                    named = ", ".join(known) if known else "none: the workload has a single unnamed source"
                    raise ValueError(f"{where}.{index}.when.source: {wanted!r} names no source (sources: {named})")

    def source_list(self) -> list[SourceConfig]:
        """The sources, a single direct source becoming a one-element list without limits of its own."""
        if self.sources is not None:
            return list(self.sources)
        kind = self.source_kinds()[0]
        return [SourceConfig.model_construct(**{kind: getattr(self, kind)}, name=None, num_requests=None,
                                              duration_s=None, labels=[])]

    def file_references(self) -> list[tuple[str, str]]:
        """``(dotted field, path)`` of every trace file, ServeGen folder and empirical length file the
        workload reads."""
        found = []
        for index, source in enumerate(self.source_list()):
            where = "workload" if self.sources is None else f"workload.sources.{index}"
            if source.trace is not None:
                found.append((f"{where}.trace.path", source.trace.path))
            if source.servegen is not None:
                found.append((f"{where}.servegen.path", source.servegen.path))
            for kind in source.source_kinds():
                found.extend(_empirical_files(getattr(source, kind), f"{where}.{kind}"))
        return found


def _empirical_files(node: object, where: str) -> list[tuple[str, str]]:
    """``(dotted field, path)`` of every empirical length distribution in ``node``, however deep.

    Lengths sit in generators, closed loops, conversations and agents alike; walking the
    models finds them wherever a later schema puts them.
    """
    if isinstance(node, EmpiricalLength):
        return [(f"{where}.path", node.path)]
    if not isinstance(node, StrictModel):
        return []
    found = []
    for name in type(node).model_fields:
        found.extend(_empirical_files(getattr(node, name), f"{where}.{name}"))
    return found
