"""Live migration (simulator.engine.migration): downtime, aborts, block accounting, unchanged tokens.

Two A10 instances serving Llama-2-7B (1 GPU each, 2 GB/s per instance port);
a test process migrates a request at a chosen moment and the run goes on.
After every scenario both instances' KV accounting must be exact: nothing
reserved or held by a request that is not there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import build_experiment, trace_workload
from simulator.engine import migration
from simulator.engine.request import RequestStatus
from simulator.runner import Simulation


def two_a10s(directory: Path, rows: list[tuple[float, int, int]], *, fast_forward: bool = True,
             utilization: float = 0.9, **extra: Any):
    return build_experiment(
        directory, model="llama-2-7b",
        cluster={"node": "alibaba-gn7i-a10", "instances": [{"count": 2, "gpu": "a10", "tp": 1}],
                 "gpu_memory_utilization": utilization},
        workload=trace_workload(directory, rows), router={"name": "round_robin"},
        batching={"name": "vllm", "max_num_seqs": 64, "max_batched_tokens": 4096},
        sim={"fast_forward": fast_forward, "sample_interval_s": None}, **extra)


def migrate_at(simulation: Simulation, at_s: float, request_id: int, destination: int, records: list,
               before: Callable[[Simulation], None] | None = None, **settings: Any) -> None:
    """A process that migrates ``request_id`` at ``at_s`` and appends its record (or 'gone')."""
    env, actions = simulation.env, simulation.actions

    def mover():
        yield env.timeout(at_s)
        request = simulation.cluster.active.get(request_id)
        if request is None or request.status is not RequestStatus.RUNNING:
            records.append("gone")
            return
        if before is not None:
            before(simulation)
        records.append((yield actions.migrate(request, destination, **settings)))

    env.process(mover())


def assert_clean(simulation: Simulation) -> None:
    """Both instances' block accounting is exact and nothing is held at the end."""
    for instance in simulation.cluster.instances:
        instance.kv.check()
        assert instance.kv.used_blocks == 0 and not instance.kv.holdings, f"instance {instance.id} leaks blocks"
        assert instance.queues.pending_tokens == 0 and not instance.queues.has_work()


def _downtime(tmp_path: Path, prompt: int, pre_copy: bool) -> float:
    folder = tmp_path / f"{prompt}-{pre_copy}"
    folder.mkdir()
    simulation = Simulation(two_a10s(folder, [(0.0, prompt, 200)]))
    records: list = []
    migrate_at(simulation, 2.0, 0, 1, records, pre_copy=pre_copy)
    simulation.run()
    (record,) = records
    assert record.completed, record.outcome
    assert (record.stages >= 2) == pre_copy
    assert_clean(simulation)
    return record.downtime_s


def test_live_downtime_stays_flat_while_stop_and_copy_grows_linearly(tmp_path: Path) -> None:
    prompts = [500, 1000, 2000, 3000]
    live = [_downtime(tmp_path, p, True) for p in prompts]
    stop = [_downtime(tmp_path, p, False) for p in prompts]
    # Stop-and-copy moves the whole cache while stopped: time proportional to the tokens.
    per_token = [(b - a) / (q - p) for a, b, p, q in zip(stop, stop[1:], prompts, prompts[1:])]
    assert min(per_token) > 0 and max(per_token) / min(per_token) < 1.3
    assert stop[-1] > 5 * stop[0] / 2
    # Live migration stops the request only for the last block or two (16 tokens of Llama-2-7B:
    # 8 MiB, 4.2 ms at 2 GB/s), whatever the sequence length.
    block_s = 16 * 524288 / 2e9
    assert max(live) <= 2 * block_s + 1e-3
    assert max(live) < stop[0] / 4
    assert live[-1] < stop[-1] / 20


def test_generated_tokens_are_the_same_with_and_without_migration(tmp_path: Path) -> None:
    rows = [(0.0, 800, 300), (0.1, 300, 250), (0.2, 1200, 120), (0.3, 100, 400)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    alone = Simulation(two_a10s(tmp_path / "a", rows)).run()
    simulation = Simulation(two_a10s(tmp_path / "b", rows))
    records: list = []
    migrate_at(simulation, 1.5, 0, 1, records)
    migrate_at(simulation, 2.5, 3, 0, records)
    moved = simulation.run()
    assert [r.outcome for r in records] == [migration.COMPLETED, migration.COMPLETED]
    assert moved.summary["events"]["migrations"] == 2
    assert list(moved.requests["generated_tokens"]) == list(alone.requests["generated_tokens"])
    assert (moved.requests["generated_tokens"] == moved.requests["output_tokens"]).all()
    assert list(moved.requests["instance_id"])[0] == 1 and list(moved.requests["instance_id"])[3] == 0
    assert (moved.requests["status"] == "finished").all()
    assert_clean(simulation)


@pytest.mark.parametrize("fast_forward", [True, False], ids=["fast-forward", "stepped"])
def test_migration_gives_the_same_results_with_and_without_fast_forward(tmp_path: Path, fast_forward: bool) -> None:
    rows = [(0.0, 800, 300), (0.1, 300, 250), (0.2, 1200, 120), (0.3, 100, 400)]
    results = []
    for fast in (True, False):
        folder = tmp_path / str(fast)
        folder.mkdir()
        simulation = Simulation(two_a10s(folder, rows, fast_forward=fast))
        records: list = []
        migrate_at(simulation, 1.5, 0, 1, records)
        results.append((simulation.run().requests, records[0]))
    (a, ra), (b, rb) = results
    assert ra.outcome == rb.outcome == migration.COMPLETED and ra.stages == rb.stages
    assert ra.downtime_s == pytest.approx(rb.downtime_s, rel=1e-9)
    for column in ("finish_s", "first_token_s", "last_token_s", "generated_tokens", "instance_id"):
        assert list(a[column]) == pytest.approx(list(b[column]), rel=1e-9)


# ------------------------------------------------------------------ aborts
def test_destination_out_of_memory_aborts_and_frees_the_reservation(tmp_path: Path) -> None:
    # 543 blocks per instance; instance 1 holds two 3500-token requests (~440 blocks), so the
    # 2000-token request of instance 0 (126 blocks) cannot be pre-allocated there.
    rows = [(0.0, 2000, 300), (0.0, 3500, 400), (0.01, 100, 5), (0.01, 3500, 400)]
    simulation = Simulation(two_a10s(tmp_path, rows, utilization=0.7))
    records: list = []
    migrate_at(simulation, 1.0, 0, 1, records)
    result = simulation.run()
    (record,) = records
    assert record.outcome == migration.ABORT_OUT_OF_MEMORY and record.stages == 0
    assert list(result.requests["instance_id"]) == [0, 1, 0, 1]
    assert (result.requests["status"] == "finished").all()
    assert_clean(simulation)


def test_a_request_that_finishes_during_pre_copy_aborts(tmp_path: Path) -> None:
    # First token at 0.56 s, last at 1.30 s; the first stage (3000 tokens, ~0.8 s) ends after it.
    # A later request keeps the run going until the stage ends.
    rows = [(0.0, 3000, 20), (3.0, 100, 10)]
    simulation = Simulation(two_a10s(tmp_path, rows))
    records: list = []
    migrate_at(simulation, 0.7, 0, 1, records)
    result = simulation.run()
    (record,) = records
    assert record.outcome == migration.ABORT_FINISHED and record.stages == 1
    assert result.requests.iloc[0]["instance_id"] == 0 and result.requests.iloc[0]["status"] == "finished"
    assert_clean(simulation)


def test_a_request_preempted_during_pre_copy_aborts(tmp_path: Path) -> None:
    # Three 2500 + 1500-token requests outgrow instance 0's 543 blocks; vLLM preempts the latest
    # admitted (request 4) at about 19.4 s, while its first stage (~0.76 s from 19.0 s) is copying.
    rows = [(0.0, 2500, 1500), (0.0, 10, 5), (0.01, 2500, 1500), (0.01, 10, 5), (0.02, 2500, 1500)]
    simulation = Simulation(two_a10s(tmp_path, rows, utilization=0.7))
    records: list = []
    migrate_at(simulation, 19.0, 4, 1, records)
    result = simulation.run()
    (record,) = records
    assert record.outcome == migration.ABORT_PREEMPTED, record
    assert result.requests.iloc[4]["num_preemptions"] >= 1 and result.requests.iloc[4]["instance_id"] == 0
    assert (result.requests["status"] == "finished").all()
    assert_clean(simulation)


def test_too_many_stages_aborts(tmp_path: Path) -> None:
    # The first stage (3000 tokens, ~0.8 s) spans ~20 decode steps, so more blocks are always new.
    simulation = Simulation(two_a10s(tmp_path, [(0.0, 3000, 400)]))
    records: list = []
    migrate_at(simulation, 1.0, 0, 1, records, max_stages=1, final_stage_blocks=0)
    result = simulation.run()
    (record,) = records
    assert record.outcome == migration.ABORT_TOO_MANY_STAGES and record.stages == 1
    assert result.requests.iloc[0]["instance_id"] == 0 and result.requests.iloc[0]["status"] == "finished"
    assert_clean(simulation)


def test_a_destination_drained_meanwhile_aborts(tmp_path: Path) -> None:
    simulation = Simulation(two_a10s(tmp_path, [(0.0, 3000, 300)]))
    records: list = []
    drained: list = []

    def drain_soon(sim: Simulation) -> None:
        def later():
            yield sim.env.timeout(0.1)  # during the first stage (3000 tokens take ~0.8 s)
            drained.append((yield sim.actions.drain_instance(1)))
        sim.env.process(later())

    migrate_at(simulation, 1.0, 0, 1, records, before=drain_soon)
    result = simulation.run()
    (record,) = records
    assert record.outcome == migration.ABORT_DESTINATION_REMOVED
    assert drained == [1] and simulation.actions.instance_state(1) == "inactive"
    assert result.requests.iloc[0]["instance_id"] == 0 and result.requests.iloc[0]["status"] == "finished"
    assert_clean(simulation)


def test_a_destination_drained_during_the_final_copy_sends_the_request_back(tmp_path: Path) -> None:
    # Stop-and-copy: the request has left the source when the destination goes away; it resumes there.
    rows = [(0.0, 3000, 300)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    alone = Simulation(two_a10s(tmp_path / "a", rows)).run()
    simulation = Simulation(two_a10s(tmp_path / "b", rows))
    records: list = []

    def drain_soon(sim: Simulation) -> None:
        def later():
            yield sim.env.timeout(0.3)
            yield sim.actions.drain_instance(1)
        sim.env.process(later())

    migrate_at(simulation, 1.0, 0, 1, records, before=drain_soon, pre_copy=False)
    result = simulation.run()
    (record,) = records
    assert record.outcome == migration.ABORT_DESTINATION_REMOVED and record.stages == 1
    row = result.requests.iloc[0]
    assert row["instance_id"] == 0 and row["generated_tokens"] == 300
    # It stood still while its cache was being copied, so it finishes later than unmoved.
    assert row["finish_s"] > alone.requests.iloc[0]["finish_s"] + 0.5
    assert_clean(simulation)


def test_a_partly_filled_block_is_copied_again_by_the_next_stage(tmp_path: Path) -> None:
    # 500 prompt tokens leave the last 16-token block partly filled; it goes on filling while
    # the request decodes during pre-copy, so each later stage sends it again. Every block the
    # request arrives with is sent at least once, and at most one block a stage twice.
    simulation = Simulation(two_a10s(tmp_path, [(0.0, 500, 200)]))
    env, found = simulation.env, []

    def mover():
        yield env.timeout(2.0)
        request = simulation.cluster.active[0]
        record = yield simulation.actions.migrate(request, 1)
        found.append((record, request.computed_tokens))  # adopted just now: nothing computed since

    env.process(mover())
    simulation.run()
    ((record, moved_tokens),) = found
    assert record.completed and record.stages >= 2, record
    final_blocks = -(-moved_tokens // simulation.cluster.instances[1].kv.block_size)
    assert final_blocks < record.blocks_copied <= final_blocks + record.stages - 1
    assert_clean(simulation)
