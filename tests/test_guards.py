"""Engine guards: impossible requests are rejected with a reason, livelocks and broken state stop the run.

- A request no instance can ever hold (KV, context, or a prompt over the step
  budget without chunked prefill) is rejected with a reason, never left to spin.
- A request that cannot be admitted even on an idle instance is rejected by the
  stall resolver instead of livelocking.
- A batch policy that schedules nothing while requests run, or thrashes without
  ever producing a token, stops the run with a ``SimulationError`` naming the
  instance and the request (the watchdog: ``sim.watchdog_steps``).
- The invariant checker (``sim.check_invariants``) is on in every test
  simulation (see ``conftest._invariant_checks``) and catches broken accounting.

The test policies below are registered under ``guards-*`` names; they exist
only while the tests run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import build_experiment, commit_hooks, fixed, memory_utilization, trace_workload
from simulator.errors import SimulationError
from simulator.policy_api import ADMISSION_POLICIES, BATCH_POLICIES, Policy, RequestStatus, StepLimits
from simulator.runner import Simulation, run_experiment


# ------------------------------------------------------------------ test policies
@BATCH_POLICIES.register("guards-one-step")
class OneStepThenNothing(Policy):
    """Admits waiting requests in its first step, then never schedules anything again (a policy bug)."""

    _steps: int = 0

    def bind_admission(self, admission) -> None:
        pass

    def step_limits(self) -> StepLimits:
        return StepLimits(8192, 64)

    def schedule(self, state, builder, now_s: float) -> None:
        self._steps += 1
        if self._steps == 1:
            for request in list(state.waiting):
                builder.add(request, min(builder.pending_tokens(request), 4))


@BATCH_POLICIES.register("guards-thrash")
class Thrash(Policy):
    """Every step preempts what runs and restarts the head with an 8-token chunk: a livelock."""

    chunk: int = 8

    def bind_admission(self, admission) -> None:
        pass

    def step_limits(self) -> StepLimits:
        return StepLimits(8192, 64)

    def schedule(self, state, builder, now_s: float) -> None:
        for request in list(state.running):
            if request.status is RequestStatus.RUNNING:
                builder.preempt(request)
        if state.waiting:
            head = state.waiting[0]
            builder.add(head, min(self.chunk, builder.pending_tokens(head)))


@ADMISSION_POLICIES.register("guards-never")
class NeverAdmit(Policy):
    """Refuses every admission."""

    def admit(self, request, state, builder) -> bool:
        return False

    def on_finish(self, request, now_s: float) -> None:
        pass


def _trace(tmp_path: Path, rows: list[tuple[float, int, int]]) -> dict:
    return trace_workload(tmp_path, rows)


def _counts_add_up(summary: dict) -> None:
    req = summary["requests"]
    assert req["completed"] + req["rejected"] + req["unfinished"] == req["arrived"]


# ------------------------------------------------------------------ rejections
def test_a_request_too_large_for_every_instance_is_rejected_with_a_reason(tmp_path: Path) -> None:
    memory = memory_utilization("llama-3.1-8b", "h100-sxm", blocks=64)  # 1,024 tokens of KV
    workload = _trace(tmp_path, [(0.0, 100, 10), (0.1, 3000, 10), (0.2, 100, 10)])
    experiment = build_experiment(tmp_path, workload=workload,
                                  cluster={"gpu_memory_utilization": memory,
                                           "instances": [{"count": 2, "gpu": "h100-sxm"}]})
    result = run_experiment(experiment)
    rows = result.requests.set_index("request_id")
    big = rows.iloc[1]
    assert big["status"] == "rejected"
    assert "KV blocks" in big["reject_reason"] and "largest instance holds" in big["reject_reason"]
    assert big["generated_tokens"] == 0
    assert (rows.drop(index=rows.index[1])["status"] == "finished").all()
    _counts_add_up(result.summary)
    assert result.summary["requests"]["rejected"] == 1


def test_a_request_longer_than_the_context_is_rejected_with_a_reason(tmp_path: Path) -> None:
    workload = {**_trace(tmp_path, [(0.0, 100, 10), (0.1, 100, 10)]), "max_output_tokens": 200_000}
    experiment = build_experiment(tmp_path, workload=workload)
    # The workload clips every request to the context, so feed one that is not clipped straight in.
    from simulator.engine.request import RequestSpec

    simulation = Simulation(experiment)
    request = simulation.cluster.submit_spec(RequestSpec(0.0, 100_000, 10, max_output_tokens=100_000))
    assert request.status is RequestStatus.REJECTED
    assert "exceed the model's context" in request.reject_reason


def test_a_prompt_over_the_step_budget_without_chunking_is_rejected(tmp_path: Path) -> None:
    workload = _trace(tmp_path, [(0.0, 100, 5), (0.1, 5000, 5), (0.2, 100, 5)])
    experiment = build_experiment(tmp_path, workload=workload,
                                  batching={"name": "vllm", "max_batched_tokens": 2048, "chunked_prefill": False})
    result = run_experiment(experiment)
    statuses = result.requests.sort_values("request_id")["status"].tolist()
    assert statuses == ["finished", "rejected", "finished"]
    reason = result.requests.sort_values("request_id")["reject_reason"].iloc[1]
    assert "exceed max_batched_tokens 2048 without chunked prefill" in reason
    _counts_add_up(result.summary)


def test_the_same_prompt_with_chunked_prefill_completes(tmp_path: Path) -> None:
    workload = _trace(tmp_path, [(0.0, 5000, 5)])
    experiment = build_experiment(tmp_path, workload=workload,
                                  batching={"name": "vllm", "max_batched_tokens": 2048, "chunked_prefill": True})
    assert run_experiment(experiment).summary["requests"]["completed"] == 1


def test_a_request_no_idle_instance_admits_is_rejected_instead_of_livelocking(tmp_path: Path) -> None:
    workload = _trace(tmp_path, [(0.0, 100, 5), (0.5, 200, 5)])
    experiment = build_experiment(tmp_path, workload=workload, admission={"name": "guards-never"},
                                  sim={"watchdog_steps": 50})
    result = run_experiment(experiment)
    rows = result.requests
    assert (rows["status"] == "rejected").all()
    assert rows["reject_reason"].str.contains("cannot be admitted on idle instance 0").all()
    _counts_add_up(result.summary)


# ------------------------------------------------------------------ watchdog and stalls
def test_a_policy_that_schedules_nothing_while_requests_run_stops_the_run(tmp_path: Path) -> None:
    workload = _trace(tmp_path, [(0.0, 100, 5), (0.0, 100, 5)])
    experiment = build_experiment(tmp_path, workload=workload, batching={"name": "guards-one-step"})
    with pytest.raises(SimulationError) as info:
        run_experiment(experiment)
    message = str(info.value)
    assert "instance 0" in message and "request 0" in message and "OneStepThenNothing" in message
    assert "\n" not in message


@pytest.mark.parametrize("fast_forward", [True, False])
def test_the_watchdog_stops_a_thrashing_policy_naming_instance_and_request(tmp_path: Path,
                                                                           fast_forward: bool) -> None:
    workload = _trace(tmp_path, [(0.0, 500, 5)])
    experiment = build_experiment(tmp_path, workload=workload, batching={"name": "guards-thrash"},
                                  sim={"watchdog_steps": 40, "fast_forward": fast_forward})
    with pytest.raises(SimulationError) as info:
        run_experiment(experiment)
    message = str(info.value)
    assert "instance 0" in message and "40 steps" in message
    assert "Request(id=0" in message and "Thrash" in message


def test_watchdog_steps_must_be_positive(tmp_path: Path) -> None:
    from simulator.errors import ConfigError

    with pytest.raises(ConfigError, match="sim.watchdog_steps"):
        build_experiment(tmp_path, sim={"watchdog_steps": 0})


def test_a_livelock_through_the_cli_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    from conftest import experiment_dict, write_experiment
    from simulator.cli import main

    data = experiment_dict(workload=_trace(tmp_path, [(0.0, 500, 5)]), batching={"name": "guards-thrash"},
                           sim={"watchdog_steps": 20})
    path = write_experiment(tmp_path, data)
    code = main(["run", str(path), "-o", str(tmp_path / "out"), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "instance 0" in err and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ invariant checker
def test_every_test_simulation_checks_invariants(tmp_path: Path) -> None:
    simulation = Simulation(build_experiment(tmp_path, instances=[{"count": 3, "gpu": "h100-sxm"}]))
    assert simulation.experiment.config.sim.check_invariants is False  # the file does not ask for it...
    assert all(i.setup.check_invariants for i in simulation.cluster.instances)  # ...the test suite does


def test_the_invariant_checker_catches_broken_accounting(tmp_path: Path) -> None:
    experiment = build_experiment(tmp_path, num_requests=10, prompt=fixed(200), output=fixed(20))
    broken = []

    def corrupt(instance, record) -> None:
        if not broken:
            broken.append(instance.id)
            instance.queues.pending_tokens += 7  # a counter drifts

    with commit_hooks(after=corrupt), pytest.raises(SimulationError) as info:
        run_experiment(experiment)
    assert "instance 0" in str(info.value) and "invariant violated" in str(info.value)
    assert "pending token count" in str(info.value)


def test_time_going_backwards_is_caught(tmp_path: Path) -> None:
    experiment = build_experiment(tmp_path, num_requests=10, prompt=fixed(200), output=fixed(20))
    simulation = Simulation(experiment)
    instance = simulation.cluster.instances[0]
    instance.check_invariants(5.0)
    with pytest.raises(SimulationError, match="time went backwards"):
        instance.check_invariants(4.0)


def test_an_error_in_the_step_that_ends_the_run_is_not_lost(tmp_path: Path) -> None:
    """The last request's completion ends the run in the same instant; an error raised after it
    in that commit (an invariant check, say) must still reach the caller."""
    # All arrive at once, so the instance is first out of work when the last request ends.
    experiment = build_experiment(tmp_path, workload=trace_workload(tmp_path, [(0.0, 50, 5 + k) for k in range(4)]))

    def fail_when_done(instance, record) -> None:
        if not instance.queues.has_work():
            raise SimulationError("raised after the last completion")

    with commit_hooks(after=fail_when_done), pytest.raises(SimulationError, match="after the last completion"):
        run_experiment(experiment)
