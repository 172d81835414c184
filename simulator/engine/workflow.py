"""Running sessions: a SimPy process per session releases its calls one after another.

A call is released when the previous call has ended and the call's own
``wait_before_s`` (tool latency, think time) has passed. With a carried
context, each call's prompt is everything so far plus the new tokens, and its
blocks are identified by (session, block index) hashes covering prompt and
output, so an instance whose cache still holds the previous call's blocks
prefills only what is new. The task completion time (TCT) of a session runs
from its arrival to the end of its last call.
"""

from __future__ import annotations

from dataclasses import dataclass

import simpy

from simulator.engine.request import FINISHED, Request, RequestSpec
from simulator.engine.session import SessionSpec


def context_block_hash(session_id: str, index: int) -> int:
    """Identity of block ``index`` of a session's carried context (its calls share these)."""
    return hash((hash(("session", session_id)), index))


@dataclass(slots=True)
class SessionRecord:
    """What happened to one session."""

    session_id: str
    kind: str
    agent_type: str
    tenant: str
    arrival_s: float
    end_s: float | None
    calls: int
    calls_completed: int
    status: str  # completed | failed | unfinished


class SessionRunner:
    """Starts session processes and records their outcome.

    Args:
        env: the SimPy environment.
        submit: creates a Request from a RequestSpec, routes it and returns it.
        completion: returns the event that fires when a request ends.
        block_size: KV block size, the granularity of the context's prefix hashes.
        on_close: called after each session ends (the cluster checks whether it is done).
    """

    def __init__(self, env: simpy.Environment, submit, completion, block_size: int, on_close) -> None:
        self.env, self.submit, self.completion = env, submit, completion
        self.block_size, self.on_close = block_size, on_close
        self.records: dict[str, SessionRecord] = {}
        self.open = 0
        # Workflow KV retention (simulator.engine.retention.RetentionManager); None: none.
        self.hooks = None

    def start(self, spec: SessionSpec) -> None:
        if spec.session_id in self.records:
            raise ValueError(f"session id {spec.session_id!r} appears twice in the workload")
        self.records[spec.session_id] = SessionRecord(
            spec.session_id, spec.kind, spec.agent_type, spec.tenant, spec.arrival_s, None,
            len(spec.calls), 0, "unfinished")
        self.open += 1
        if self.hooks is not None:
            self.hooks.session_started(spec)
        self.env.process(self._run(spec))

    def _run(self, spec: SessionSpec):
        record = self.records[spec.session_id]
        context = 0
        for index, call in enumerate(spec.calls):
            if index and call.wait_before_s > 0:
                yield self.env.timeout(call.wait_before_s)
            if self.hooks is not None:
                yield from self.hooks.before_call(spec.session_id, index)  # e.g. reload offloaded KV
            prompt = context + call.new_prompt_tokens if spec.carries_context else call.new_prompt_tokens
            request = yield from self._call(spec, call.output_tokens, prompt)
            if self.hooks is not None:
                self.hooks.call_ended(spec.session_id, request)
            if request.status is not FINISHED:
                record.status = "failed"
                break
            record.calls_completed += 1
            if spec.carries_context:
                context = prompt + request.generated_tokens
        else:
            record.status = "completed"
        record.end_s = self.env.now
        if self.hooks is not None:
            self.hooks.session_ended(spec.session_id)
        self.open -= 1
        self.on_close()

    def _call(self, spec: SessionSpec, output_tokens: int, prompt: int):
        hashes: tuple[int, ...] = ()
        if spec.carries_context:
            blocks = (prompt + output_tokens) // self.block_size
            hashes = tuple(context_block_hash(spec.session_id, j) for j in range(blocks))
        while True:
            request_spec = RequestSpec(self.env.now, prompt, output_tokens, spec.max_output_tokens, hashes,
                                       self.block_size, spec.session_id, spec.tenant, spec.priority,
                                       spec.slo_class)
            request: Request = self.submit(request_spec)
            if request.is_done:
                # Rejected on arrival (it can never fit): sending it again cannot help.
                return request
            yield self.completion(request)
            if request.status is FINISHED or not spec.resubmit_on_reject:
                return request

    def completed_tct_s(self) -> list[float]:
        """Task completion times of completed agent workflows (conversations and clients excluded)."""
        return [r.end_s - r.arrival_s for r in self.records.values()
                if r.status == "completed" and r.kind == "workflow"]
