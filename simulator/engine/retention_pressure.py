"""Memory pressure under workflow KV retention: what the next step needs, and which pins may give way.

Before each step the retention mechanism asks how many blocks the step may
need beyond those free - for running calls to grow by up to the step's token
budget, and to start the waiting call the batch policy will try first (its
whole prompt, after its prefix-cache hit) - and which pinned workflows may be
evicted for it.
"""

from __future__ import annotations

from simulator.engine.request import Request, WAITING
from simulator.engine.workflow_kv import Workflow


def evictable(workflow: Workflow, head: Request | None) -> bool:
    """Idle, or its call still waits without KV and is not ``head``, the call the memory is wanted for.

    A workflow whose call is on its way (its context reloading) gives way only to running calls
    that must grow (``head`` None): preempting them would cost more.
    """
    active = workflow.active
    if active is None:
        return head is None or not workflow.releasing
    return (active.status is WAITING and active.computed_tokens == 0
            and active is not head)


def next_admission(instance) -> Request | None:
    """The waiting call the batch policy will try to admit first (``next_admission``), else the queue's head."""
    queues = instance.queues
    if not queues.waiting:
        return None
    choose = getattr(instance.batch_policy, "next_admission", None)
    return queues.waiting[0] if choose is None else choose(instance)


def needs(instance, head: Request | None) -> tuple[int, int]:
    """Blocks the next step may need: for running calls to grow, and to start ``head``."""
    kv, queues = instance.kv, instance.queues
    budget = instance.setup.limits.max_batched_tokens
    growth = sum(max(0, kv.blocks_for_tokens(min(r.known_tokens, r.computed_tokens + budget)) - kv.blocks_held(r))
                 for r in queues.running)
    # One step computes at most the budget: a block per request plus the budget's blocks.
    growth = min(growth, kv.blocks_for_tokens(budget) + len(queues.running))
    if queues.swapped:
        growth = max(growth, kv.blocks_for_tokens(queues.swapped[0].computed_tokens) + kv.watermark_blocks)
    need = 0
    if head is not None:
        hit = kv.prefix_hit_blocks(head) if head.computed_tokens == 0 else 0
        # The whole prompt: a batch policy may admit it only when all of it fits.
        tokens = max(1, head.pending_compute_tokens - hit * kv.block_size)
        need = instance.blocks_to_admit(head, tokens)
    return growth, need


def reload_blocks(kv, hashes: tuple[int, ...]) -> tuple[int, int]:
    """Blocks an offloaded context needs to load: missing from the index, and cached ones it takes back.

    (Cached blocks count as free, so taking them back is a need like a new allocation.)
    """
    present = [h for h in hashes if h in kv.refcount]
    return len(hashes) - len(present), sum(1 for h in present if kv.refcount[h] == 0)
