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

# The instance's departures, guards and run driver keep a typed link back to it (their .pxd files):
# compiled, importing one of their modules first imports this one before that module's body has
# run. Their names are therefore read from the modules when used, not bound at import.
from simulator.engine import departures as _departures
from simulator.engine import guards as _guards
from simulator.engine import run_driver as _run_driver
from simulator.engine.host import HostKVTier
from simulator.engine.kv_cache import KVCache
from simulator.engine.queues import InstanceQueues
from simulator.engine.request import FINISHED, Request
from simulator.engine.step import StepBuilder, StepLimits, StepPlan
from simulator.engine.usage import InstanceUsage
from simulator.metrics.gap_buffer import GapBuffer
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
    fast_forward: bool = True
    check_invariants: bool = False
    watchdog_steps: int = 100_000


class Instance:
    """A replica: queues, KV cache, host tier and the SimPy process that steps it.

    Args:
        env: the SimPy environment.
        setup: static facts (id, GPU, parallelism, step limits).
        kv: its KV cache; host: its host DRAM tier (None: preempt by recompute only).
        cost_model, power: step timing and energy.
        batch_policy: fills each step (already bound to its admission policy).
        stats: totals to accumulate; gap_histogram: buffer of the shared inter-token gap histogram.
        on_done: called with a request when it finishes or is rejected here.
    """

    def __init__(self, env: simpy.Environment, setup: InstanceSetup, kv: KVCache,
                 host: HostKVTier | None, cost_model: CostModel, power: PowerModel,
                 batch_policy, stats: InstanceStats, gap_histogram: GapBuffer,
                 on_done: Callable[[Request], None]) -> None:
        self.env, self.setup, self.kv, self.host = env, setup, kv, host
        self.cost_model, self.power, self.batch_policy = cost_model, power, batch_policy
        self.stats, self.gap_histogram, self.on_done = stats, gap_histogram, on_done
        self.queues = InstanceQueues()
        self.id = setup.instance_id
        self.gpu_name, self.tp, self.block_size = setup.gpu_name, setup.tp, kv.block_size
        self.tag = setup.tag
        self._wake = env.event()
        self.usage = InstanceUsage(stats, power, kv)  # busy time, work, energy, KV occupancy
        self._step_in_flight: tuple[StepPlan, float, float] | None = None  # (plan, start, duration)
        self._step_work: tuple[object, tuple] = (None, (0.0, 0.0))  # (shape, its FLOPs and bytes)
        self.guards = _guards.Guards(self)
        self.departures = _departures.Departures(self)
        self.on_first_token: Callable[[Request], None] | None = None
        self.committing_step_s = (0.0, 0.0)
        # Workflow KV retention (simulator.engine.retention); None: plain prefix caching.
        self.kv_hooks = None
        self._kv_actions: list[Callable[[], None]] = []
        self.runs = _run_driver.RunDriver(self, setup.fast_forward)  # fast-forward: decode runs in place of steps
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
        return self.kv.total_blocks - self.kv_used_blocks

    @property
    def kv_used_blocks(self) -> int:
        return self.kv.used_blocks + self.runs.implied_blocks()

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

    @property
    def now_s(self) -> float:
        return self.env.now

    def cached_prefix_tokens(self, request: Request) -> int:
        """Tokens of a waiting request that its prefix-cache hit would skip if admitted now."""
        return self.kv.prefix_hit_blocks(request) * self.kv.block_size if request.computed_tokens == 0 else 0

    def blocks_to_admit(self, request: Request, tokens: int) -> int:
        """Free blocks a waiting request needs to start with ``tokens`` tokens (watermark included)."""
        hit = self.kv.prefix_hit_blocks(request) if request.computed_tokens == 0 else 0
        return self.kv.extra_blocks_needed(request, hit * self.kv.block_size + tokens, hit) + self.kv.watermark_blocks

    # ---------------------------------------------------------------- inputs
    def enqueue(self, request: Request) -> None:
        """Accept a routed request; wakes the engine loop if it was idle."""
        request.instance_id = self.id
        self.queues.enqueue(request)
        self.wake()

    def wake(self) -> None:
        """Work arrived: start the idle engine loop, or end a fast-forward run early."""
        if not self._wake.triggered:
            self._wake.succeed()
        self.interrupt_run()

    def depart(self, request: Request) -> simpy.Event:
        """Let ``request`` leave alive at the next step boundary, keeping its KV here (see departures)."""
        return self.departures.request(request)

    def adopt(self, request: Request) -> None:
        """Take in a request whose KV the caller reserved here (see departures)."""
        _departures.adopt(self, request)

    def defer_kv_action(self, action: Callable[[], None]) -> None:
        """Run ``action`` (a change of KV outside any request) now if idle, else at the next step boundary.

        KV use then only changes at step boundaries, so a fast-forward run (cut
        short here) and stepping give the same results and the KV integral stays exact.
        """
        if self.queues.has_work():
            self._kv_actions.append(action)
            self.wake()  # cuts a fast-forward run short, or wakes a loop waiting out a stall
            return
        self.usage.kv_until(self.env.now)
        action()

    @property
    def has_kv_actions(self) -> bool:
        """Whether KV changes wait for the next step boundary (see ``defer_kv_action``)."""
        return bool(self._kv_actions)

    def _apply_kv_actions(self) -> None:
        self.usage.kv_until(self.env.now)
        actions, self._kv_actions = self._kv_actions, []
        for action in actions:
            action()

    def tokens_computed(self, request: Request) -> int:
        """Tokens of ``request`` whose KV exists here now; exact inside a fast-forward run."""
        return self.runs.tokens_computed(request)

    def interrupt_run(self) -> None:
        """End a fast-forward run after its step in flight (an arrival or a cluster action)."""
        self.runs.cut_short()

    # ------------------------------------------------------------ engine loop
    def _run(self):
        while True:
            if self.runs.held is not None and (self.departures.pending or self._kv_actions):
                self.runs.release_held()  # moving requests or KV reads the batch's counters
            self.departures.settle()
            if self._kv_actions:
                self._apply_kv_actions()
            if not self.queues.has_work():
                self._wake = self.env.event()
                yield self._wake
                continue
            self.usage.kv_until(self.env.now)
            run = self.runs.unplanned()
            if run is not None:
                yield from self.runs.execute(run)
                continue
            plan = self.plan_step()
            if plan.is_empty:
                if not plan.rejected and not self._resolve_stall():
                    # Memory held by a request moving in or out frees itself; its move wakes us.
                    self._wake = self.env.event()
                    yield self._wake
                continue
            start = self.env.now
            run = self.runs.planned(plan, start)
            if run is not None:
                yield from self.runs.execute(run)
                continue
            duration = self.step_duration_s(plan)
            # Asked now, while the cost model still holds this shape's work: instances of a group share
            # one cost model, and another instance's step may be timed before this one commits.
            self._step_work = (plan.shape, self.cost_model.work(plan.shape))
            self._step_in_flight = (plan, start, duration)
            yield self.env.timeout(duration)
            self._step_in_flight = None
            self.commit(plan, start, self.env.now)
            self.guards.watch(plan)

    def plan_step(self) -> StepPlan:
        if self.kv_hooks is not None:
            self.kv_hooks.before_plan(self)  # may release retained KV that the step needs
        held = self.runs.held_decodes()
        builder = StepBuilder(self.kv, self.queues, self.host, self.setup.limits,
                              self.setup.kv_bytes_per_token, held)
        if held is None or not self.batch_policy.schedule_around_held(self, builder, self.env.now):
            if held is not None:
                self.runs.release_held()  # the policy needs the batch itself: bring it up to date
                builder.held = None
            self.batch_policy.schedule(self, builder, self.env.now)
        plan = builder.build()
        if plan.held and len(plan.entries) == plan.held:
            plan = self.runs.unhold(plan)  # nothing joins beside the held decodes: an ordinary decode step
        for request in plan.rejected:
            self.on_done(request)
        return plan

    def steps_committed(self, plan: StepPlan, steps: int, finished: list[Request], end: float,
                        check: bool) -> None:
        """After a decode run's steps are committed: release the finished requests, count the steps
        and tell the policy, as a single step's commit does."""
        for request in finished:
            request.status = FINISHED
        self.queues.pending_tokens -= len(finished)
        if finished:
            self.queues.remove_finished(finished)
        self._release(finished)
        self.stats.steps += steps
        self.guards.progressed()
        if check:
            self.check_invariants(end)
        hook = getattr(self.batch_policy, "on_step_end", None)
        if hook is not None:
            hook(plan, finished, end)

    def sync(self, now: float) -> None:
        """Commit the steps of a run in progress that have ended by ``now`` (end of simulation), and
        account the busy part of the step then in flight."""
        if self.runs.current is not None:
            in_flight = self.runs.sync(now)
            if in_flight is not None:
                start, duration, flops, hbm_bytes = in_flight
                self.usage.partial_step(start, now, duration, flops, hbm_bytes)
        elif self._step_in_flight is not None:
            plan, start, duration = self._step_in_flight
            self._step_in_flight = None
            if self.runs.held is not None:
                self.runs.sync_held(step_planned=plan.held > 0)
            flops, hbm_bytes = self.cost_model.work(plan.shape)
            self.usage.partial_step(start, now, duration, float(flops), float(hbm_bytes))
        if self.runs.held is not None:
            self.runs.sync_held(step_planned=False)

    def step_duration_s(self, plan: StepPlan) -> float:
        swap_s = self.host.transfer_time_s(plan.swap_bytes) if self.host is not None else 0.0
        return float(self.cost_model.step_time_s(plan.shape)) + swap_s

    def commit(self, plan: StepPlan, start: float, end: float) -> None:
        """Apply a finished step: counters, tokens, finished requests, statistics."""
        self.usage.kv_until(end)
        # The span of the step being committed, for first-token hooks (layer-wise KV hand-off).
        self.committing_step_s = (start, end)
        queues = self.queues
        # A held run's decodes lead the plan: the run driver brings those requests up to date.
        finished: list[Request] = self.runs.step_held(end) if plan.held else []
        for request in finished:
            request.status = FINISHED
        queues.pending_tokens -= len(finished)
        gaps: list[float] = []
        for request, tokens in (plan.entries[plan.held:] if plan.held else plan.entries):
            # Most entries are decodes (one token of a request past its first): _advance's
            # decode branch, inlined, as this loop runs for every request of every mixed step.
            if (tokens == 1 and request.first_token_s is not None
                    and request.computed_tokens + 1 == request.prompt_tokens + request.generated_tokens):
                request.computed_tokens += 1
                request.generated_tokens += 1
                gap = end - request.last_token_s
                gaps.append(gap)
                if gap > request.max_token_gap_s:
                    request.max_token_gap_s = gap
                request.last_token_s = end
                if request.generated_tokens >= request.output_tokens:
                    request.status = FINISHED
                    request.finish_s = end
                    finished.append(request)
                    queues.pending_tokens -= 1
            else:
                self._advance(request, tokens, start, end, finished, gaps)
        if gaps:
            self.gap_histogram.extend(gaps)
        if finished:
            queues.remove_finished(finished)
        self._release(finished)
        shape, work = self._step_work
        flops, hbm_bytes = work if shape is plan.shape else self.cost_model.work(plan.shape)
        self.usage.step(end - start, flops, hbm_bytes)
        if self.setup.check_invariants and self.runs.held is None:  # a held run's requests stand behind
            self.check_invariants(end)
        hook = getattr(self.batch_policy, "on_step_end", None)
        if hook is not None:
            hook(plan, finished, end)

    def _release(self, finished: list[Request]) -> None:
        """Free finished requests' KV (indexing their full blocks first, for later prefix hits)."""
        for request in finished:
            self.kv.publish(request)
            if self.kv_hooks is not None:
                self.kv_hooks.before_free(self, request)  # may retain the blocks for a next call
            self.kv.free(request)
            self.on_done(request)

    def _advance(self, request: Request, tokens: int, start: float, end: float,
                 finished: list[Request], gaps: list[float]) -> None:
        """Apply one entry of a committed step: tokens computed, a token sampled, a finish."""
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
            if self.on_first_token is not None and request.generated_tokens < request.output_tokens:
                self.on_first_token(request)
        else:
            gap = end - request.last_token_s
            gaps.append(gap)
            if gap > request.max_token_gap_s:
                request.max_token_gap_s = gap
        request.last_token_s = end
        if request.generated_tokens >= request.output_tokens:
            request.status = FINISHED
            request.finish_s = end
            finished.append(request)
        else:
            self.queues.pending_tokens += 1

    def finalize(self, now: float, active_s: float | None = None) -> None:
        """Close the KV integral and charge idle energy at the end of the run.

        ``active_s``: seconds the instance was provisioned (auto-scaling); idle
        energy is charged for those only (default: the whole run).
        """
        self.sync(now)
        self.runs.ledger.flush()
        self.usage.flush()
        self.usage.kv_until(now)
        self.usage.idle(now if active_s is None else active_s)

    # ------------------------------------------------------------- guards
    def check_invariants(self, now: float) -> None:
        """Raise SimulationError if KV accounting, request counters or time are inconsistent."""
        self.guards.check(now)

    def _resolve_stall(self) -> bool:
        return _guards.resolve_stall(self)

