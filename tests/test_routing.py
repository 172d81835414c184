"""Join-the-shortest-queue picks the least-loaded instance, the lowest id on a tie, whatever the order offered."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from policies.routing.jsq import JoinShortestQueue
from policies.routing.load import instance_load


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
