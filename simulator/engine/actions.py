"""Cluster actions: what cluster-level policies may do beyond routing an arrival.

Controllers (a migration planner, an auto-scaler, a disaggregated scheduler)
and routers that need more than a choice of instance receive one
``ClusterActions`` before the run. It exposes the clock, the instances (read
through their ``InstanceView``), the network, periodic callbacks, and the
mechanisms that move requests and KV: a request leaving an instance alive
(``depart``), KV bytes crossing the network between two instances
(``send_kv``) and a request joining an instance with its KV in place
(``adopt``); built on them, live migration of a running request (``migrate``,
see migration) and instances started and drained at run time
(``start_instance``, ``drain_instance``, see scaling). The mechanisms keep all
accounting; policies only decide.
"""

from __future__ import annotations

from typing import Callable, Sequence

import simpy

from simulator.engine.handoff import Handoff, KVHandoffs
from simulator.engine.links import Flow, Network
from simulator.engine.migration import MigrationSettings, Migrator
from simulator.engine.scaling import InstancePool
from simulator.engine.request import Request
from simulator.errors import SimulationError


def instance_ports(instance_id: int) -> tuple[str, str]:
    """The network ports (egress, ingress) of an instance."""
    return f"instance{instance_id}.out", f"instance{instance_id}.in"


class ClusterActions:
    """The clock, the instances, the network and the request-moving mechanisms.

    Args:
        env: the SimPy environment.
        cluster: the cluster (its instances and request bookkeeping).
        network: the inter-instance network (one egress and one ingress port per instance).
        kv_bytes_per_token: KV bytes of one token of the model (all layers).
        latency_s: one-way latency of a transfer between two instances.
    """

    def __init__(self, env: simpy.Environment, cluster, network: Network, kv_bytes_per_token: float,
                 latency_s: float, num_layers: int = 1) -> None:
        self.env, self.cluster, self.network = env, cluster, network
        self.kv_bytes_per_token, self.latency_s = kv_bytes_per_token, latency_s
        # Auto-scaling states (every instance ACTIVE until a policy drains one) and live migration.
        self.pool = InstancePool(env, cluster.instances)
        cluster.pool = self.pool
        self.migrator = Migrator(env, cluster.instances, self.send_kv, self.pool.accepts)
        self.handoffs = KVHandoffs(env, cluster.instances, network, instance_ports, kv_bytes_per_token,
                                   latency_s, num_layers)

    @property
    def now_s(self) -> float:
        return self.env.now

    @property
    def instances(self) -> Sequence:
        return self.cluster.instances

    def every(self, interval_s: float, callback: Callable[[float], None]) -> None:
        """Call ``callback(now_s)`` every ``interval_s`` simulated seconds until the run ends."""
        if interval_s <= 0:
            raise ValueError(f"a periodic action needs a positive interval, got {interval_s}")

        def tick():
            while not self.cluster.done.triggered:
                yield self.env.timeout(interval_s)
                callback(self.env.now)

        self.env.process(tick())

    def depart(self, request: Request) -> simpy.Event:
        """Ask the request's instance to let it go at its next step boundary (value: True if it left)."""
        return self.cluster.instances[request.instance_id].depart(request)

    def send_kv(self, source: int, destination: int, tokens: int) -> Flow:
        """Start moving the KV of ``tokens`` tokens from one instance to another."""
        out_port, _ = instance_ports(source)
        _, in_port = instance_ports(destination)
        return self.network.send((out_port, in_port), tokens * self.kv_bytes_per_token, self.latency_s)

    def transfer_time_alone_s(self, source: int, destination: int, tokens: int) -> float:
        """How long ``send_kv`` would take with the links otherwise idle."""
        out_port, _ = instance_ports(source)
        _, in_port = instance_ports(destination)
        return self.network.time_alone_s((out_port, in_port), tokens * self.kv_bytes_per_token, self.latency_s)

    def adopt(self, destination: int, request: Request) -> None:
        """Put a transferred request into an instance (its KV reserved there already, if any)."""
        self.cluster.instances[destination].adopt(request)

    def on_first_token(self, instance_id: int, callback: Callable[[Request], None] | None) -> None:
        """Call ``callback(request)`` when a prefill on the instance yields a first token (not the last)."""
        self.cluster.instances[instance_id].on_first_token = callback

    def hand_off(self, request: Request, destination: int, transfer: str = "layerwise") -> Handoff:
        """Move a request that just got its first token, with its KV, to ``destination``.

        ``transfer``: ``layerwise``, ``serialized`` or ``ideal`` (see simulator.engine.handoff).
        A request moves by one mechanism at a time: one being migrated is refused.
        """
        if self.migrating(request.id):
            raise SimulationError(f"request {request.id} is being migrated; it cannot be handed off too")
        return self.handoffs.start(request, destination, transfer)

    def incoming_kv_blocks(self, instance_id: int) -> int:
        """KV blocks of hand-offs heading to the instance and not yet reserved there."""
        return self.handoffs.incoming_blocks(instance_id)

    # ------------------------------------------------------- live migration
    def migrate(self, request: Request, destination: int, *, pre_copy: bool = True, max_stages: int = 8,
                final_stage_blocks: int = 1) -> simpy.Event:
        """Live-migrate a running request to ``destination`` (see migration); the event's value is its record."""
        settings = MigrationSettings(pre_copy, max_stages, final_stage_blocks)
        if request.id in self.handoffs.in_flight:
            raise SimulationError(f"request {request.id} is being handed off; it cannot be migrated too")
        return self.migrator.migrate(request, destination, settings)

    def migrating(self, request_id: int) -> bool:
        """Whether the request is being migrated now."""
        return request_id in self.migrator.in_flight

    @property
    def migrations_in_flight(self) -> Sequence:
        """Records (``MigrationRecord``) of the migrations under way."""
        return tuple(self.migrator.in_flight.values())

    # ---------------------------------------------------------- auto-scaling
    def instance_state(self, instance_id: int) -> str:
        """``active``, ``starting``, ``draining`` or ``inactive`` (see scaling)."""
        return self.pool.state(instance_id).value

    def accepting(self, instance_id: int) -> bool:
        """Whether the instance may receive requests (routed or migrated) now."""
        return self.pool.accepts(instance_id)

    def start_instance(self, instance_id: int, startup_s: float) -> simpy.Event:
        """Provision an inactive instance; routable after ``startup_s`` (the event fires then)."""
        return self.pool.start(instance_id, startup_s)

    def drain_instance(self, instance_id: int) -> simpy.Event:
        """Stop routing to an instance; it is released once it holds no request (the event fires then)."""
        return self.pool.drain(instance_id)
