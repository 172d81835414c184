"""The network of ports: transfer times, sharing between concurrent flows, max-min fairness.

A transfer alone takes latency + bytes / bandwidth of its slowest port; flows
on one port split it equally; a flow held back elsewhere leaves its unused
share to the others (progressive filling).
"""

from __future__ import annotations

import pytest
import simpy

from simulator.engine.links import Network
from simulator.errors import SimulationError

GB = 1e9


def network(**ports: float) -> tuple[simpy.Environment, Network]:
    env = simpy.Environment()
    net = Network(env)
    for name, gb_per_s in ports.items():
        net.add_port(name, gb_per_s * GB)
    return env, net


def finish_times(env: simpy.Environment, flows) -> list[float]:
    env.run()
    return [flow.finished_s for flow in flows]


def test_one_transfer_takes_bytes_over_bandwidth() -> None:
    env, net = network(out=25.0, into=200.0)
    flow = net.send(("out", "into"), 3 * GB)
    assert finish_times(env, [flow]) == [pytest.approx(3 / 25.0, rel=1e-12)]
    assert flow.duration_s == pytest.approx(net.time_alone_s(("out", "into"), 3 * GB), rel=1e-12)
    assert net.bytes_delivered == pytest.approx(3 * GB)


def test_latency_is_paid_once_before_the_bytes() -> None:
    env, net = network(link=10.0)
    flow = net.send(("link",), 1 * GB, latency_s=0.005)
    assert finish_times(env, [flow]) == [pytest.approx(0.005 + 0.1, rel=1e-12)]


def test_two_concurrent_transfers_on_one_link_take_twice_as_long() -> None:
    env, net = network(link=50.0)
    alone = net.time_alone_s(("link",), 2 * GB)
    flows = [net.send(("link",), 2 * GB), net.send(("link",), 2 * GB)]
    assert finish_times(env, flows) == [pytest.approx(2 * alone, rel=1e-12)] * 2


def test_a_flow_that_ends_early_hands_its_share_to_the_other() -> None:
    env, net = network(link=10.0)
    small, large = net.send(("link",), 1 * GB), net.send(("link",), 3 * GB)
    # Both at 5 GB/s until the small one is done at 0.2 s; the large one has 2 GB left, alone at 10 GB/s.
    assert finish_times(env, [small, large]) == [pytest.approx(0.2), pytest.approx(0.4)]


def test_rates_are_max_min_fair_across_ports() -> None:
    """B crosses a slow port shared with C: both get 1 GB/s there, and A takes the rest of the fast port."""
    env, net = network(fast=10.0, slow=2.0)
    a = net.send(("fast",), 9 * GB)
    b = net.send(("fast", "slow"), 1 * GB)
    c = net.send(("slow",), 1 * GB)
    env.run(until=1e-9)
    assert [f.rate / GB for f in (a, b, c)] == [pytest.approx(9.0), pytest.approx(1.0), pytest.approx(1.0)]
    assert finish_times(env, [a, b, c]) == [pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0)]


def test_cancelling_a_flow_speeds_up_the_rest_and_never_fires_it() -> None:
    env, net = network(link=10.0)
    kept, dropped = net.send(("link",), 2 * GB), net.send(("link",), 2 * GB)

    def cancel_later():
        yield env.timeout(0.1)  # 0.5 GB each delivered
        net.cancel(dropped)

    env.process(cancel_later())
    env.run()
    assert kept.finished_s == pytest.approx(0.1 + 1.5 / 10.0)
    assert dropped.cancelled and dropped.finished_s is None and not dropped.done.triggered
    assert net.port_flows("link") == 0


def test_a_flow_needs_known_ports_and_sane_sizes() -> None:
    _, net = network(link=1.0)
    with pytest.raises(SimulationError):
        net.send(("nowhere",), 1.0)
    with pytest.raises(SimulationError):
        net.send(("link",), -1.0)
