"""KV hand-off: a request that has its first token moves, with its KV, to another instance.

Splitwise splits a request's life between a prompt machine (the prefill and
the first token) and a token machine (every later token). The hand-off is
mechanism and lives here, so policies only choose the destination:

1. The request departs its source at the step boundary right after its
   prefill step (``Instance.depart``), keeping its KV blocks there.
2. At the destination's next step boundary, blocks for every computed token
   are reserved (``KVCache.grow``, leaving the watermark free), so the
   transfer never lands in memory that has gone meanwhile. If they do not
   fit, the hand-off falls back to co-location: the request rejoins its
   source's running batch, where its KV still is, and decodes there.
3. The KV crosses the network as a ``Flow`` through the source's egress and
   the destination's ingress port, sharing them max-min fairly with every
   other transfer.
4. When the last byte lands the request joins the destination's running
   batch (``adopt``), and its blocks on the source are freed at the source's
   next step boundary (KV use only changes between steps, which keeps
   fast-forward equal to stepping).

Serialized transfer sends all ``tokens x kv_bytes_per_token`` bytes after the
prefill. Layer-wise transfer (Splitwise's overlap) sends layer ``i`` while
layers ``i+1..`` compute. With ``L`` layers, a prefill step of ``P`` seconds
(the step that completed the prompt)
and a transfer taking ``X`` seconds alone, the part not hidden behind compute
is ``max(X / L, X - P (L - 1) / L)``: only the last layer when the link is
faster than compute. The flow carries that exposed tail (alone, it takes
exactly the exposed time); the overlapped part is taken to have had the link
to itself during the prefill, because a step's layers are not simulated one
by one. Contention then only stretches the exposed tail.

``ideal`` transfer moves the KV in no time (no bytes, no latency): the bound
that the other two are measured against.

The first token comes from the source; the transfer shows in the gap before
the second token (the first TBT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import simpy

from simulator.engine.links import Flow, Network
from simulator.engine.request import Request
from simulator.errors import SimulationError

if TYPE_CHECKING:
    from simulator.engine.instance import Instance

TRANSFERRED, COLOCATED, ENDED = "transferred", "colocated", "ended"
TRANSFER_MODES = ("layerwise", "serialized", "ideal")


def exposed_transfer_s(transfer_s: float, prefill_s: float, num_layers: int) -> float:
    """Seconds of a layer-wise transfer left after the prefill ends (see the module docstring)."""
    per_layer = transfer_s / num_layers
    return max(per_layer, transfer_s - prefill_s * (num_layers - 1) / num_layers)


@dataclass(eq=False)
class Handoff:
    """One request's move from ``source`` to ``destination``.

    ``done`` succeeds with the outcome: ``transferred``, ``colocated`` (no room
    on the destination; it stayed on the source) or ``ended`` (it finished or
    was rejected before leaving). ``transfer`` is one of ``TRANSFER_MODES``;
    ``kv_bytes`` is the request's whole KV, ``wire_bytes`` what crossed the
    network after the prefill (less with layer-wise overlap, none when ideal).
    """

    request: Request
    source: int
    destination: int
    transfer: str
    started_s: float
    done: simpy.Event
    tokens: int = 0
    kv_bytes: float = 0.0
    wire_bytes: float = 0.0
    flow: Flow | None = None
    outcome: str | None = None
    finished_s: float | None = None


@dataclass
class HandoffStats:
    """Counts of hand-offs by outcome and the bytes they put on the wire."""

    started: int = 0
    transferred: int = 0
    colocated: int = 0
    ended: int = 0
    wire_bytes: float = 0.0
    transfer_s_total: float = 0.0  # first token to adoption, summed over transferred requests


class KVHandoffs:
    """Runs hand-offs between the instances of a cluster.

    Args:
        env: the SimPy environment.
        instances: the cluster's instances, by id.
        network: the inter-instance network.
        ports: ``ports(i)`` gives instance i's (egress, ingress) port names.
        kv_bytes_per_token: KV bytes of one token (all layers).
        latency_s: one-way latency of a transfer.
        num_layers: the model's layers (the pipeline depth of layer-wise transfer).
    """

    def __init__(self, env: simpy.Environment, instances: Sequence[Instance], network: Network, ports,
                 kv_bytes_per_token: float, latency_s: float, num_layers: int) -> None:
        self.env, self.instances, self.network, self.ports = env, instances, network, ports
        self.kv_bytes_per_token, self.latency_s, self.num_layers = kv_bytes_per_token, latency_s, num_layers
        self.stats = HandoffStats()
        self._unreserved_blocks: dict[int, int] = {}
        self.in_flight: set[int] = set()  # ids of requests being handed off

    def start(self, request: Request, destination: int, transfer: str = "layerwise") -> Handoff:
        """Begin moving ``request`` (just given its first token on its instance) to ``destination``."""
        source = request.instance_id
        if transfer not in TRANSFER_MODES:
            raise SimulationError(f"unknown KV transfer mode {transfer!r}; known: {', '.join(TRANSFER_MODES)}")
        if request.id in self.in_flight:
            raise SimulationError(f"request {request.id} is already being handed off")
        if source is None or source == destination or not 0 <= destination < len(self.instances):
            raise SimulationError(f"hand-off of request {request.id} from instance {source} to "
                                  f"{destination}: needs two distinct instances of the cluster")
        handoff = Handoff(request, source, destination, transfer, self.env.now, self.env.event(),
                          tokens=request.computed_tokens)
        handoff.kv_bytes = handoff.tokens * self.kv_bytes_per_token
        handoff.wire_bytes = self._wire_bytes(handoff, self.instances[source])
        blocks = self.instances[destination].kv.blocks_for_tokens(handoff.tokens)
        self._unreserved_blocks[destination] = self._unreserved_blocks.get(destination, 0) + blocks
        self.stats.started += 1
        self.in_flight.add(request.id)
        # Both requests are made now, not when the process first runs: the source's engine
        # loop goes on to plan its next step before any other process gets a turn.
        left = self.instances[source].depart(request)
        reserved = self._request_reservation(handoff, blocks)
        self.env.process(self._run(handoff, left, reserved))
        return handoff

    def incoming_blocks(self, instance_id: int) -> int:
        """KV blocks of hand-offs heading to ``instance_id`` whose reservation is not yet made.

        Once made, reserved blocks count in the instance's ``kv_used_blocks``.
        """
        return self._unreserved_blocks.get(instance_id, 0)

    # ------------------------------------------------------------ mechanism
    def _wire_bytes(self, handoff: Handoff, source: Instance) -> float:
        if handoff.transfer == "ideal":
            return 0.0
        if handoff.transfer == "serialized" or handoff.kv_bytes == 0:
            return handoff.kv_bytes
        start, end = source.committing_step_s
        prefill_s = end - start if end == self.env.now else 0.0
        out_port, _ = self.ports(handoff.source)
        _, in_port = self.ports(handoff.destination)
        transfer_s = self.network.time_alone_s((out_port, in_port), handoff.kv_bytes)
        exposed = exposed_transfer_s(transfer_s, prefill_s, self.num_layers)
        return handoff.kv_bytes * exposed / transfer_s

    def _request_reservation(self, handoff: Handoff, blocks: int) -> simpy.Event:
        """Reserve the KV on the destination at its next step boundary; the event's value says if it fit."""
        destination = self.instances[handoff.destination]
        reserved = self.env.event()

        def reserve() -> None:
            self._unreserved_blocks[handoff.destination] -= blocks
            reserved.succeed(_reserve(destination, handoff.request, handoff.tokens))

        destination.defer_kv_action(reserve)
        return reserved

    def _run(self, handoff: Handoff, left: simpy.Event, reserved: simpy.Event):
        request = handoff.request
        source, destination = self.instances[handoff.source], self.instances[handoff.destination]
        yield left & reserved
        if not left.value:
            if reserved.value:
                destination.defer_kv_action(lambda: destination.kv.free(request))
            return self._end(handoff, ENDED)
        if not reserved.value:
            source.adopt(request)  # its KV is still on the source: decode there
            return self._end(handoff, COLOCATED)
        out_port, _ = self.ports(handoff.source)
        _, in_port = self.ports(handoff.destination)
        latency = 0.0 if handoff.transfer == "ideal" else self.latency_s
        handoff.flow = self.network.send((out_port, in_port), handoff.wire_bytes, latency)
        yield handoff.flow.done
        source.defer_kv_action(lambda: source.kv.free(request))
        destination.adopt(request)
        self.stats.wire_bytes += handoff.wire_bytes
        self.stats.transfer_s_total += self.env.now - handoff.started_s
        self._end(handoff, TRANSFERRED)

    def _end(self, handoff: Handoff, outcome: str) -> None:
        self.in_flight.discard(handoff.request.id)
        handoff.outcome, handoff.finished_s = outcome, self.env.now
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        handoff.done.succeed(outcome)


def _reserve(instance: Instance, request: Request, tokens: int) -> bool:
    """Reserve KV for ``tokens`` of ``request`` on ``instance``, leaving the watermark free."""
    kv = instance.kv
    need = kv.blocks_for_tokens(tokens) - kv.blocks_held(request)
    if need > kv.free_blocks - kv.watermark_blocks:
        return False
    return kv.grow(request, tokens)
