"""Splitwise's policies: the cluster-level scheduler, its pools, and the machine-level batching.

Decisions are checked on fake instance views (which machine a request gets,
when a machine is borrowed into the mixed pool and when it returns), and
end to end: the Baseline designs (no prompt or token pool) are exactly JSQ on
pending tokens, prompts batch up to 2048 tokens, and a disaggregated cluster
prefills on prompt machines and decodes on token machines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from conftest import build_experiment, trace_workload
from policies.splitwise.pools import Pools
from policies.splitwise.scheduler import SplitwiseScheduler
from simulator.policy_api import RequestStatus
from simulator.runner import Simulation


@dataclass
class View:
    """An instance as a router sees it."""

    id: int
    tag: str
    pending_tokens: int = 0
    num_waiting: int = 0
    num_requests: int = 0
    kv_used_blocks: int = 0
    kv_total_blocks: int = 1000
    block_size: int = 16


@dataclass
class Req:
    id: int
    prompt_tokens: int = 160
    status: RequestStatus = RequestStatus.WAITING


@dataclass
class FakeActions:
    instances: list
    hooks: dict = field(default_factory=dict)
    handed: list = field(default_factory=list)

    def on_first_token(self, instance_id, callback):
        self.hooks[instance_id] = callback

    def incoming_kv_blocks(self, instance_id):
        return 0

    def hand_off(self, request, destination, transfer="layerwise"):
        self.handed.append((request.id, destination, transfer))


def scheduler(views, **params) -> tuple[SplitwiseScheduler, FakeActions]:
    policy = SplitwiseScheduler(**params)
    actions = FakeActions(views)
    policy.bind_cluster(actions)
    return policy, actions


def test_prompts_join_the_shortest_prompt_queue_and_tokens_the_emptiest_token_machine() -> None:
    views = [View(0, "prompt", pending_tokens=500), View(1, "prompt", pending_tokens=100),
             View(2, "token", kv_used_blocks=600), View(3, "token", kv_used_blocks=200)]
    policy, actions = scheduler(views)
    request = Req(7)
    assert policy.route(request, views, 0.0) == 1
    actions.hooks[1](request)  # its first token on the prompt machine
    assert actions.handed == [(7, 3, "layerwise")]


def test_assigned_requests_count_towards_a_token_machines_memory() -> None:
    views = [View(0, "prompt"), View(1, "token"), View(2, "token")]
    policy, actions = scheduler(views, kv_transfer="serialized")
    first, second = Req(1, prompt_tokens=1600), Req(2, prompt_tokens=1600)
    policy.route(first, views, 0.0)
    policy.route(second, views, 0.0)
    actions.hooks[0](first)
    actions.hooks[0](second)
    assert [destination for _, destination, _ in actions.handed] == [1, 2]
    assert all(transfer == "serialized" for *_, transfer in actions.handed)


def test_a_long_prompt_queue_borrows_a_token_machine_into_the_mixed_pool() -> None:
    views = [View(0, "prompt", pending_tokens=9000, num_waiting=3), View(1, "token", pending_tokens=40),
             View(2, "token", pending_tokens=10)]
    policy, actions = scheduler(views)
    request = Req(5)
    assert policy.route(request, views, 0.0) == 2, "the token machine with the fewest pending tokens"
    assert [v.id for v in policy._pools.mixed] == [2]
    # The token machine chosen is the least loaded one of the token pool (1), so the request moves there.
    actions.hooks[2](request)
    assert actions.handed == [(5, 1, "layerwise")]


def test_full_token_machines_borrow_a_prompt_machine_and_co_locate() -> None:
    views = [View(0, "prompt"), View(1, "token", kv_used_blocks=995)]
    policy, actions = scheduler(views)
    request = Req(3, prompt_tokens=320)
    assert policy.route(request, views, 0.0) == 0
    assert [v.id for v in policy._pools.mixed] == [0]
    actions.hooks[0](request)
    assert actions.handed == [], "prompt and token machine are the same: it decodes where it is"


def test_a_borrowed_machine_returns_home_when_idle() -> None:
    views = [View(0, "prompt"), View(1, "token", num_requests=2)]
    expecting = {0: 0, 1: 0}
    pools = Pools(views, expecting.get)
    pools.borrow(views[1])
    assert [v.id for v in pools.pool("token")] == []
    pools.return_idle()
    assert [v.id for v in pools.mixed] == [1], "it still holds requests"
    views[1].num_requests = 0
    expecting[1] = 5
    pools.return_idle()
    assert [v.id for v in pools.mixed] == [1], "a hand-off is on its way to it"
    expecting[1] = 0
    pools.return_idle()
    assert pools.mixed == [] and [v.id for v in pools.pool("token")] == [1]


def test_an_assignment_of_a_request_that_ended_on_its_prompt_machine_is_forgotten() -> None:
    views = [View(0, "prompt"), View(1, "token")]
    policy, _ = scheduler(views)
    one_token = Req(1, prompt_tokens=800)
    policy.route(one_token, views, 0.0)
    assert policy._expecting(1) == 51
    one_token.status = RequestStatus.FINISHED  # no first-token hook for a one-token output
    policy.route(Req(2, prompt_tokens=16), views, 0.0)
    assert policy._expecting(1) == 2


# ------------------------------------------------------------------ end to end
def experiment(directory: Path, rows, instances, router, batching=None):
    return build_experiment(
        directory, model="llama-3.1-8b", cluster={"node": "dgx-h100", "instances": instances},
        workload=trace_workload(directory, rows), router=router, batching=batching or {"name": "splitwise"},
        sim={"sample_interval_s": None})


def test_baseline_designs_are_jsq_on_pending_tokens(tmp_path: Path) -> None:
    rows = [(0.05 * i, 200 + 97 * (i % 13), 20 + 31 * (i % 7)) for i in range(60)]
    group = [{"count": 3, "gpu": "h100-sxm", "tp": 1}]
    tables = []
    for name, router in (("sw", {"name": "splitwise"}), ("jsq", {"name": "jsq", "load": "tokens"})):
        (tmp_path / name).mkdir()
        tables.append(Simulation(experiment(tmp_path / name, rows, group, router)).run().requests)
    pd.testing.assert_frame_equal(*tables)


def test_prompt_machines_prefill_and_token_machines_decode(tmp_path: Path) -> None:
    rows = [(0.02 * i, 300 + 50 * (i % 9), 30 + 10 * (i % 5)) for i in range(40)]
    instances = [{"count": 2, "gpu": "h100-sxm", "tp": 1, "tag": "prompt"},
                 {"count": 2, "gpu": "h100-sxm", "tp": 1, "tag": "token"}]
    simulation = Simulation(experiment(tmp_path, rows, instances, {"name": "splitwise"}))
    result = simulation.run()
    done = result.requests
    assert (done["status"] == "finished").all()
    assert set(done["instance_id"]) == {2, 3}, "every request finished on a token machine"
    stats = simulation.actions.handoffs.stats
    assert stats.transferred == len(rows)
    assert result.summary["events"]["kv_transfer_bytes"] > 0


@pytest.mark.parametrize("prompts, together", [((1000, 1000), True), ((1500, 1500), False), ((3000,), True)])
def test_prompts_batch_up_to_2048_tokens(tmp_path: Path, prompts, together: bool) -> None:
    rows = [(0.0, prompt, 4) for prompt in prompts]
    group = [{"count": 1, "gpu": "h100-sxm", "tp": 1}]
    done = Simulation(experiment(tmp_path, rows, group, {"name": "round_robin"})).run().requests
    assert (done["status"] == "finished").all(), "a prompt over the batch limit still runs, alone"
    assert (done["first_token_s"].nunique() == 1) is together
