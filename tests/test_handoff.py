"""KV hand-off from a prompt machine to a token machine (simulator.engine.handoff).

Exact timings on an otherwise idle cluster: the first token comes from the
prompt machine at the co-located time; the gap to the second token is the
co-located decode plus the network latency plus the transfer - all of it
serialized, only the last layer's share layer-wise (the link being faster
than the prefill), none when ideal. Two transfers into one token machine
share its ingress and take twice as long. Under memory pressure (preemption,
reservations that do not fit) no KV block is leaked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import build_experiment, memory_utilization, trace_workload, uniform
from simulator.engine.handoff import exposed_transfer_s
from simulator.errors import SimulationError
from simulator.hardware import DEFAULT_CATALOG
from simulator.runner import Simulation

MODEL = "llama-3.1-8b"
PROMPT = 1024
LINK = DEFAULT_CATALOG.get("link", "ib-ndr")  # dgx-h100's inter-node link, one NIC per GPU


def split_cluster(directory: Path, rows, *, prompts: int = 1, tokens: int = 1, transfer: str = "layerwise",
                  **extra: Any):
    """``prompts`` prompt and ``tokens`` token H100s (TP1) serving Llama-3.1-8B under Splitwise."""
    return build_experiment(
        directory, model=MODEL,
        cluster={"node": "dgx-h100", "instances": [{"count": prompts, "gpu": "h100-sxm", "tp": 1, "tag": "prompt"},
                                                   {"count": tokens, "gpu": "h100-sxm", "tp": 1, "tag": "token"}],
                 **extra.pop("cluster", {})},
        workload=extra.pop("workload", None) or trace_workload(directory, rows),
        router={"name": "splitwise", "kv_transfer": transfer}, batching={"name": "splitwise"},
        sim={"sample_interval_s": None, **extra.pop("sim", {})}, **extra)


def colocated(directory: Path, rows):
    return build_experiment(
        directory, model=MODEL, cluster={"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}]},
        workload=trace_workload(directory, rows), router={"name": "round_robin"}, batching={"name": "splitwise"},
        sim={"sample_interval_s": None})


def run(experiment) -> tuple[Simulation, pd.DataFrame]:
    simulation = Simulation(experiment)
    result = simulation.run()
    return simulation, result.requests


def transfer_s(tokens: int) -> float:
    model = DEFAULT_CATALOG.get("model", MODEL)
    return tokens * model.kv_bytes_per_token / LINK.bytes_per_s


def test_exposed_time_is_the_last_layer_when_the_link_is_faster_than_compute() -> None:
    assert exposed_transfer_s(0.008, 0.100, 80) == pytest.approx(0.008 / 80)
    # Slower link: everything beyond what the first L-1 layers' compute hides.
    assert exposed_transfer_s(0.500, 0.100, 80) == pytest.approx(0.500 - 0.100 * 79 / 80)
    assert exposed_transfer_s(0.0, 0.1, 80) == 0.0


@pytest.mark.parametrize("transfer", ["serialized", "layerwise", "ideal"])
def test_the_transfer_shows_in_the_first_tbt_only(tmp_path: Path, transfer: str) -> None:
    rows = [(0.0, PROMPT, 2)]  # two tokens: the second is the first one the token machine makes
    (tmp_path / "alone").mkdir()
    (tmp_path / "split").mkdir()
    _, alone = run(colocated(tmp_path / "alone", rows))
    simulation, split = run(split_cluster(tmp_path / "split", rows, transfer=transfer))
    first, second = float(split.at[0, "first_token_s"]), float(split.at[0, "last_token_s"])
    assert first == float(alone.at[0, "first_token_s"]), "the first token comes from the prompt machine"
    assert split.at[0, "instance_id"] == 1, "the request finished on the token machine"
    decode = float(alone.at[0, "last_token_s"]) - float(alone.at[0, "first_token_s"])
    layers = DEFAULT_CATALOG.get("model", MODEL).num_layers
    full = transfer_s(PROMPT)
    assert full < first, "the scenario needs a link faster than the prefill"
    expected = {"serialized": LINK.latency_s + full, "layerwise": LINK.latency_s + full / layers,
                "ideal": 0.0}[transfer]
    assert second - first == pytest.approx(decode + expected, rel=1e-9, abs=1e-12)
    stats = simulation.actions.handoffs.stats
    assert (stats.started, stats.transferred, stats.colocated) == (1, 1, 0)


def test_two_transfers_into_one_token_machine_share_its_link(tmp_path: Path) -> None:
    rows = [(0.0, PROMPT, 2), (0.0, PROMPT, 2)]
    simulation, split = run(split_cluster(tmp_path, rows, prompts=2, tokens=1, transfer="serialized"))
    assert sorted(split["instance_id"]) == [2, 2]
    assert split["first_token_s"].nunique() == 1, "both prompts ran at once, on the two prompt machines"
    token_machine = simulation.cluster.instances[2]
    decode_two = token_machine.cost_model.decode_time_s(2, PROMPT)
    gaps = split["last_token_s"] - split["first_token_s"]
    assert list(gaps) == [pytest.approx(LINK.latency_s + 2 * transfer_s(PROMPT) + decode_two, rel=1e-9)] * 2


def test_a_request_moves_by_one_hand_off_at_a_time(tmp_path: Path) -> None:
    rows = [(0.0, PROMPT, 4)]
    simulation = Simulation(split_cluster(tmp_path, rows, tokens=2))
    actions, handoffs, refused = simulation.actions, simulation.actions.handoffs, []

    class TryingAgain:
        """The hand-offs, where each start is followed by a second move of the same request."""

        def __getattr__(self, name):
            return getattr(handoffs, name)

        def start(self, request, destination, transfer="layerwise"):
            handoff = handoffs.start(request, destination, transfer)
            other = 3 - destination  # the other token machine
            for second_move in (lambda: actions.hand_off(request, other), lambda: actions.migrate(request, other)):
                with pytest.raises(SimulationError, match="being handed off"):
                    second_move()
                refused.append(request.id)
            return handoff

    actions.handoffs = TryingAgain()  # the actions start every hand-off
    result = simulation.run()
    assert refused == [0, 0] and not handoffs.in_flight
    assert result.requests.at[0, "status"] == "finished" and handoffs.stats.transferred == 1


def pressured(directory: Path, fast_forward: bool = True, preemption: str = "recompute"):
    """Small KV on every machine and long outputs: token machines preempt, reservations fail."""
    return split_cluster(
        directory, None, prompts=2, tokens=1,
        cluster={"gpu_memory_utilization": memory_utilization(MODEL, "h100-sxm", 300), "preemption": preemption},
        workload={"generator": {"arrivals": {"process": "poisson", "rate_per_s": 30.0},
                                "lengths": {"prompt": uniform(200, 1500), "output": uniform(50, 400)}},
                  "num_requests": 80},
        seed=3, sim={"fast_forward": fast_forward})


@pytest.mark.parametrize("preemption", ["recompute", "swap"])
def test_no_kv_block_is_leaked_by_transfers_preemptions_or_fallbacks(tmp_path: Path, preemption: str) -> None:
    simulation, requests = run(pressured(tmp_path, preemption=preemption))
    stats = simulation.actions.handoffs.stats
    assert (requests["status"] == "finished").all()
    assert stats.transferred > 0 and stats.colocated > 0, "the scenario must exercise both outcomes"
    assert requests["num_preemptions"].sum() > 0, "the scenario must preempt"
    assert stats.started == stats.transferred + stats.colocated + stats.ended
    for instance in simulation.cluster.instances:
        instance.kv.check()
        assert instance.kv.used_blocks == 0 and not instance.kv.holdings
        assert not instance.queues.has_work() and instance.queues.pending_tokens == 0
    assert simulation.actions.incoming_kv_blocks(2) == 0
    if preemption == "swap":
        assert all(i.host.used_bytes == 0 for i in simulation.cluster.instances), "host DRAM is released"


def test_fast_forward_gives_the_same_results_with_hand_offs(tmp_path: Path) -> None:
    (tmp_path / "ff").mkdir()
    (tmp_path / "step").mkdir()
    _, fast = run(pressured(tmp_path / "ff", fast_forward=True))
    _, stepped = run(pressured(tmp_path / "step", fast_forward=False))
    pd.testing.assert_frame_equal(fast, stepped, rtol=1e-9)


def test_a_waiting_request_waits_for_kv_held_by_requests_in_transit_instead_of_being_rejected(
        tmp_path: Path) -> None:
    # Six 2000-token prompts at once on 300-block machines: hand-offs hold KV on both sides while
    # the queue waits. That memory frees itself, so no request may be rejected as never admissible.
    model = "llama-3.1-8b"
    experiment = build_experiment(
        tmp_path, model=model,
        cluster={"node": "dgx-h100", "gpu_memory_utilization": memory_utilization(model, "h100-sxm", 300),
                 "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1, "tag": "prompt"},
                               {"count": 1, "gpu": "h100-sxm", "tp": 1, "tag": "token"}]},
        workload=trace_workload(tmp_path, [(0.0, 2000, 10)] * 6),
        router={"name": "splitwise", "kv_transfer": "serialized"}, batching={"name": "splitwise"},
        sim={"sample_interval_s": None})
    simulation = Simulation(experiment)
    result = simulation.run()
    assert (result.requests["status"] == "finished").all(), result.requests["reject_reason"].tolist()
    for instance in simulation.cluster.instances:
        instance.kv.check()
        assert instance.kv.used_blocks == 0
