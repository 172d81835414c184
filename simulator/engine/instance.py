"""One model instance (a replica on ``tp x pp`` GPUs) and its engine loop.

The loop is: plan a step (the batch policy fills a ``StepBuilder``), time it
(the cost model), wait that long in SimPy, then commit it (advance counters,
sample tokens, free finished requests, record). Commit is shared mechanism,
so no policy re-implements it. Planning, timing and committing are separate
methods so that a fast-forward over identical decode steps can reuse them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import simpy

from simulator.engine.host import HostKVTier
from simulator.engine.kv_cache import KVCache
from simulator.engine.queues import InstanceQueues
from simulator.engine.request import Request, RequestStatus
from simulator.engine.step import StepBuilder, StepLimits, StepPlan
from simulator.errors import SimulationError
from simulator.metrics.histogram import LogHistogram
from simulator.metrics.run_stats import InstanceStats
from simulator.perf.cost_model import CostModel
from simulator.perf.power import PowerModel


@dataclass(frozen=True, slots=True)
class InstanceSetup:
    """Static facts about an instance, fixed when the cluster is built."""

    instance_id: int
    gpu_name: str
    tp: int
    pp: int
    limits: StepLimits
    kv_bytes_per_token: float
    tag: str = "mixed"


class Instance:
    """A replica: queues, KV cache, host tier and the SimPy process that steps it.

    Args:
        env: the SimPy environment.
        setup: static facts (id, GPU, parallelism, step limits).
        kv: its KV cache; host: its host DRAM tier (None: preempt by recompute only).
        cost_model, power: step timing and energy.
        batch_policy: fills each step (already bound to its admission policy).
        stats: totals to accumulate; gap_histogram: shared inter-token gap histogram.
        on_done: called with a request when it finishes or is rejected here.
    """

    def __init__(self, env: simpy.Environment, setup: InstanceSetup, kv: KVCache,
                 host: HostKVTier | None, cost_model: CostModel, power: PowerModel,
                 batch_policy, stats: InstanceStats, gap_histogram: LogHistogram,
                 on_done: Callable[[Request], None]) -> None:
        self.env, self.setup, self.kv, self.host = env, setup, kv, host
        self.cost_model, self.power, self.batch_policy = cost_model, power, batch_policy
        self.stats, self.gap_histogram, self.on_done = stats, gap_histogram, on_done
        self.queues = InstanceQueues()
        self.id = setup.instance_id
        self.gpu_name, self.tp, self.block_size = setup.gpu_name, setup.tp, kv.block_size
        self._wake = env.event()
        self._kv_accounted_s = 0.0
        self.process = env.process(self._run())

    # ------------------------------------------------------- InstanceView API
    @property
    def num_running(self) -> int:
        return len(self.queues.running)

    @property
    def num_waiting(self) -> int:
        return len(self.queues.waiting)

    @property
    def num_requests(self) -> int:
        return self.queues.num_requests

    @property
    def pending_tokens(self) -> int:
        return self.queues.pending_tokens

    @property
    def kv_total_blocks(self) -> int:
        return self.kv.total_blocks

    @property
    def kv_free_blocks(self) -> int:
        return self.kv.free_blocks

    @property
    def kv_used_blocks(self) -> int:
        return self.kv.used_blocks

    # ------------------------------------------------------ SchedulerView API
    @property
    def waiting(self):
        return self.queues.waiting

    @property
    def running(self):
        return self.queues.running

    @property
    def swapped(self):
        return self.queues.swapped

    # ---------------------------------------------------------------- inputs
    def enqueue(self, request: Request) -> None:
        """Accept a routed request; wakes the engine loop if it was idle."""
        request.instance_id = self.id
        self.queues.enqueue(request)
        if not self._wake.triggered:
            self._wake.succeed()

    # ------------------------------------------------------------ engine loop
    def _run(self):
        while True:
            if not self.queues.has_work():
                self._wake = self.env.event()
                yield self._wake
                continue
            plan = self.plan_step()
            if plan.is_empty:
                if not plan.rejected:
                    self._resolve_stall()
                continue
            start = self.env.now
            duration = self.step_duration_s(plan)
            yield self.env.timeout(duration)
            self.commit(plan, start, self.env.now)

    def plan_step(self) -> StepPlan:
        builder = StepBuilder(self.kv, self.queues, self.host, self.setup.limits,
                              self.setup.kv_bytes_per_token)
        self.batch_policy.schedule(self, builder, self.env.now)
        plan = builder.build()
        for request in plan.rejected:
            self.on_done(request)
        return plan

    def step_duration_s(self, plan: StepPlan) -> float:
        swap_s = self.host.transfer_time_s(plan.swap_bytes) if self.host is not None else 0.0
        return float(self.cost_model.step_time_s(plan.shape)) + swap_s

    def commit(self, plan: StepPlan, start: float, end: float) -> None:
        """Apply a finished step: counters, tokens, finished requests, statistics."""
        self._account_kv(start)
        finished = []
        for request, tokens in plan.entries:
            self._advance(request, tokens, start, end, finished)
        self.queues.remove_finished()
        for request in finished:
            self.kv.free(request)
            self.on_done(request)
        self._account_step(plan, start, end)
        hook = getattr(self.batch_policy, "on_step_end", None)
        if hook is not None:
            hook(plan, finished, end)

    def _advance(self, request: Request, tokens: int, start: float, end: float,
                 finished: list[Request]) -> None:
        if request.first_scheduled_s is None:
            request.first_scheduled_s = start
        request.computed_tokens += tokens
        self.queues.pending_tokens -= tokens
        if request.computed_tokens < request.known_tokens:
            self.kv.publish(request)
            return
        request.generated_tokens += 1
        if request.first_token_s is None:
            request.first_token_s = end
            self.kv.publish(request)
        else:
            gap = end - request.last_token_s
            self.gap_histogram.add(gap)
            if gap > request.max_token_gap_s:
                request.max_token_gap_s = gap
        request.last_token_s = end
        if request.generated_tokens >= request.output_tokens:
            request.status = RequestStatus.FINISHED
            request.finish_s = end
            finished.append(request)
        else:
            self.queues.pending_tokens += 1

    def _account_step(self, plan: StepPlan, start: float, end: float) -> None:
        stats = self.stats
        duration = end - start
        flops, hbm_bytes = self.cost_model.work(plan.shape)
        stats.steps += 1
        stats.busy_s += duration
        stats.flops += flops
        stats.hbm_bytes += hbm_bytes
        stats.energy_j += self.power.busy_energy_j(duration, flops, hbm_bytes)

    def _account_kv(self, now: float) -> None:
        """Integrate KV usage over time; called before every change of usage that matters."""
        fraction = self.kv.used_blocks / self.kv.total_blocks
        self.stats.kv_usage_integral += fraction * (now - self._kv_accounted_s)
        self._kv_accounted_s = now
        if fraction > self.stats.kv_peak_fraction:
            self.stats.kv_peak_fraction = fraction

    def finalize(self, now: float) -> None:
        """Close the KV integral and charge idle energy at the end of the run."""
        self._account_kv(now)
        self.stats.energy_j += self.power.idle_energy_j(now - self.stats.busy_s)

    # ---------------------------------------------------------------- stalls
    def _resolve_stall(self) -> None:
        """The policy scheduled nothing although work is queued: make progress or fail loudly.

        With nothing running, nothing will free memory, so the head of the
        queue can never be admitted as things stand: it is rejected with the
        reason. With requests running, an empty step is a policy bug.
        """
        if self.queues.running:
            raise SimulationError(
                f"instance {self.id}: batch policy {type(self.batch_policy).__name__} scheduled "
                f"nothing while {len(self.queues.running)} requests are running "
                f"(first: request {self.queues.running[0].id})")
        if self.queues.swapped:
            raise SimulationError(
                f"instance {self.id}: swapped request {self.queues.swapped[0].id} cannot be swapped "
                "back in on an idle instance")
        request = self.queues.waiting[0]
        need = self.kv.blocks_for_tokens(request.known_tokens)
        request.reject_reason = (
            f"cannot be admitted on idle instance {self.id}: needs {need} KV blocks for "
            f"{request.known_tokens} tokens, {self.kv.free_blocks} free of {self.kv.total_blocks} "
            f"(watermark {self.kv.watermark_blocks}), step budget {self.setup.limits.max_batched_tokens} tokens")
        self.queues.drop_waiting(request)
        request.status = RequestStatus.REJECTED
        self.on_done(request)
