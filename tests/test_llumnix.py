"""Llumnix policies: freeness, dispatch with priority headroom, migration pairing, auto-scaling."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from conftest import build_experiment, memory_utilization, trace_workload, uniform
from policies.llumnix.dispatch import InfaasDispatch, LlumnixDispatch
from policies.llumnix.freeness import freeness, queued_demand_blocks
from simulator.runner import Simulation
from test_policy_conformance import run_audited


@dataclass
class FakeRequest:
    priority: int = 0
    known_tokens: int = 0


@dataclass
class FakeInstance:
    id: int
    kv_used_blocks: int
    kv_total_blocks: int = 1000
    block_size: int = 16
    running: list = field(default_factory=list)
    waiting: list = field(default_factory=list)
    pending_tokens: int = 0

    @property
    def num_running(self) -> int:
        return len(self.running)


def test_freeness_counts_queued_demand_headroom_and_draining() -> None:
    running = [FakeRequest() for _ in range(4)]
    queue = [FakeRequest(known_tokens=160), FakeRequest(known_tokens=320)]
    instance = FakeInstance(0, kv_used_blocks=600, running=running, waiting=queue, pending_tokens=4 + 480)
    assert queued_demand_blocks(instance, whole_queue=False) == 10
    assert queued_demand_blocks(instance, whole_queue=True) == 30
    assert freeness(instance, whole_queue=False) == (1000 - 600 - 10) / 4
    assert freeness(instance, whole_queue=True) == (1000 - 600 - 30) / 4
    # Headroom counts once per priority present, and for a request being dispatched.
    assert freeness(instance, whole_queue=True, headroom={1: 100}) == (1000 - 600 - 30) / 4
    assert freeness(instance, whole_queue=True, headroom={1: 100}, arriving=1) == (1000 - 600 - 30 - 100) / 4
    running[0].priority = 1
    assert freeness(instance, whole_queue=True, headroom={1: 100}) == (1000 - 600 - 30 - 100) / 4
    assert freeness(instance, whole_queue=True, draining=True) == -math.inf
    # An idle instance divides by one, not zero.
    assert freeness(FakeInstance(1, kv_used_blocks=0), whole_queue=True) == 1000


def test_dispatch_picks_the_freest_and_gathers_high_priority() -> None:
    busy = FakeInstance(0, kv_used_blocks=500, running=[FakeRequest(priority=1)])
    light = FakeInstance(1, kv_used_blocks=300, running=[FakeRequest(), FakeRequest()])
    assert InfaasDispatch().route(FakeRequest(), [busy, light], 0.0) == 0  # 500 / 1 > 700 / 2
    llumnix = LlumnixDispatch(headroom={1: 0.3})
    # A normal request sees instance 0's 300-block headroom: (1000 - 500 - 300) / 1 < 350.
    assert llumnix.route(FakeRequest(priority=0), [busy, light], 0.0) == 1
    # A high-priority one would bring the headroom to instance 1 as well: 200 vs (1000 - 300 - 300) / 2.
    assert llumnix.route(FakeRequest(priority=1), [busy, light], 0.0) == 0


def test_dispatch_on_reported_loads_herds_until_the_next_report() -> None:
    """With a report interval both routers rank the loads as last reported: a burst herds onto one instance."""
    def cluster() -> list[FakeInstance]:
        return [FakeInstance(0, kv_used_blocks=100), FakeInstance(1, kv_used_blocks=200)]

    for router in (InfaasDispatch(load_report_interval_s=0.05), LlumnixDispatch(load_report_interval_s=0.05)):
        instances = cluster()
        assert router.route(FakeRequest(known_tokens=1600), instances, 0.01) == 0
        instances[0].kv_used_blocks = 300  # it admitted the request: 100 more blocks, not yet reported
        assert router.route(FakeRequest(known_tokens=1600), instances, 0.04) == 0
        assert router.route(FakeRequest(known_tokens=1600), instances, 0.05) == 1  # the next report
    # Live loads (the default) see the first admission at once.
    instances = cluster()
    live = InfaasDispatch()
    assert live.route(FakeRequest(), instances, 0.01) == 0
    instances[0].kv_used_blocks = 300
    assert live.route(FakeRequest(), instances, 0.04) == 1
    # A dispatcher that books its own dispatches between reports spreads the burst.
    booking = InfaasDispatch(load_report_interval_s=0.05, count_own_dispatches=True)
    instances = cluster()
    assert booking.route(FakeRequest(known_tokens=3200), instances, 0.01) == 0  # 100 + 200 blocks queued > 200
    assert booking.route(FakeRequest(known_tokens=3200), instances, 0.02) == 1


# ------------------------------------------------------------------- whole runs
def pressured(directory: Path, *, controller: dict | None, router: str | dict = "llumnix", fast_forward: bool = True,
              num_requests: int = 80, rate: float = 20.0, instances: int = 3, labels: list | None = None):
    """A few A10 instances of Llama-2-7B with ~600 KV blocks each and bursty arrivals: preemption happens."""
    workload = {"generator": {"arrivals": {"process": "gamma", "rate_per_s": rate, "cv": 3.0},
                              "lengths": {"prompt": uniform(16, 1500), "output": uniform(20, 600)}},
                "num_requests": num_requests}
    if labels:
        workload["labels"] = labels
    return build_experiment(
        directory, model="llama-2-7b", seed=3,
        cluster={"node": "alibaba-gn7i-a10", "instances": [{"count": instances, "gpu": "a10", "tp": 1}],
                 "gpu_memory_utilization": memory_utilization("llama-2-7b", "a10", 600)},
        workload=workload, router=router if isinstance(router, dict) else {"name": router},
        batching={"name": "vllm", "max_num_seqs": 64, "max_batched_tokens": 4096},
        policies={"controller": controller}, sim={"fast_forward": fast_forward, "sample_interval_s": None})


def test_llumnix_migrates_completes_everything_and_leaks_nothing(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    simulation, result, audit = run_audited(pressured(tmp_path / "a", controller={"name": "llumnix"}))
    summary = result.summary
    assert summary["requests"]["completed"] == 80
    assert summary["events"]["migrations"] > 0 and summary["migration"]["completed"] > 0
    assert summary["migration"]["downtime_s_max"] < 0.5
    assert (result.requests["generated_tokens"] == result.requests["output_tokens"]).all()
    for instance in simulation.cluster.instances:
        assert instance.kv.used_blocks == 0 and not instance.kv.holdings
    assert not simulation.actions.migrator.in_flight
    _, again, _ = run_audited(pressured(tmp_path / "b", controller={"name": "llumnix"}))
    pd.testing.assert_frame_equal(result.requests, again.requests)


def test_llumnix_gives_the_same_results_with_and_without_fast_forward(tmp_path: Path) -> None:
    frames = []
    for fast in (True, False):
        folder = tmp_path / str(fast)
        folder.mkdir()
        result = Simulation(pressured(folder, controller={"name": "llumnix"}, fast_forward=fast,
                                      num_requests=50)).run()
        frames.append(result)
    a, b = (f.requests for f in frames)
    assert frames[0].summary["events"]["migrations"] == frames[1].summary["events"]["migrations"] > 0
    assert list(a["instance_id"]) == list(b["instance_id"])
    for column in ("first_token_s", "finish_s", "last_token_s"):
        assert list(a[column]) == pytest.approx(list(b[column]), rel=1e-9)


def test_migration_removes_preemptions_of_an_imbalanced_dispatch(tmp_path: Path) -> None:
    """Round-robin sends every long request to instance 0 (~600 blocks: too few for eight of them
    at full length); migration moves some to the nearly idle instance 1 before memory runs out."""
    rows = [(0.2 * k, 1200, 700) if k % 2 == 0 else (0.2 * k, 50, 10) for k in range(16)]
    runs = {}
    for name, controller in (("none", None), ("llumnix", {"name": "llumnix"})):
        folder = tmp_path / name
        folder.mkdir()
        experiment = build_experiment(
            folder, model="llama-2-7b",
            cluster={"node": "alibaba-gn7i-a10", "instances": [{"count": 2, "gpu": "a10", "tp": 1}],
                     "gpu_memory_utilization": memory_utilization("llama-2-7b", "a10", 600)},
            workload=trace_workload(folder, rows), router={"name": "round_robin"},
            batching={"name": "vllm", "max_num_seqs": 64, "max_batched_tokens": 4096},
            policies={"controller": controller}, sim={"sample_interval_s": None})
        runs[name] = Simulation(experiment).run()
    assert runs["none"].summary["events"]["preemptions"] > 0
    assert runs["llumnix"].summary["events"]["migrations"] > 0
    assert runs["llumnix"].summary["events"]["preemptions"] == 0
    moved = runs["llumnix"].requests
    assert (moved.iloc[::2]["instance_id"] == 1).any()  # some long requests finished on instance 1
    assert moved["finish_s"].max() < runs["none"].requests["finish_s"].max()


def test_auto_scaling_drains_by_migration_and_saves_instance_hours(tmp_path: Path) -> None:
    scaling = {"min_instances": 1, "initial_instances": 4, "scale_up_below": 5, "scale_down_above": 40,
               "startup_s": 2.0, "interval_s": 0.5}
    summaries = {}
    for name, migration in (("llumnix", True), ("infaas", False)):
        folder = tmp_path / name
        folder.mkdir()
        simulation = Simulation(pressured(folder, instances=4, rate=4.0, num_requests=80, router=name,
                                          controller={"name": "llumnix", "migration": migration,
                                                      "scaling": scaling}))
        summaries[name] = simulation.run().summary
        for instance in simulation.cluster.instances:
            assert instance.kv.used_blocks == 0 and not instance.kv.holdings
    for summary in summaries.values():
        assert summary["requests"]["completed"] == 80
        assert summary["scaling"]["scale_downs"] >= 1
        assert summary["scaling"]["mean_instances"] < 4
    assert summaries["llumnix"]["events"]["migrations"] > 0
    assert summaries["llumnix"]["scaling"]["instance_hours"] < summaries["infaas"]["scaling"]["instance_hours"]


def test_high_priority_requests_run_faster_under_llumnix(tmp_path: Path) -> None:
    """Headroom gathers high-priority requests on lightly loaded instances: they decode faster."""
    labels = [{"when": {"fraction": 0.1}, "set": {"priority": 1}}]
    llumnix = {"name": "llumnix", "headroom": {1: 0.5}}
    tpot = {}
    for name, router, controller in (("infaas", {"name": "infaas"}, None), ("llumnix", llumnix, llumnix)):
        folder = tmp_path / name
        folder.mkdir()
        experiment = pressured(folder, controller=controller, router=router, instances=4, rate=4.0,
                               num_requests=200, labels=labels)
        requests = Simulation(experiment).run().requests
        for priority in (0, 1):
            rows = requests[requests["priority"] == priority]
            tpot[name, priority] = float(((rows["last_token_s"] - rows["first_token_s"])
                                          / (rows["generated_tokens"] - 1)).mean())
    assert tpot["llumnix", 1] < 0.95 * tpot["infaas", 1]
    assert tpot["llumnix", 1] < tpot["llumnix", 0]
