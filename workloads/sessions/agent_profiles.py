"""Built-in agent profiles: the distributions of a task's calls, prompts, outputs and tool waits.

``swe-agent`` is fitted to ``agent_traces/swe_agent_summary.json`` in the
shared data (SWE-agent on 64 SWE-bench Lite tasks, GLM-4.5 served by vLLM;
quantiles only). Calls per task, first-call prompt tokens, output tokens and
tool latency are its quantile tables (p10..p99) with linear tails: below p10
and above p99 the inverse CDF continues with the slope of the nearest
segment, clamped at a floor. The tokens appended per step are fitted, not
copied: the trace's per-step context growth is negative in about a third of
steps (SWE-agent elides old observations), which a chain whose context only
grows cannot express. A lognormal with median 400 and sigma 1.0 was chosen
by a grid search so that the simulated input tokens per call match the
measured quantiles (p25/p50/p75 12.3k/20.8k/32.2k measured, about
10.2k/20.9k/34.8k generated; a test keeps them within 25%).

``browsing-agent`` is illustrative, not fitted to any trace: a WebArena-
style web agent whose every step appends a page observation of a few
thousand tokens after a page load of a second or two. Replace it with a
fitted profile when a browsing trace is available.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workloads.config_dists import (
    LognormalDuration, LognormalLength, QuantileCount, QuantileDuration, QuantileLength,
)

AGENT_FIELDS = ("calls_per_task", "first_prompt_tokens", "step_prompt_tokens", "output_tokens", "tool_latency_s")

SUMMARY_PERCENTS = (10, 25, 50, 75, 90, 99)

# Copied from agent_traces/swe_agent_summary.json (a test checks they still match the file).
SWE_AGENT_SUMMARY: dict[str, dict[str, float]] = {
    "calls_per_task": {"p10": 28.6, "p25": 35.0, "p50": 42.5, "p75": 57.5, "p90": 72.4, "p99": 131.33,
                       "mean": 50.094},
    "input_tokens_per_call": {"p10": 6662.4, "p25": 12294.0, "p50": 20843.5, "p75": 32239.75, "p90": 47288.7,
                              "p99": 91454.2, "mean": 24834.615},
    "first_call_input_tokens": {"p10": 370.0, "p25": 428.25, "p50": 559.5, "p75": 672.25, "p90": 1167.0,
                                "p99": 1977.04, "mean": 661.172},
    "context_growth_tokens_per_step": {"p10": -3184.0, "p25": -715.25, "p50": 407.0, "p75": 1896.25,
                                       "p90": 4510.3, "p99": 14195.2, "mean": 558.936},
    "output_tokens_per_call": {"p10": 27.0, "p25": 40.0, "p50": 77.0, "p75": 226.0, "p90": 459.0, "p99": 874.0,
                               "mean": 167.122},
    "tool_latency_s": {"p10": 0.129, "p25": 0.146, "p50": 0.155, "p75": 0.297, "p90": 0.403, "p99": 2.397,
                       "mean": 0.285},
}


def summary_table(entry: dict[str, float], floor: float) -> tuple[list[float], list[float]]:
    """Probabilities 0..1 and values from p10..p99 quantiles, with linear tails clamped at ``floor``."""
    probabilities = [p / 100 for p in SUMMARY_PERCENTS]
    values = [entry[f"p{p}"] for p in SUMMARY_PERCENTS]
    low = values[0] - (values[1] - values[0]) * probabilities[0] / (probabilities[1] - probabilities[0])
    high = values[-1] + (values[-1] - values[-2]) * (1 - probabilities[-1]) / (probabilities[-1] - probabilities[-2])
    return [0.0, *probabilities, 1.0], [max(floor, low), *values, high]


@dataclass(frozen=True)
class AgentProfile:
    """A named set of the five agent distributions and where they come from."""

    name: str
    source: str
    dists: dict[str, Any]


def _swe_agent() -> AgentProfile:
    def tokens(key: str) -> QuantileLength:
        probabilities, values = summary_table(SWE_AGENT_SUMMARY[key], 1.0)
        return QuantileLength(dist="quantiles", probabilities=probabilities, tokens=[round(v) for v in values])

    calls_p, calls_v = summary_table(SWE_AGENT_SUMMARY["calls_per_task"], 1.0)
    tool_p, tool_v = summary_table(SWE_AGENT_SUMMARY["tool_latency_s"], 0.0)
    return AgentProfile("swe-agent", "fitted to agent_traces/swe_agent_summary.json (SWE-agent, SWE-bench Lite)", {
        "calls_per_task": QuantileCount(dist="quantiles", probabilities=calls_p, values=calls_v),
        "first_prompt_tokens": tokens("first_call_input_tokens"),
        "step_prompt_tokens": LognormalLength(dist="lognormal", median_tokens=400, sigma=1.0, max_tokens=65_536),
        "output_tokens": tokens("output_tokens_per_call"),
        "tool_latency_s": QuantileDuration(dist="quantiles", probabilities=tool_p, seconds=tool_v),
    })


def _browsing_agent() -> AgentProfile:
    return AgentProfile("browsing-agent", "illustrative (WebArena-style web agent), not fitted to a trace", {
        "calls_per_task": QuantileCount(dist="quantiles", probabilities=[0, 0.1, 0.5, 0.9, 1],
                                        values=[2, 4, 10, 22, 40]),
        "first_prompt_tokens": LognormalLength(dist="lognormal", median_tokens=3000, sigma=0.4, max_tokens=16_384),
        "step_prompt_tokens": LognormalLength(dist="lognormal", median_tokens=2500, sigma=0.6, max_tokens=16_384),
        "output_tokens": LognormalLength(dist="lognormal", median_tokens=150, sigma=0.7, max_tokens=2048),
        "tool_latency_s": LognormalDuration(dist="lognormal", median_s=1.5, sigma=0.8, max_s=30.0),
    })


AGENT_PROFILES: dict[str, AgentProfile] = {p.name: p for p in (_swe_agent(), _browsing_agent())}


def agent_profile(name: str) -> AgentProfile:
    """The built-in agent profile ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return AGENT_PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown agent profile {name!r}; known: {', '.join(sorted(AGENT_PROFILES))}") from None


def agent_dists(config) -> dict[str, Any]:
    """The five distributions of an ``AgentConfig``: its own where given, else its profile's."""
    base = agent_profile(config.profile).dists if config.profile is not None else {}
    return {name: getattr(config, name) if getattr(config, name) is not None else base[name]
            for name in AGENT_FIELDS}
