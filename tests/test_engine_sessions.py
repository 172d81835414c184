"""Sessions through the engine: carried-context reuse, closed loops, Mooncake prefix hits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from simulator.config import load_experiment
from simulator.engine.session import CallSpec, SessionSpec
from simulator.runner import Simulation

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _experiment(tmp_path: Path, workload: dict, **cluster):
    data = {"name": "sessions", "seed": 0, "model": "llama-3.1-8b",
            "cluster": {"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}], **cluster},
            "workload": workload,
            "policies": {"batching": {"name": "vllm", "chunked_prefill": True}},
            "sim": {"check_invariants": True}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_experiment(path)


def _run_specs(experiment, specs):
    sim = Simulation(experiment)
    sim.workload = specs
    return sim.run()


TINY = {"generator": {"arrivals": {"process": "poisson", "rate_per_s": 1},
                      "lengths": {"prompt": {"dist": "fixed", "tokens": 8},
                                  "output": {"dist": "fixed", "tokens": 2}}},
        "num_requests": 1}


def test_retained_context_prefills_only_new_tokens(tmp_path):
    calls = (CallSpec(1000, 50), CallSpec(200, 50, wait_before_s=2.0), CallSpec(300, 20, wait_before_s=1.0))
    result = _run_specs(_experiment(tmp_path, TINY), [SessionSpec("s1", 0.0, calls)])
    rows = result.requests.sort_values("request_id")
    assert rows["prompt_tokens"].tolist() == [1000, 1250, 1600]
    # Call 2 reuses the full blocks of call 1's prompt and output: 1050 tokens -> 65 blocks.
    assert rows["prefix_hit_tokens"].tolist() == [0, 65 * 16, (1300 // 16) * 16]
    session = result.sessions.iloc[0]
    assert session["status"] == "completed" and session["calls_completed"] == 3
    assert result.summary["workflows"]["completed"] == 1
    tct = result.summary["workflows"]["tct_s"]["mean"]
    assert tct == pytest.approx(rows["finish_s"].max() - 0.0)


def test_call_waits_for_previous_call_and_tool(tmp_path):
    calls = (CallSpec(500, 20), CallSpec(100, 10, wait_before_s=3.0))
    result = _run_specs(_experiment(tmp_path, TINY), [SessionSpec("s", 1.0, calls)])
    first, second = result.requests.sort_values("request_id").itertuples()
    assert second.arrival_s == pytest.approx(first.finish_s + 3.0)


def test_closed_loop_clients_complete_every_call(tmp_path):
    workload = {"closed_loop": {"clients": 4, "think_time": {"dist": "exponential", "mean_s": 0.5},
                                "lengths": {"profile": "azure-conv-2023"}, "requests_per_client": 5}}
    result = Simulation(_experiment(tmp_path, workload)).run()
    assert result.summary["requests"]["completed"] == 20
    by_session = result.requests.groupby("session_id")
    for _, calls in by_session:
        calls = calls.sort_values("request_id")
        # A client's next call is released only after its previous one finished.
        assert (calls["arrival_s"].to_numpy()[1:] >= calls["finish_s"].to_numpy()[:-1]).all()


def test_calls_carry_the_workloads_output_cap(tmp_path):
    from workloads import build_workload

    workload = {"closed_loop": {"clients": 2, "lengths": {"profile": "azure-conv-2023"}, "requests_per_client": 3},
                "max_output_tokens": 300}
    experiment = _experiment(tmp_path, workload)
    sessions = list(build_workload(experiment.config.workload, np.random.default_rng(0), tmp_path,
                                   max_context_tokens=experiment.model.max_context_tokens))
    assert {session.max_output_tokens for session in sessions} == {300}
    simulation, seen = Simulation(experiment), []

    class NotingRouter:
        """The experiment's router, noting each request it routes."""

        def __init__(self, router):
            self.router = router

        def __getattr__(self, name):
            return getattr(self.router, name)

        def route(self, request, offered, now_s):
            seen.append((request.max_output_tokens, request.output_tokens))
            return self.router.route(request, offered, now_s)

    simulation.cluster.router = NotingRouter(simulation.cluster.router)
    result = simulation.run()
    assert result.summary["requests"]["completed"] == 6
    assert len(seen) == 6 and all(cap == 300 >= output for cap, output in seen)


@pytest.mark.skipif(not (SHARED / "mooncake").exists(), reason="needs ../shared/data")
def test_mooncake_replay_hits_the_implied_shared_prefix(tmp_path):
    from workloads import build_workload
    from workloads.prefix import implied_shared_prefix_tokens

    workload = {"trace": {"path": str(SHARED / "mooncake" / "conversation_trace.jsonl"), "format": "mooncake",
                          "transforms": {"first_n": 150}}}
    experiment = _experiment(tmp_path, workload)
    specs = list(build_workload(experiment.config.workload, np.random.default_rng(0), tmp_path,
                                max_context_tokens=experiment.model.max_context_tokens))
    # One at a time, with a KV cache large enough to keep every block: the engine must then
    # hit exactly what a perfect prefix cache implies.
    spaced = [replace(spec, arrival_s=1000.0 * index) for index, spec in enumerate(specs)]
    big = _experiment(tmp_path, workload, instances=[{"count": 1, "gpu": "h100-sxm", "tp": 8}])
    result = _run_specs(big, spaced)
    assert result.summary["requests"]["completed"] == len(specs)
    assert result.requests["prefix_hit_tokens"].sum() == implied_shared_prefix_tokens(spaced, 16) > 0
