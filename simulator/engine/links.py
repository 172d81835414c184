"""Data moving between instances: flows that share link bandwidth max-min fairly.

A transfer (a request's KV going from a prompt machine to a token machine, a
migration's pre-copy stage, a workflow's KV moving home) is a ``Flow`` of
bytes through a sequence of ports - normally the source instance's egress and
the destination's ingress. Every port has a bandwidth; the flows crossing it
share it. Rates are max-min fair (progressive filling): the most contended
port splits its bandwidth equally among its flows, those flows are fixed at
that rate, and the rest is repeated on what is left. So two flows on one
link each get half and take twice as long as one alone, and a flow limited
elsewhere leaves its unused share to the others.

Rates change only when a flow starts, ends or is cancelled; the network then
advances every flow's remaining bytes at the old rates, recomputes the rates
and schedules one wake-up at the next completion. A flow's latency is paid
once, before it joins the bandwidth sharing.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import simpy

from simulator.errors import SimulationError

# Remaining bytes below this count as delivered (float dust from rate changes).
_DONE_BYTES = 1e-6


class Flow:
    """One transfer in progress. ``done`` succeeds (with the flow) when its last byte arrives.

    Attributes:
        ports: the ports it crosses, in order.
        nbytes: its size.
        started_s: when it was asked for (latency included in its duration).
        finished_s: when its last byte arrived (None until then, or if cancelled).
    """

    __slots__ = ("ports", "nbytes", "remaining", "rate", "started_s", "finished_s", "done", "cancelled")

    def __init__(self, env: simpy.Environment, ports: tuple[str, ...], nbytes: float) -> None:
        self.ports, self.nbytes = ports, float(nbytes)
        self.remaining = float(nbytes)
        self.rate = 0.0
        self.started_s = env.now
        self.finished_s: float | None = None
        self.done = env.event()
        self.cancelled = False

    @property
    def duration_s(self) -> float | None:
        return None if self.finished_s is None else self.finished_s - self.started_s


class Network:
    """Ports with bandwidths and the flows crossing them.

    Args:
        env: the SimPy environment.
    """

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.bandwidth: dict[str, float] = {}
        self.flows: list[Flow] = []
        self._advanced_s = 0.0
        self._generation = 0
        self.bytes_delivered = 0.0

    def add_port(self, name: str, bytes_per_s: float) -> None:
        if bytes_per_s <= 0:
            raise ValueError(f"port {name!r} needs a positive bandwidth, got {bytes_per_s}")
        self.bandwidth[name] = float(bytes_per_s)

    # ------------------------------------------------------------------ API
    def send(self, ports: Sequence[str], nbytes: float, latency_s: float = 0.0) -> Flow:
        """Start moving ``nbytes`` through ``ports`` after ``latency_s``; returns the flow."""
        unknown = [p for p in ports if p not in self.bandwidth]
        if unknown or not ports:
            raise SimulationError(f"a flow needs known ports; unknown: {unknown or 'none given'}")
        if nbytes < 0 or latency_s < 0:
            raise SimulationError(f"a flow needs non-negative bytes and latency, got {nbytes}, {latency_s}")
        flow = Flow(self.env, tuple(ports), nbytes)
        if latency_s > 0:
            self.env.process(self._join_after(flow, latency_s))
        else:
            self._join(flow)
        return flow

    def cancel(self, flow: Flow) -> None:
        """Stop a flow (its ``done`` never fires); the others speed up at once."""
        if flow.finished_s is not None or flow.cancelled:
            return
        flow.cancelled = True
        if flow in self.flows:
            self._advance()
            self.flows.remove(flow)
            self._reschedule()

    def time_alone_s(self, ports: Iterable[str], nbytes: float, latency_s: float = 0.0) -> float:
        """How long ``nbytes`` would take through ``ports`` with nothing else on them."""
        return latency_s + nbytes / min(self.bandwidth[p] for p in ports)

    def port_flows(self, port: str) -> int:
        """Flows crossing ``port`` now (for policies that avoid busy links)."""
        return sum(1 for f in self.flows if port in f.ports)

    # ------------------------------------------------------------ mechanism
    def _join_after(self, flow: Flow, latency_s: float):
        yield self.env.timeout(latency_s)
        if not flow.cancelled:
            self._join(flow)

    def _join(self, flow: Flow) -> None:
        self._advance()
        self.flows.append(flow)
        self._reschedule()

    def _advance(self) -> None:
        """Move every flow forward at its current rate up to now."""
        elapsed = self.env.now - self._advanced_s
        if elapsed > 0:
            for flow in self.flows:
                moved = min(flow.remaining, flow.rate * elapsed)
                flow.remaining -= moved
                self.bytes_delivered += moved
        self._advanced_s = self.env.now

    def _reschedule(self) -> None:
        """Finish flows that are through, recompute fair rates, wake at the next completion."""
        for flow in [f for f in self.flows if f.remaining <= _DONE_BYTES]:
            self._finish(flow)
        self._generation += 1
        if not self.flows:
            return
        self._assign_rates()
        wait = min(f.remaining / f.rate for f in self.flows)
        self.env.process(self._wake(self._generation, wait))

    def _wake(self, generation: int, wait: float):
        yield self.env.timeout(wait)
        if generation == self._generation:  # no start or cancel since; otherwise a newer wake-up exists
            self._advance()
            soonest = min(self.flows, key=lambda f: f.remaining / f.rate)
            soonest.remaining = 0.0  # the one this wake-up was for; float dust must not delay it
            self._reschedule()

    def _finish(self, flow: Flow) -> None:
        self.flows.remove(flow)
        self.bytes_delivered += flow.remaining
        flow.remaining = 0.0
        flow.finished_s = self.env.now
        flow.done.succeed(flow)

    def _assign_rates(self) -> None:
        """Max-min fair rates by progressive filling over the ports."""
        unfixed = set(range(len(self.flows)))
        capacity = dict(self.bandwidth)
        while unfixed:
            users: dict[str, list[int]] = {}
            for i in unfixed:
                for port in self.flows[i].ports:
                    users.setdefault(port, []).append(i)
            # The bottleneck: the port offering the smallest equal share.
            port = min(users, key=lambda p: (capacity[p] / len(users[p]), p))
            share = capacity[port] / len(users[port])
            for i in users[port]:
                flow = self.flows[i]
                flow.rate = share
                for crossed in flow.ports:
                    capacity[crossed] -= share
                unfixed.discard(i)
