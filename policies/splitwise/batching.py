"""Splitwise's machine-level scheduler: FCFS continuous batching with a prompt-batch limit.

Every pool runs the same loop, vLLM's (without chunked prefill): a step is a
batch of whole prompts, FCFS, or, when no prompt can start, a decode step
over the running batch. Splitwise found that batching prompts beyond about
2048 tokens gains no throughput and only delays them, so a prompt step
takes further prompts only while the batch stays within
``prompt_batch_tokens``; one longer prompt still runs, alone. On a token
machine the running batch is the adopted requests (plus, while it is
borrowed into the mixed pool, prompts); on a prompt machine the decodes are
only those co-located with it. (With ``chunked_prefill: true`` the loop is
Sarathi-Serve's, as in ``vllm``; Splitwise itself does not chunk.)
"""

from __future__ import annotations

from pydantic import Field

from policies.batching.continuous import ContinuousBatching
from simulator.policy_api import BATCH_POLICIES, SchedulerView, StepBuilder


@BATCH_POLICIES.register("splitwise")
class SplitwiseBatching(ContinuousBatching):
    """FCFS prompt-prioritised batching; prompts batch up to ``prompt_batch_tokens``.

    Attributes:
        prompt_batch_tokens: most prompt tokens in one step when it holds several prompts.
        max_batched_tokens: the hard step limit; a longer prompt is rejected with the reason.
    """

    prompt_batch_tokens: int = Field(default=2048, gt=0)
    max_batched_tokens: int = Field(default=16384, gt=0)

    def _admit_waiting(self, state: SchedulerView, builder: StepBuilder, chunk: bool) -> int:
        if chunk:
            return super()._admit_waiting(state, builder, chunk)  # chunked prefill: Sarathi's loop
        admitted, batch_tokens = 0, 0
        while state.waiting and len(state.running) < self.max_num_seqs:
            request = state.waiting[0]
            pending = builder.pending_tokens(request)
            if pending > self.max_batched_tokens:
                builder.reject(request, f"{pending} tokens to prefill exceed max_batched_tokens "
                                        f"{self.max_batched_tokens}")
                continue
            if admitted and batch_tokens + pending > self.prompt_batch_tokens:
                break
            if not self._admission.admit(request, state, builder) or not builder.add(request, pending):
                break
            admitted += 1
            batch_tokens += pending
        return admitted
