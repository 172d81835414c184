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

import numpy as np
import simpy

from simulator.engine.departures import Departures, adopt
from simulator.engine.guards import Guards, resolve_stall
from simulator.engine.fast_forward import (DecodeRun, RunLedger, add_segment_gaps, advance, build_run, commit_run,
                                           next_segment, plan_is_decode_only, split_finishing, unplanned_run)
from simulator.engine.host import HostKVTier
from simulator.engine.kv_cache import KVCache
from simulator.engine.queues import InstanceQueues
from simulator.engine.request import Request, RequestStatus
from simulator.engine.step import StepBuilder, StepLimits, StepPlan
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
        self._kv_accounted_s = 0.0
        self._step_in_flight: tuple[StepPlan, float, float] | None = None  # (plan, start, duration)
        self._step_work: tuple[object, tuple] = (None, (0.0, 0.0))  # (shape, its FLOPs and bytes)
        self._decode_run: DecodeRun | None = None
        self._run_ledger = RunLedger(stats, power.busy_energy_j, kv.total_blocks)  # decode runs' totals
        self.guards = Guards(self)
        self.departures = Departures(self)
        self.on_first_token: Callable[[Request], None] | None = None
        self.committing_step_s = (0.0, 0.0)
        # Workflow KV retention (simulator.engine.retention); None: plain prefix caching.
        self.kv_hooks = None
        self._kv_actions: list[Callable[[], None]] = []
        self._run_ids: tuple[DecodeRun, frozenset[int]] | None = None  # members of the run, for tokens_computed
        self._interrupt = env.event()
        # Whether a decode run may continue past its requests' finishes (see _continue_run).
        self._runs_through_finishes = setup.fast_forward and getattr(batch_policy, "steady_through_finishes", False)
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
        run = self._decode_run
        if run is None:
            return self.kv.used_blocks
        # Mid-run the cache holds the first step's blocks; later steps' are implied.
        return self.kv.used_blocks + int(run.blocks_added[run.steps_started_by(self.env.now) - 1]) - run.released_blocks

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
        adopt(self, request)

    def defer_kv_action(self, action: Callable[[], None]) -> None:
        """Run ``action`` (a change of KV outside any request) now if idle, else at the next step boundary.

        KV use then only changes at step boundaries, so a fast-forward run (cut
        short here) and stepping give the same results and the KV integral stays exact.
        """
        if self.queues.has_work():
            self._kv_actions.append(action)
            self.wake()  # cuts a fast-forward run short, or wakes a loop waiting out a stall
            return
        self._account_kv(self.env.now)
        action()

    def _apply_kv_actions(self) -> None:
        self._account_kv(self.env.now)
        actions, self._kv_actions = self._kv_actions, []
        for action in actions:
            action()

    def tokens_computed(self, request: Request) -> int:
        """Tokens of ``request`` whose KV exists here now; exact inside a fast-forward run."""
        run = self._decode_run
        if run is None or request.instance_id != self.id or request.status is not RequestStatus.RUNNING:
            return request.computed_tokens
        if self._run_ids is None or self._run_ids[0] is not run:
            self._run_ids = (run, frozenset(r.id for r in run.requests))
        if request.id not in self._run_ids[1]:
            return request.computed_tokens  # adopted during the run: it joins at the next plan
        return request.computed_tokens + run.offset + run.steps_ended_by(self.env.now)

    def interrupt_run(self) -> None:
        """End a fast-forward run after its step in flight (an arrival or a cluster action)."""
        if self._decode_run is not None and not self._interrupt.triggered:
            self._interrupt.succeed()

    # ------------------------------------------------------------ engine loop
    def _run(self):
        while True:
            self.departures.settle()
            if self._kv_actions:
                self._apply_kv_actions()
            if not self.queues.has_work():
                self._wake = self.env.event()
                yield self._wake
                continue
            self._account_kv(self.env.now)
            run = self._unplanned_run()
            if run is not None:
                yield from self._execute_run(run)
                continue
            plan = self.plan_step()
            if plan.is_empty:
                if not plan.rejected and not self._resolve_stall():
                    # Memory held by a request moving in or out frees itself; its move wakes us.
                    self._wake = self.env.event()
                    yield self._wake
                continue
            start = self.env.now
            run = self._plan_run(plan, start)
            if run is not None:
                yield from self._execute_run(run)
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
        builder = StepBuilder(self.kv, self.queues, self.host, self.setup.limits,
                              self.setup.kv_bytes_per_token)
        self.batch_policy.schedule(self, builder, self.env.now)
        plan = builder.build()
        for request in plan.rejected:
            self.on_done(request)
        return plan

    def _unplanned_run(self) -> DecodeRun | None:
        """A decode run of the whole running batch without asking the policy, when it says what
        it would plan: with nothing waiting or swapped, a policy declaring
        ``steady_through_finishes`` gives every running request that only decodes one token, in
        order (the plan a run continues with after a finish). None: the policy plans this step."""
        queues = self.queues
        if not self._runs_through_finishes or queues.waiting or queues.swapped or self.kv_hooks is not None:
            return None
        return unplanned_run(queues.running, self.env.now, self.kv, self.cost_model, self.setup.limits)

    def _plan_run(self, plan: StepPlan, start: float) -> DecodeRun | None:
        if not self.setup.fast_forward or self.queues.swapped:
            return None
        if len(plan.entries) != len(self.queues.running) or not plan_is_decode_only(plan):
            return None
        steady = getattr(self.batch_policy, "steady_decode", None)
        if steady is None or not steady(self):
            return None
        return build_run(plan, start, self.kv, self.cost_model, max_steps=2**31)

    def _execute_run(self, run: DecodeRun):
        """Wait out a decode run, or until an interrupt and the step then in flight; commit it.

        A run whose requests finish may go on with the rest (``commit_run`` then leaves its
        next segment in ``_decode_run``); the loop waits out each segment in turn.
        """
        self._decode_run = run
        self._interrupt = interrupt = self.env.event()
        while run is not None:
            end = float(run.ends_s[-1])
            yield _first_of(self.env, interrupt, self.env.timeout(end - self.env.now))
            steps = run.length
            if interrupt.triggered and self.env.now < end:
                steps = run.first_end_at_or_after(self.env.now) + 1
                step_end = float(run.ends_s[steps - 1])
                if step_end > self.env.now:
                    yield self.env.timeout(step_end - self.env.now)
            # now + (end - now) can round one ulp away from end; the clock is the truth.
            run.ends_s[steps - 1] = self.env.now
            self.commit_run(run, steps)
            run = self._decode_run

    def commit_run(self, run: DecodeRun, steps: int) -> None:
        """Commit the first ``steps`` steps of a run (at its end, an interrupt, or the horizon).

        At the end of a run whose requests finish while nothing else happens here, the
        run may go on with the rest: ``_decode_run`` is then its next segment.
        """
        self._decode_run = None
        self._run_ledger.add(run, steps, self.kv.used_blocks)
        self._kv_accounted_s = float(run.ends_s[steps - 1])
        if steps == run.length and self._may_continue_run():
            self._continue_run(run)
            return
        finished = commit_run(run, steps, self.kv, self.gap_histogram)
        end = float(run.ends_s[steps - 1])
        self._run_steps_done(run, steps, finished, end, check=self.setup.check_invariants)

    def _run_steps_done(self, run: DecodeRun, steps: int, finished: list[Request], end: float,
                        check: bool) -> None:
        """After a run's steps are committed: release the finished requests, count the steps and
        tell the policy, as a single step's commit does."""
        for request in finished:
            request.status = RequestStatus.FINISHED
        self.queues.pending_tokens -= len(finished)
        if finished:
            self.queues.remove_finished()
        self._release(finished)
        self.stats.steps += steps
        self.guards.progressed()
        if check:
            self.check_invariants(end)
        hook = getattr(self.batch_policy, "on_step_end", None)
        if hook is not None:
            hook(run.plan, finished, end)

    def _may_continue_run(self) -> bool:
        """Nothing but the run's own finishes happens here: the policy's next plan would be the
        rest of the batch (it says so with ``steady_through_finishes``), so the run can go on."""
        queues = self.queues
        return (self._runs_through_finishes and not self._interrupt.triggered and not queues.waiting
                and not queues.swapped and not self._kv_actions and not self.departures.pending
                and self.kv_hooks is None)

    def _continue_run(self, run: DecodeRun) -> None:
        """End a run's segment: finish the requests that finish, then go on with the rest if the
        finishes brought nothing here (a client's next call, a cluster action) and they fit.

        The survivors are not visited: their counters stay at the run's start until the run ends.
        """
        finishing, survivors, fewest = split_finishing(run)
        end = float(run.ends_s[-1])
        # Take the blocks the segment's steps implied before anything is freed, as stepping does;
        # the requests claim them when they are brought up to date.
        implied = int(run.blocks_added[-1])
        self.kv.reserve(implied)
        run.released_blocks = implied
        finished, _ = advance(finishing, run, run.length, self.kv, self.gap_histogram)
        add_segment_gaps(run, run.length, len(run.requests), self.gap_histogram)
        self._decode_run = run  # lazy views (tokens computed, KV in use) stay exact for on_done's observers
        # The survivors are behind until the run ends: invariants are checked then.
        self._run_steps_done(run, run.length, finished, end, check=False)
        segment = None
        if finished and survivors and self._may_continue_run():
            segment = next_segment(run, finished, survivors, fewest, self.kv, self.cost_model)
        self._decode_run = segment
        if segment is None:
            # The run ends here: bring the survivors up to date (their gaps are counted above).
            advance(survivors, run, run.length, self.kv, self.gap_histogram)
            if self.setup.check_invariants:
                self.check_invariants(end)

    def sync(self, now: float) -> None:
        """Commit the steps of a run in progress that have ended by ``now`` (end of simulation), and
        account the busy part of the step then in flight."""
        run = self._decode_run
        self._runs_through_finishes = False  # the simulation ends: a run committed now must not go on
        if run is not None:
            steps = run.steps_ended_by(now)
            if steps:
                self.commit_run(run, steps)
            elif run.offset:
                # The end fell where this segment of a run begins: its requests still stand at the
                # run's start and must be brought up to its earlier segments' end.
                advance(run.requests, run, 0, self.kv, self.gap_histogram)
            self._decode_run = None
            if steps < run.length:
                # Stepping's plan allocated the blocks of the step in flight when it began; the KV
                # integral and peak up to the end count them.
                self.kv.grow_all([(request, request.computed_tokens + 1) for request in run.requests
                                  if request.status is RequestStatus.RUNNING])
                start = run.start_s if steps == 0 else float(run.ends_s[steps - 1])
                flops, hbm_bytes = (float(work[steps]) if isinstance(work, np.ndarray) else float(work)
                                    for work in (run.flops, run.hbm_bytes))  # an array, or one value for all steps
                self._account_partial_step(start, now, float(run.durations_s[steps]), flops, hbm_bytes)
        elif self._step_in_flight is not None:
            plan, start, duration = self._step_in_flight
            self._step_in_flight = None
            flops, hbm_bytes = self.cost_model.work(plan.shape)
            self._account_partial_step(start, now, duration, float(flops), float(hbm_bytes))

    def _account_partial_step(self, start: float, now: float, duration: float, flops: float,
                              hbm_bytes: float) -> None:
        """A step cut by the end of the simulation: busy until ``now``, its work pro rata.

        Its tokens are not committed (they would appear only at its end), but the GPU was
        busy computing them: without this a run cut mid-step looked idle for that time.
        """
        busy = min(max(now - start, 0.0), duration)
        if busy <= 0.0:
            return
        share = busy / duration if duration > 0 else 0.0
        stats = self.stats
        stats.busy_s += busy
        stats.flops += flops * share
        stats.hbm_bytes += hbm_bytes * share
        stats.energy_j += self.power.busy_energy_j(busy, flops * share, hbm_bytes * share)

    def step_duration_s(self, plan: StepPlan) -> float:
        swap_s = self.host.transfer_time_s(plan.swap_bytes) if self.host is not None else 0.0
        return float(self.cost_model.step_time_s(plan.shape)) + swap_s

    def commit(self, plan: StepPlan, start: float, end: float) -> None:
        """Apply a finished step: counters, tokens, finished requests, statistics."""
        self._account_kv(end)
        # The span of the step being committed, for first-token hooks (layer-wise KV hand-off).
        self.committing_step_s = (start, end)
        finished: list[Request] = []
        gaps: list[float] = []
        queues = self.queues
        for request, tokens in plan.entries:
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
                    request.status = RequestStatus.FINISHED
                    request.finish_s = end
                    finished.append(request)
                    queues.pending_tokens -= 1
            else:
                self._advance(request, tokens, start, end, finished, gaps)
        if gaps:
            self.gap_histogram.extend(gaps)
        if finished:
            queues.remove_finished()
        self._release(finished)
        self._account_step(plan, start, end)
        if self.setup.check_invariants:
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
            request.status = RequestStatus.FINISHED
            request.finish_s = end
            finished.append(request)
        else:
            self.queues.pending_tokens += 1

    def _account_step(self, plan: StepPlan, start: float, end: float) -> None:
        stats = self.stats
        duration = end - start
        shape, work = self._step_work
        flops, hbm_bytes = work if shape is plan.shape else self.cost_model.work(plan.shape)
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

    def finalize(self, now: float, active_s: float | None = None) -> None:
        """Close the KV integral and charge idle energy at the end of the run.

        ``active_s``: seconds the instance was provisioned (auto-scaling); idle
        energy is charged for those only (default: the whole run).
        """
        self.sync(now)
        self._run_ledger.flush()
        self._account_kv(now)
        provisioned = now if active_s is None else active_s
        self.stats.energy_j += self.power.idle_energy_j(max(0.0, provisioned - self.stats.busy_s))

    # ------------------------------------------------------------- guards
    def check_invariants(self, now: float) -> None:
        """Raise SimulationError if KV accounting, request counters or time are inconsistent."""
        self.guards.check(now)

    def _resolve_stall(self) -> bool:
        return resolve_stall(self)


def _first_of(env: simpy.Environment, *events: simpy.Event) -> simpy.Event:
    """An event that succeeds when the first of ``events`` is processed: ``AnyOf`` without its
    bookkeeping (one run per engine cycle builds one; the value is never read).

    Like ``AnyOf`` it is triggered from the first event's callbacks, so the waiting
    process resumes after the same number of scheduling hops as with a condition.
    """
    first = env.event()

    def trigger(_event: simpy.Event) -> None:
        if not first.triggered:
            first.succeed()

    for event in events:
        event.callbacks.append(trigger)
    return first
