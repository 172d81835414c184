"""Shared by every session generator: making chains of calls, and fitting them to limits and context.

Generators draw all the numbers of a group of sessions at once (vectorised)
and ``split_calls`` cuts them into per-session tuples of ``CallSpec``.
``session_items`` then hands sessions out within the limits (``num_requests``
counts calls; the stream stops before a session that would overshoot),
caps call outputs at ``max_output_tokens``, fits each session into the
model's context, and applies the label rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from simulator.engine.session import CallSpec, SessionSpec
from workloads.labels import Labeller
from workloads.stream import Limits, WorkloadStats

# Sessions drawn at a time.
SESSION_CHUNK = 256


def split_calls(counts: np.ndarray, prompts: np.ndarray, outputs: np.ndarray, waits: np.ndarray,
                kinds: tuple[str, str]) -> list[tuple[CallSpec, ...]]:
    """Per-session call tuples from flat per-call columns; ``counts[i]`` calls for session ``i``.

    The first call of each session gets ``kinds[0]`` and no wait, the others ``kinds[1]``.
    """
    ends = np.cumsum(counts).tolist()
    prompts, outputs, waits = prompts.tolist(), outputs.tolist(), waits.tolist()
    sessions, start = [], 0
    for end in ends:
        calls = [CallSpec(prompts[start], outputs[start], 0.0, kinds[0])]
        calls += [CallSpec(p, o, w, kinds[1]) for p, o, w in zip(prompts[start + 1:end], outputs[start + 1:end],
                                                                 waits[start + 1:end])]
        sessions.append(tuple(calls))
        start = end
    return sessions


def session_items(sessions: Iterator[SessionSpec], limits: Limits, max_output_tokens: int | None,
                  context_tokens: int | None, labeller: Labeller, stats: WorkloadStats) -> Iterator[SessionSpec]:
    """``sessions`` within ``limits``, capped, fitted to the context and labelled."""
    handed_out = 0
    for session in sessions:
        if limits.duration_s is not None and session.arrival_s >= limits.duration_s:
            return
        if max_output_tokens is not None:
            session = replace(_capped(session, max_output_tokens, stats), max_output_tokens=max_output_tokens)
        if context_tokens is not None:
            session = fit_context(session, context_tokens, stats)
        if limits.num_requests is not None and handed_out + len(session.calls) > limits.num_requests:
            return
        handed_out += len(session.calls)
        yield labeller.label_session(session) if labeller.rules else session


def _capped(session: SessionSpec, cap: int, stats: WorkloadStats) -> SessionSpec:
    # CallSpec has no output cap of its own, so the users' cap shortens the call's output.
    over = sum(call.output_tokens > cap for call in session.calls)
    if not over:
        return session
    stats.clipped_outputs += over
    return replace(session, calls=tuple(replace(c, output_tokens=min(c.output_tokens, cap)) for c in session.calls))


def fit_context(session: SessionSpec, context_tokens: int, stats: WorkloadStats) -> SessionSpec:
    """``session`` with every call's prompt plus output within ``context_tokens``.

    Independent calls are clipped one by one, as requests are. In a session
    that carries its context, a first call that does not fit is clipped, and
    the session ends before the first later call that would not fit (a chat
    or agent cannot go on past its context window).
    """
    calls = list(session.calls)
    if not session.carries_context:
        fitted = [_clip_call(call, context_tokens) for call in calls]
        stats.clipped_to_context += sum(a is not b for a, b in zip(fitted, calls))
        return replace(session, calls=tuple(fitted)) if fitted != calls else session
    first = _clip_call(calls[0], context_tokens)
    stats.clipped_to_context += first is not calls[0]
    kept, context = [first], first.new_prompt_tokens + first.output_tokens
    for call in calls[1:]:
        context += call.new_prompt_tokens
        if context + call.output_tokens > context_tokens:
            stats.sessions_cut_to_context += 1
            break
        kept.append(call)
        context += call.output_tokens
    if len(kept) == len(calls) and first is calls[0]:
        return session
    return replace(session, calls=tuple(kept))


def _clip_call(call: CallSpec, context_tokens: int) -> CallSpec:
    if call.new_prompt_tokens + call.output_tokens <= context_tokens:
        return call
    prompt = min(call.new_prompt_tokens, context_tokens - 1)
    return replace(call, new_prompt_tokens=prompt, output_tokens=min(call.output_tokens, context_tokens - prompt))
