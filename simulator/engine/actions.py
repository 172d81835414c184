"""Cluster actions: what cluster-level policies may do beyond routing an arrival.

Controllers (a migration planner, an auto-scaler, a disaggregated scheduler)
and routers that need more than a choice of instance receive one
``ClusterActions`` before the run. It exposes the clock, the instances (read
through their ``InstanceView``), the network, periodic callbacks, and the
mechanisms that move requests and KV: a request leaving an instance alive
(``depart``), KV bytes crossing the network between two instances
(``send_kv``) and a request joining an instance with its KV in place
(``adopt``). The mechanisms keep all accounting; policies only decide.
"""

from __future__ import annotations

from typing import Callable, Sequence

import simpy

from simulator.engine.links import Flow, Network
from simulator.engine.request import Request


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
                 latency_s: float) -> None:
        self.env, self.cluster, self.network = env, cluster, network
        self.kv_bytes_per_token, self.latency_s = kv_bytes_per_token, latency_s

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
