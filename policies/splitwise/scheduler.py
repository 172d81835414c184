"""Splitwise's cluster-level scheduler: a prompt and a token machine for every request.

On arrival each request gets a prompt machine and a token machine, as in the
paper (and its simulator, splitwise-sim's ``MixedPoolScheduler``):

* prompt machine: join the shortest queue, by pending tokens, of the prompt
  pool, then of the mixed pool. A queue is too long when the machine already
  has prompts waiting and its pending tokens plus this prompt exceed
  ``prompt_queue_tokens``; when every candidate's is, the token machine with
  the fewest pending tokens is borrowed into the mixed pool and takes it.
* token machine: the least memory-loaded machine of the token pool, then of
  the mixed pool (KV in use plus what is on its way, as a fraction of its
  KV); a machine is full when this request's KV would not fit on top. When
  every candidate is full, the prompt machine with the least memory in use is
  borrowed into the mixed pool.
* if either is still missing, the request is co-located: it runs both phases
  on the machine with the fewest pending tokens (baseline mixed batching).

When the prompt machine samples the first token, the request is handed off
to its token machine (``ClusterActions.hand_off``: reserve there, transfer,
free here), unless both are the same machine. A cluster without both a
prompt and a token pool (the Baseline designs) is plain JSQ on pending
tokens with co-location.
"""

from __future__ import annotations

from functools import partial
from typing import Literal, Sequence

from pydantic import Field, PrivateAttr

from policies.splitwise.pools import PROMPT, TOKEN, Pools
from simulator.policy_api import ROUTERS, ClusterActions, InstanceView, Policy, RequestStatus, RequestView

_ENDED = (RequestStatus.FINISHED, RequestStatus.REJECTED)


@ROUTERS.register("splitwise")
class SplitwiseScheduler(Policy):
    """Pools of prompt and token machines, a mixed pool between them, KV hand-off after the prompt.

    Attributes:
        prompt_queue_tokens: pending tokens above which a prompt machine's queue is too
            long (splitwise-sim's ``prompt_max_pending_batch_tokens``, 8192).
        kv_transfer: ``layerwise`` (overlap the transfer with the prompt's layers),
            ``serialized`` (send everything after the prompt) or ``ideal`` (no transfer
            time: the bound the others are measured against).
    """

    prompt_queue_tokens: int = Field(default=8192, gt=0)
    kv_transfer: Literal["layerwise", "serialized", "ideal"] = "layerwise"
    _actions: ClusterActions | None = PrivateAttr(None)
    _pools: Pools | None = PrivateAttr(None)
    # request id -> (request, token machine, KV blocks) from arrival until its first token
    _assigned: dict = PrivateAttr(default_factory=dict)
    _expected_blocks: dict = PrivateAttr(default_factory=dict)  # token machine -> assigned blocks

    def bind_cluster(self, actions: ClusterActions) -> None:
        self._actions = actions
        self._pools = Pools(actions.instances, self._expecting)
        for instance in actions.instances:
            actions.on_first_token(instance.id, partial(self._on_first_token, instance.id))

    def route(self, request: RequestView, instances: Sequence[InstanceView], now_s: float) -> int:
        self._forget_ended()
        pools = self._pools
        pools.return_idle()
        offered = {inst.id for inst in instances}
        if not pools.disaggregated:
            return _shortest_queue(instances).id
        prompt = self._prompt_machine(request, offered)
        token = self._token_machine(request, offered)
        if prompt is None or token is None:
            return _shortest_queue(instances).id
        if token.id != prompt.id:
            blocks = self._blocks(token, request)
            self._assigned[request.id] = (request, token.id, blocks)
            self._expected_blocks[token.id] = self._expected_blocks.get(token.id, 0) + blocks
        return prompt.id

    # ------------------------------------------------------------ choices
    def _prompt_machine(self, request: RequestView, offered: set[int]) -> InstanceView | None:
        for group in (self._pools.pool(PROMPT), self._pools.mixed):
            candidates = [inst for inst in group if inst.id in offered]
            if candidates:
                best = _shortest_queue(candidates)
                if not (best.num_waiting > 0
                        and best.pending_tokens + request.prompt_tokens > self.prompt_queue_tokens):
                    return best
        lenders = [inst for inst in self._pools.pool(TOKEN) if inst.id in offered]
        return self._pools.borrow(_shortest_queue(lenders)) if lenders else None

    def _token_machine(self, request: RequestView, offered: set[int]) -> InstanceView | None:
        for group in (self._pools.pool(TOKEN), self._pools.mixed):
            candidates = [inst for inst in group if inst.id in offered]
            if candidates:
                best = min(candidates, key=lambda inst: (self._memory_load(inst), inst.id))
                if self._scheduled_blocks(best) + self._blocks(best, request) < best.kv_total_blocks:
                    return best
        lenders = [inst for inst in self._pools.pool(PROMPT) if inst.id in offered]
        if not lenders:
            return None
        return self._pools.borrow(min(lenders, key=lambda inst: (self._memory_load(inst), inst.id)))

    # ------------------------------------------------------------ hand-off
    def _on_first_token(self, instance_id: int, request: RequestView) -> None:
        entry = self._assigned.pop(request.id, None)
        if entry is None:
            return  # co-located: it decodes where it is
        _, token_id, blocks = entry
        self._expected_blocks[token_id] -= blocks
        if token_id != instance_id:
            self._actions.hand_off(request, token_id, self.kv_transfer)

    # ------------------------------------------------------------ memory
    def _blocks(self, instance: InstanceView, request: RequestView) -> int:
        """KV blocks the request needs on a token machine: its prompt and first token."""
        return -(-(request.prompt_tokens + 1) // instance.block_size)

    def _scheduled_blocks(self, instance: InstanceView) -> int:
        return instance.kv_used_blocks + self._expecting(instance.id)

    def _memory_load(self, instance: InstanceView) -> float:
        return self._scheduled_blocks(instance) / instance.kv_total_blocks

    def _expecting(self, instance_id: int) -> int:
        """Blocks of requests assigned to the machine that have not reached it (or reserved there)."""
        return self._expected_blocks.get(instance_id, 0) + self._actions.incoming_kv_blocks(instance_id)

    def _forget_ended(self) -> None:
        """Drop assignments of requests that ended on their prompt machine (one-token outputs, rejections)."""
        ended = [rid for rid, (request, _, _) in self._assigned.items() if request.status in _ENDED]
        for rid in ended:
            _, token_id, blocks = self._assigned.pop(rid)
            self._expected_blocks[token_id] -= blocks


def _shortest_queue(instances: Sequence[InstanceView]) -> InstanceView:
    return min(instances, key=lambda inst: (inst.pending_tokens, inst.id))
