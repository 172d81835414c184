"""Moving a live request between instances: depart at a step boundary, adopt with KV in place.

On identical instances, a move that takes no time must not change anything a
request experiences: its tokens and its finish time equal the unmoved run's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.engine.request import RequestStatus
from simulator.errors import SimulationError
from simulator.runner import Simulation
from test_exact_scenarios import OUTPUT, PROMPT, lone_request_experiment


def _move_at(simulation: Simulation, at_s: float, outcome: list):
    """A process that moves request 0 from instance 0 to 1 at ``at_s`` with no transfer time."""
    env, (source, destination) = simulation.env, simulation.cluster.instances

    def mover():
        yield env.timeout(at_s)
        request = simulation.cluster.active.get(0)
        if request is None:
            outcome.append("gone")
            return
        left = yield source.depart(request)
        outcome.append(left)
        if left:
            assert request.status is RequestStatus.TRANSFERRING and request.instance_id is None
            assert destination.kv.grow(request, request.computed_tokens)
            source.kv.free(request)
            destination.adopt(request)

    env.process(mover())


@pytest.mark.parametrize("fast_forward", [False, True], ids=["stepped", "fast-forward"])
def test_an_instant_move_between_equal_instances_changes_nothing(tmp_path: Path, fast_forward: bool) -> None:
    rows = [(0.0, PROMPT, OUTPUT)]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    alone = Simulation(lone_request_experiment(tmp_path / "a", rows, instances=2, fast_forward=fast_forward)).run()
    simulation = Simulation(lone_request_experiment(tmp_path / "b", rows, instances=2, fast_forward=fast_forward))
    outcome: list = []
    ttft = float(alone.requests.iloc[0]["first_token_s"])
    _move_at(simulation, ttft + 0.2, outcome)
    moved = simulation.run()
    assert outcome == [True]
    before, after = alone.requests.iloc[0], moved.requests.iloc[0]
    assert after["status"] == "finished" and after["generated_tokens"] == before["generated_tokens"] == OUTPUT
    assert after["instance_id"] == 1
    assert after["finish_s"] == pytest.approx(before["finish_s"], rel=1e-9)
    assert after["first_token_s"] == before["first_token_s"]
    for instance in simulation.cluster.instances:
        instance.kv.check()
        assert instance.kv.used_blocks == 0 and instance.queues.pending_tokens == 0


def test_a_request_that_finishes_before_the_boundary_reports_false(tmp_path: Path) -> None:
    # A second, later request keeps the run going past the first one's end.
    rows = [(0.0, PROMPT, 1), (1.0, PROMPT, 1)]
    simulation = Simulation(lone_request_experiment(tmp_path, rows, instances=2))
    outcome: list = []
    _move_at(simulation, 1e-6, outcome)  # mid-prefill; the prefill step is its last
    result = simulation.run()
    assert outcome == [False]
    assert result.requests.iloc[0]["instance_id"] == 0


def test_adopting_without_kv_for_computed_tokens_is_refused(tmp_path: Path) -> None:
    simulation = Simulation(lone_request_experiment(tmp_path, [(0.0, PROMPT, OUTPUT)], instances=2))
    env, (source, destination) = simulation.env, simulation.cluster.instances
    errors: list = []

    def mover():
        yield env.timeout(0.5)
        request = simulation.cluster.active[0]
        yield source.depart(request)
        try:
            destination.adopt(request)
        except SimulationError as err:
            errors.append(str(err))
        assert destination.kv.grow(request, request.computed_tokens)
        source.kv.free(request)
        destination.adopt(request)

    env.process(mover())
    result = simulation.run()
    assert errors and "without KV" in errors[0]
    assert result.requests.iloc[0]["status"] == "finished"


def test_a_swapped_request_departs_to_be_recomputed_and_the_source_keeps_exact_counts(tmp_path: Path) -> None:
    from conftest import build_experiment, memory_utilization, uniform

    model = "llama-3.1-8b"
    experiment = build_experiment(
        tmp_path, model=model,
        cluster={"node": "dgx-h100", "gpu_memory_utilization": memory_utilization(model, "h100-sxm", 200),
                 "preemption": "swap", "instances": [{"count": 2, "gpu": "h100-sxm", "tp": 1}]},
        workload={"generator": {"arrivals": {"process": "poisson", "rate_per_s": 200.0},
                                "lengths": {"prompt": uniform(200, 600), "output": uniform(100, 300)}},
                  "num_requests": 30},
        router={"name": "round_robin"}, seed=1, sim={"sample_interval_s": None})
    simulation = Simulation(experiment)
    env, (source, _) = simulation.env, simulation.cluster.instances
    moved: list = []

    def stealer():
        while not moved:
            yield env.timeout(0.001)
            if source.queues.swapped:
                request = source.queues.swapped[0]
                assert (yield simulation.actions.depart(request))
                assert request.computed_tokens == 0 and request.recomputed_tokens > 0
                queued = (*source.queues.waiting, *source.queues.running, *source.queues.swapped)
                assert source.queues.pending_tokens == sum(r.pending_compute_tokens for r in queued)
                simulation.actions.adopt(1, request)
                moved.append(request)

    env.process(stealer())
    result = simulation.run()
    assert moved, "the scenario must swap a request out"
    assert (result.requests["status"] == "finished").all()
