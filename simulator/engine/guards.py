"""Guards that keep an instance honest: a progress watchdog, an invariant checker, stall handling.

A simulator that livelocks or drifts silently produces numbers nobody should
trust. The watchdog stops a run whose instance makes no progress; the
invariant checker (switched on by ``sim.check_invariants``, and by every test)
verifies KV accounting, request counters and time after each commit; and an
empty step on an idle instance is resolved by rejecting what can never be
admitted there, with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.engine.request import REJECTED, Request, WAITING
from simulator.engine.step import StepPlan
from simulator.errors import SimulationError

if TYPE_CHECKING:
    from simulator.engine.instance import Instance


class Guards:
    """The watchdog counter and the invariant checker of one instance."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.steps_without_progress = 0
        self.last_commit_s = 0.0

    def progressed(self) -> None:
        self.steps_without_progress = 0

    def watch(self, plan: StepPlan) -> None:
        """Count steps that neither produced a token nor ended a request; stop a livelock."""
        if plan.shape.num_sampled or plan.rejected:
            self.steps_without_progress = 0
            return
        self.steps_without_progress += 1
        instance = self.instance
        if self.steps_without_progress >= instance.setup.watchdog_steps:
            queues = instance.queues
            head = (queues.running or list(queues.waiting) or [None])[0]
            raise SimulationError(
                f"instance {instance.id}: no token generated and no request ended in "
                f"{self.steps_without_progress} steps while {queues.num_requests} requests are "
                f"pending (first: {head!r}); batch policy {type(instance.batch_policy).__name__}")

    def check(self, now: float) -> None:
        """Raise SimulationError if KV accounting, request counters or time are inconsistent."""
        instance = self.instance
        kv, queues = instance.kv, instance.queues
        try:
            kv.check()
            assert now >= self.last_commit_s, f"time went backwards: {now} < {self.last_commit_s}"
            # Blocks reserved for a run's implied steps are claimed when the run ends (checks run then).
            assert kv.reserved == 0, f"{kv.reserved} KV blocks reserved but never claimed"
            for request in queues.running:
                assert 0 <= request.computed_tokens <= request.known_tokens, f"counters of {request!r}"
                assert request.generated_tokens <= request.output_tokens, f"overshoot of {request!r}"
                assert kv.blocks_held(request) >= kv.blocks_for_tokens(request.computed_tokens), \
                    f"KV of {request!r}"
            assert kv.used_blocks <= kv.total_blocks, "KV above capacity"
            pending = sum(r.pending_compute_tokens for r in (*queues.waiting, *queues.running, *queues.swapped))
            assert queues.pending_tokens == pending, "pending token count drifted"
        except AssertionError as err:
            raise SimulationError(f"instance {instance.id} at t={now:.6f}s: invariant violated: {err}") from None
        self.last_commit_s = now


def resolve_stall(instance: Instance) -> bool:
    """The policy scheduled nothing although work is queued: make progress, wait, or fail loudly.

    With nothing running, only requests moving in or out of the instance (a
    hand-off or migration whose KV is still here, or reserved for one on its
    way) can free memory: then the instance waits for them (returns False; the
    move wakes it). Otherwise the head of the queue can never be admitted as
    things stand: it is rejected with the reason (a swapped request is first
    turned back into a recompute), and True is returned. With requests
    running, an empty step is a policy bug.
    """
    queues, kv = instance.queues, instance.kv
    if queues.running:
        raise SimulationError(
            f"instance {instance.id}: batch policy {type(instance.batch_policy).__name__} scheduled "
            f"nothing while {len(queues.running)} requests are running (first: request {queues.running[0].id})")
    if kv_held_in_transit(instance):
        return False
    if queues.swapped:
        _recompute_swapped(instance, queues.swapped[0])
        return True
    request = queues.waiting[0]
    need = kv.blocks_for_tokens(request.known_tokens)
    request.reject_reason = (
        f"cannot be admitted on idle instance {instance.id}: needs {need} KV blocks for "
        f"{request.known_tokens} tokens, {kv.free_blocks} free of {kv.total_blocks} "
        f"(watermark {kv.watermark_blocks}), step budget {instance.setup.limits.max_batched_tokens} tokens")
    queues.drop_waiting(request)
    request.status = REJECTED
    instance.on_done(request)
    return True


def kv_held_in_transit(instance: Instance) -> bool:
    """Whether KV blocks here belong to requests in none of the instance's queues (moving in or out)."""
    holders = instance.kv.holdings
    if not holders:
        return False
    queued = {r.id for r in (*instance.queues.waiting, *instance.queues.swapped)}
    return any(holding.blocks and request_id not in queued for request_id, holding in holders.items())


def _recompute_swapped(instance: Instance, request: Request) -> None:
    """A swapped request that cannot come back even on an idle instance is recomputed."""
    instance.queues.swapped.remove(request)
    kv = instance.kv
    if instance.host is not None:
        instance.host.release(kv.blocks_for_tokens(request.computed_tokens) * kv.block_size
                              * instance.setup.kv_bytes_per_token)
    lost = request.computed_tokens
    request.recomputed_tokens += lost
    request.computed_tokens = 0
    request.status = WAITING
    instance.queues.waiting.appendleft(request)
    instance.queues.pending_tokens += lost
