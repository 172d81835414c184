"""Requests leaving an instance alive, and arriving with their KV already in place.

Disaggregated serving (a prompt machine hands a request to a token machine),
live migration and work stealing all move a request that is not finished
from one instance to another. The mechanism is the same in each case and
lives here, so no policy touches queues or KV directly:

* ``depart`` asks an instance to let a request go. It leaves at the next step
  boundary - never mid-step, and a fast-forward run is cut short after its
  step in flight - and keeps its KV blocks on the source, so the caller can
  copy them before freeing them. The returned event says whether it left
  (True) or ended first (False: finished or rejected in the meantime).
* ``adopt`` puts a request whose KV blocks the caller already reserved on the
  destination into that instance's running batch.

While between instances a request has status TRANSFERRING and belongs to no
queue; the cluster still counts it as active, so conservation holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import simpy

from simulator.engine.request import RUNNING, Request, SWAPPED, TRANSFERRING
from simulator.errors import SimulationError

if TYPE_CHECKING:
    from simulator.engine.instance import Instance


class Departures:
    """The requests an instance has been asked to let go, and the events to fire when they do."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.pending: dict[int, tuple[Request, simpy.Event]] = {}

    def request(self, request: Request) -> simpy.Event:
        """Mark ``request`` to leave at the next step boundary; see the module docstring."""
        instance = self.instance
        if request.instance_id != instance.id:
            raise SimulationError(f"request {request.id} is not on instance {instance.id}")
        found = self.pending.get(request.id)
        if found is not None:
            return found[1]
        event = instance.env.event()
        self.pending[request.id] = (request, event)
        instance.interrupt_run()
        return event

    def settle(self) -> None:
        """At a step boundary: let marked requests go (or report that they ended)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        for request, event in pending.values():
            if request.is_done or request.instance_id != self.instance.id:
                event.succeed(False)
                continue
            self._take_out(request)
            event.succeed(True)

    def _take_out(self, request: Request) -> None:
        queues = self.instance.queues
        # Before _bring_back_from_host resets computed tokens: the queue counted them as computed.
        queues.pending_tokens -= request.pending_compute_tokens
        if request.status is RUNNING:
            queues.running.remove(request)
        elif request.status is SWAPPED:
            queues.swapped.remove(request)
            self._bring_back_from_host(request)
        else:
            queues.waiting.remove(request)
        request.status = TRANSFERRING
        request.instance_id = None

    def _bring_back_from_host(self, request: Request) -> None:
        """A swapped request's KV is in host DRAM, not on the GPU: it leaves to be recomputed."""
        instance = self.instance
        if instance.host is not None:
            kv = instance.kv
            instance.host.release(kv.blocks_for_tokens(request.computed_tokens) * kv.block_size
                                  * instance.setup.kv_bytes_per_token)
        request.recomputed_tokens += request.computed_tokens
        request.computed_tokens = 0


def adopt(instance: Instance, request: Request) -> None:
    """Put a transferred request into ``instance``'s running batch.

    The caller has reserved its KV on this instance (``instance.kv.grow``) for
    every token it has computed; a request that arrives with no KV (computed
    tokens 0) joins the waiting queue instead, like a fresh arrival.
    """
    if request.status is not TRANSFERRING:
        raise SimulationError(f"request {request.id} is {request.status.value}, not in transfer")
    kv = instance.kv
    if request.computed_tokens == 0:
        if kv.blocks_held(request):
            # A waiting request holds no KV (its admission allocates it, prefix hits first).
            raise SimulationError(f"request {request.id} adopted by instance {instance.id} with KV "
                                  f"reserved but no computed tokens; reserve nothing for it")
        instance.enqueue(request)
        return
    if kv.blocks_held(request) < kv.blocks_for_tokens(request.computed_tokens):
        raise SimulationError(f"request {request.id} adopted by instance {instance.id} without KV for "
                              f"its {request.computed_tokens} computed tokens")
    queues = instance.queues
    request.instance_id = instance.id
    request.status = RUNNING
    request.admitted_seq = queues.next_admission()
    queues.running.append(request)
    queues.pending_tokens += request.pending_compute_tokens
    instance.wake()
