"""Join-the-shortest-queue picks the least-loaded instance, the lowest id on a tie, whatever the order offered.

``least_loaded`` reads the engine's own instances through their types when compiled: it must
agree with the properties routers read of any ``InstanceView``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import build_experiment
from policies.routing.jsq import JoinShortestQueue
from policies.routing.load import instance_load
from simulator.policy_api import least_loaded
from simulator.runner import Simulation


@dataclass
class _Instance:
    id: int
    num_requests: int
    pending_tokens: int
    kv_used_blocks: int
    block_size: int = 16
    kv_total_blocks: int = 1000


_instances = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(0, 5)), min_size=1, max_size=12)


@given(loads=_instances, order=st.randoms(use_true_random=False),
       metric=st.sampled_from(["requests", "tokens", "kv"]))
def test_jsq_chooses_the_least_loaded_lowest_id(loads, order, metric):
    instances = [_Instance(i, requests, tokens, kv) for i, (requests, tokens, kv) in enumerate(loads)]
    order.shuffle(instances)  # offered in any order: the tie still goes to the lowest id
    chosen = JoinShortestQueue(load=metric).route(None, instances, 0.0)
    assert chosen == min((instance_load(i, metric), i.id) for i in instances)[1]


def test_jsq_breaks_a_tie_by_id_not_by_position():
    instances = [_Instance(5, 1, 10, 0), _Instance(2, 3, 10, 0), _Instance(9, 0, 10, 0)]
    assert JoinShortestQueue(load="tokens").route(None, instances, 0.0) == 2
    assert JoinShortestQueue(load="requests").route(None, instances, 0.0) == 9


@pytest.fixture(scope="module")
def engine_instances(tmp_path_factory) -> tuple:
    """Six idle instances of a real cluster; each example sets their loads."""
    experiment = build_experiment(tmp_path_factory.mktemp("instances"), cluster={
        "node": "dgx-h100", "instances": [{"count": 6, "gpu": "h100-sxm", "tp": 1}]})
    return tuple(Simulation(experiment).cluster.instances)


@given(loads=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), min_size=6, max_size=6),
       order=st.randoms(use_true_random=False), with_view=st.booleans(),
       metric=st.sampled_from(["requests", "tokens"]))
def test_least_loaded_reads_engine_instances_as_their_properties_say(engine_instances, loads, order,
                                                                     with_view, metric):
    offered = list(engine_instances)
    for instance, (queued, tokens) in zip(offered, loads):
        instance.queues.waiting.clear()
        instance.queues.waiting.extend([object()] * queued)  # counted, never scheduled
        instance.queues.pending_tokens = tokens
    if with_view:  # another InstanceView among them: read through its properties
        offered.append(_Instance(17, num_requests=1, pending_tokens=1, kv_used_blocks=0))
    order.shuffle(offered)
    expected = min((instance_load(i, metric), i.id) for i in offered)[1]
    assert least_loaded(offered, metric) == expected
    assert JoinShortestQueue(load=metric).route(None, offered, 0.0) == expected


def test_least_loaded_of_nothing_is_none_and_an_unknown_load_is_refused():
    assert least_loaded([], "tokens") is None
    with pytest.raises(ValueError, match="kv"):
        least_loaded([_Instance(0, 0, 0, 0)], "kv")
