"""Fast-forward on one instance: starting decode runs, waiting them out, committing them.

``simulator.engine.fast_forward`` holds the arithmetic of a run (its steps'
times, blocks and counters); this module holds what an instance does with
one: when a run may start in place of a planned step, the wait that an
arrival or a cluster action cuts short, the commit of the steps that ended,
and a run's going on past its requests' finishes. While a run is in progress
its requests' counters stand at the run's start; the views here (tokens
computed, KV in use) are exact at any time by arithmetic.

An arrival that cuts a run short does not bring the batch up to date either,
when the batch policy can plan around it (``plans_around_held``: its admission
decides from the waiting queue and free memory alone). The run is *held*: its
committed steps are accounted and their blocks reserved; the policy plans the
next steps with the batch's decodes as one aggregate beside the newcomers'
prompts (``StepBuilder.add_held_decodes``; each such step counts as one more
step of the run), or runs whole prompts while the batch waits; and once nothing
waits the run goes on as a new segment that the newcomers *join*, each counting
its own steps, first token and largest gap from its join step. The batch is
brought up to date only when the policy needs it (a preemption, a refusal of
the aggregate) or the run ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import simpy
from simpy.events import NORMAL

from simulator.engine.fast_forward import (DecodeRun, RunLedger, build_run, next_segment, plan_is_decode_only,
                                           shift_frame, unplanned_run)
from simulator.engine.run_progress import advance, close_segment, commit_run, split_finishing
from simulator.engine.request import RUNNING, Request
from simulator.engine.step import HeldDecodes, StepPlan, requests_after

if TYPE_CHECKING:
    from simulator.engine.instance import Instance


class RunDriver:
    """The decode runs of one instance: the run in progress, its interrupt and the runs' totals.

    Args:
        instance: the instance whose running batch the runs advance.
        fast_forward: whether runs are used at all (``sim.fast_forward``).
    """

    def __init__(self, instance: Instance, fast_forward: bool) -> None:
        self.instance = instance
        self.env = instance.env
        self.fast_forward = fast_forward
        self.current: DecodeRun | None = None
        self.ledger = RunLedger(instance.stats, instance.power.busy_energy_j, instance.kv.total_blocks)
        self.wake: _Wake | None = None  # what the run's wait ends on
        self.cut_steps = 0  # when the run was cut short: its steps up to the one then in flight
        # Whether a run may continue past its requests' finishes (see _continue).
        self.through_finishes = fast_forward and getattr(instance.batch_policy, "steady_through_finishes", False)
        self._members: tuple[DecodeRun, frozenset[int]] | None = None  # the run's request ids, for tokens_computed
        self.held: Held | None = None  # a run cut short and held (see the module docstring)
        # Whether runs cut short by arrivals may be held (asked once: policies are bound before the run).
        self._holds = self.through_finishes and getattr(instance.batch_policy, "plans_around_held", False)

    # ------------------------------------------------------------------ views
    def implied_blocks(self) -> int:
        """KV blocks the run in progress holds beyond those the cache has allocated."""
        run = self.current
        if run is None:
            return 0
        # Mid-run the cache holds the first step's blocks; later steps' are implied.
        return int(run.blocks_added[run.steps_started_by(self.env.now) - 1]) - run.released_blocks

    def tokens_computed(self, request: Request) -> int:
        """Tokens of ``request`` whose KV exists on the instance now; exact inside a run."""
        run, held = self.current, self.held
        if run is None and held is None:
            return request.computed_tokens
        if request.instance_id != self.instance.id or request.status is not RUNNING:
            return request.computed_tokens
        if run is not None:
            behind = run.offset + run.steps_ended_by(self.env.now)
        else:
            run, behind = held.run, held.steps_done
        if self._members is None or self._members[0] is not run:
            self._members = (run, frozenset(r.id for r in run.requests))
        if request.id not in self._members[1]:
            return request.computed_tokens  # adopted during the run, or joining it at the next step
        joined = run.joiners.get(request.id) if run.joiners else None
        if joined is not None:
            behind = max(behind - joined[0], 0)
        return request.computed_tokens + behind

    def cut_short(self) -> None:
        """End the run in progress after its step in flight (an arrival or a cluster action)."""
        run = self.current
        if run is None or self.cut_steps:
            return
        now = self.env.now
        self.cut_steps = run.first_end_at_or_after(now) + 1
        if self.cut_steps < run.length:
            self.wake = self.wake.moved_to(float(run.ends_s[self.cut_steps - 1]) - now)

    # ---------------------------------------------------------------- starting
    def unplanned(self) -> DecodeRun | None:
        """A run of the whole running batch without asking the policy, when it says what it would
        plan: with nothing waiting or swapped, a policy declaring ``steady_through_finishes`` gives
        every running request that only decodes one token, in order (the plan a run continues with
        after a finish). None: the policy plans this step."""
        instance = self.instance
        queues = instance.queues
        if not self.through_finishes or queues.waiting or queues.swapped or instance.kv_hooks is not None:
            return None
        if self.held is not None:
            segment = self._resume_held()
            if segment is not None or self.held is not None:
                return segment  # (still held: a newcomer beside it prefills, the policy plans around it)
        return unplanned_run(queues.running, self.env.now, instance.kv, instance.cost_model, instance.setup.limits)

    def planned(self, plan: StepPlan, start: float) -> DecodeRun | None:
        """The run that starts with ``plan``, when the plan is a decode of the whole batch and the
        policy says the next steps would repeat it (``steady_decode``); else None."""
        instance = self.instance
        if not self.fast_forward or instance.queues.swapped or plan.held:
            return None  # (a step around a held run counts in that run; the run resumes after it)
        if len(plan.entries) != len(instance.queues.running) or not plan_is_decode_only(plan):
            return None
        steady = getattr(instance.batch_policy, "steady_decode", None)
        if steady is None or not steady(instance):
            return None
        return build_run(plan, start, instance.kv, instance.cost_model, max_steps=2**31)

    # ---------------------------------------------------------------- running
    def execute(self, run: DecodeRun):
        """Wait out a run, or until an interrupt and the step then in flight; commit it.

        A run whose requests finish may go on with the rest (``commit`` then leaves its
        next segment in ``current``); the loop waits out each segment in turn.
        """
        env = self.env
        self.current = run
        self.cut_steps = 0
        while run is not None:
            self.wake = _Wake(env, float(run.ends_s[-1]) - env.now)
            yield self.wake
            steps = self.cut_steps or run.length
            # now + (end - now) can round one ulp away from end; the clock is the truth.
            run.ends_s[steps - 1] = env.now
            self.commit(run, steps)
            run = self.current

    def commit(self, run: DecodeRun, steps: int) -> None:
        """Commit the first ``steps`` steps of a run (at its end, an interrupt, or the horizon).

        At the end of a run whose requests finish while nothing else happens on the
        instance, the run may go on with the rest: ``current`` is then its next segment.
        """
        instance = self.instance
        self.current = None
        self.ledger.add(run, steps, instance.kv.used_blocks)
        instance.usage.kv_accounted_to(float(run.ends_s[steps - 1]))
        if steps == run.length and self._may_continue():
            self._continue(run)
            return
        # A cut in the segment's last step (where requests finish) holds the run as well.
        if (steps < run.length or self.cut_steps) and self._may_hold(run):
            self._hold(run, steps)
            return
        finished = commit_run(run, steps, instance.kv, instance.gap_histogram)
        end = float(run.ends_s[steps - 1])
        instance.steps_committed(run.plan, steps, finished, end, check=instance.setup.check_invariants)

    def _may_continue(self) -> bool:
        """Nothing but the run's own finishes happens on the instance: the policy's next plan would
        be the rest of the batch (it says so with ``steady_through_finishes``), so the run can go on."""
        instance = self.instance
        queues = instance.queues
        return (self.through_finishes and not self.cut_steps and not queues.waiting
                and not queues.swapped and not instance.has_kv_actions and not instance.departures.pending
                and instance.kv_hooks is None)

    def _may_hold(self, run: DecodeRun) -> bool:
        """An arrival alone cut the run short, and the policy can plan the next step around it."""
        instance = self.instance
        queues = instance.queues
        # (through_finishes is turned off when the simulation ends: a run committed then is not held)
        return (self._holds and self.through_finishes and queues.waiting and not queues.swapped
                and not instance.has_kv_actions and not instance.departures.pending and instance.kv_hooks is None
                and len(queues.running) == len(run.requests))

    def _hold(self, run: DecodeRun, steps: int) -> None:
        """Commit the first ``steps`` steps of a run cut short without visiting its requests:
        the blocks those steps implied are reserved, their gaps logged, and the run held (the
        requests that finish at its last step, when the cut came in the segment's last, leave
        it); the steps planned around it (``step_held``) go on counting in it until it resumes as
        a new segment (``unplanned``) or its requests are brought up to date (``release_held``)."""
        instance = self.instance
        self._reserve_implied(run, steps)
        close_segment(run, steps, instance.gap_histogram)
        end = float(run.ends_s[steps - 1])
        # The run's own lists are no longer a segment's: requests finishing in held steps leave them.
        run.requests, run.per_offset = list(run.requests), run.per_offset.copy()
        self.held = Held(run, steps, end)
        finished = self._finish_held(end)
        # The requests stand behind while the run is held: invariants are checked when they are brought up.
        instance.steps_committed(run.plan, steps, finished, end, check=False)

    def held_decodes(self) -> HeldDecodes | None:
        """The held batch's next decode step, for the step builder; None when no run is held."""
        held = self.held
        if held is None:
            return None
        run, step = held.run, held.steps_done  # the run's step this would be, counted from its start
        per_offset = run.per_offset
        return HeldDecodes(run.requests, run.kv_read_start + len(run.requests) * step,
                           per_offset[(step - 1) % len(per_offset)], held.entries)

    def step_held(self, end: float) -> list[Request]:
        """A step planned around the held run, holding its decodes, ended at ``end``: it counts as
        one more step of the run (its blocks were reserved when it was planned). Returns the
        requests that finished in it, brought up to date, in plan order."""
        held = self.held
        run = held.run
        gap = end - held.last_end_s  # the clock's subtraction, as stepping's commit does it
        run.gaps.append(gap)
        self.instance.gap_histogram.add_repeated(gap, len(run.requests))
        held.extra += 1
        held.last_end_s = end
        return self._finish_held(end)

    def _finish_held(self, end: float) -> list[Request]:
        """Bring the held run's requests that have finished by its last step (ended at ``end``) up
        to date and take them out of it; returns them in plan order."""
        held = self.held
        run, total = held.run, held.steps_done
        if run.next_finish > total:
            return []
        instance = self.instance
        finishing, survivors, held.entries = split_finishing(run, total, held.entries)
        finished, _ = advance(finishing, run, held.steps, instance.kv, instance.gap_histogram, held.extra, end)
        run.kv_read_start = shift_frame(run.per_offset, run.kv_read_start, finished, total, instance.kv.block_size, -1)
        run.requests = survivors
        self._members = None
        if not survivors:
            self.held = None
        return finished

    def _resume_held(self) -> DecodeRun | None:
        """The held run going on as a new segment, joined by the requests that started beside it
        and now only decode. None when it cannot: still held while a newcomer prefills (the policy
        plans its next chunk around the held decodes), else with the run's requests brought up to
        date."""
        held = self.held
        run, queues = held.run, self.instance.queues
        members = len(run.requests)
        joining = requests_after(queues.running, run.requests)  # None: not the held run and newcomers
        if joining is not None and not all(r.prompt_tokens + r.generated_tokens - r.computed_tokens == 1 and r.generated_tokens
                     for r in joining):
            return None  # a newcomer still prefills: the policy plans its next chunk around the run
        segment = None
        limits = self.instance.setup.limits
        if joining is not None and members + len(joining) <= min(limits.max_num_seqs, limits.max_batched_tokens):
            instance = self.instance
            segment = next_segment(run, [], run.requests, instance.kv, instance.cost_model,
                                   first_step=held.steps_done, start_s=self.env.now, prev_end_s=held.last_end_s,
                                   joining=joining, survivor_entries=held.entries)
        if segment is None:
            self.release_held()
            return None
        self.held = None
        return segment

    def unhold(self, plan: StepPlan) -> StepPlan:
        """A plan of the held batch's decodes and nothing else (nothing waiting could start): the
        plan becomes an ordinary decode of the whole batch (which may start a run as any other)."""
        self.sync_held(step_planned=True)
        return plan._replace(held=0)

    def sync_held(self, step_planned: bool) -> None:
        """Bring a held run's requests up to date (the simulation ends, or a plan holds only their
        decodes); when a planned step holds their decodes, give them the blocks it reserved, as
        stepping's plan allocated them."""
        run = self.held.run
        self.release_held(check=False)
        if step_planned:
            self.instance.kv.grow_all([(request, request.computed_tokens + 1) for request in run.requests])

    def release_held(self, check: bool = True) -> None:
        """Bring a held run's requests up to date without a further step (the policy plans from them)."""
        held, self.held = self.held, None
        instance = self.instance
        advance(held.run.requests, held.run, held.steps, instance.kv, instance.gap_histogram, held.extra,
                held.last_end_s)
        self._members = None
        if check and instance.setup.check_invariants:
            instance.check_invariants(self.env.now)

    def _reserve_implied(self, run: DecodeRun, steps: int) -> None:
        """Take the blocks the run's first ``steps`` steps implied, before anything is freed, as
        stepping allocated them; the requests claim them when they are brought up to date."""
        implied = int(run.blocks_added[steps - 1])
        self.instance.kv.reserve(implied - run.released_blocks)
        run.released_blocks = implied

    def _continue(self, run: DecodeRun) -> None:
        """End a run's segment: finish the requests that finish, then go on with the rest if the
        finishes brought nothing here (a client's next call, a cluster action) and they fit.

        The survivors are not visited: their counters stay at the run's start until the run ends.
        """
        instance = self.instance
        kv, histogram = instance.kv, instance.gap_histogram
        finishing, survivors, survivor_entries = split_finishing(run)
        end = float(run.ends_s[-1])
        self._reserve_implied(run, run.length)
        close_segment(run, run.length, histogram)
        finished, _ = advance(finishing, run, run.length, kv, histogram)
        self.current = run  # lazy views (tokens computed, KV in use) stay exact for on_done's observers
        # The survivors are behind until the run ends: invariants are checked then.
        instance.steps_committed(run.plan, run.length, finished, end, check=False)
        segment = None
        if finished and survivors and self._may_continue():
            segment = next_segment(run, finished, survivors, kv, instance.cost_model,
                                   survivor_entries=survivor_entries)
        self.current = segment
        if segment is None:
            # The run ends here: bring the survivors up to date (their gaps are counted above).
            advance(survivors, run, run.length, kv, histogram)
            if instance.setup.check_invariants:
                instance.check_invariants(end)

    def sync(self, now: float) -> tuple[float, float, float, float] | None:
        """At the end of the simulation: commit the steps of the run in progress that ended by
        ``now``; returns the step then in flight as ``(start, duration, flops, bytes)``, or None."""
        run = self.current
        self.through_finishes = False  # the simulation ends: a run committed now must not go on
        if run is None:
            return None
        instance = self.instance
        steps = run.steps_ended_by(now)
        if steps:
            self.commit(run, steps)
        elif run.offset:
            # The end fell where this segment of a run begins: its requests still stand at the
            # run's start and must be brought up to its earlier segments' end.
            advance(run.requests, run, 0, instance.kv, instance.gap_histogram)
        self.current = None
        if steps == run.length:
            return None
        # Stepping's plan allocated the blocks of the step in flight when it began; the KV
        # integral and peak up to the end count them.
        instance.kv.grow_all([(request, request.computed_tokens + 1) for request in run.requests
                              if request.status is RUNNING])
        start = run.start_s if steps == 0 else float(run.ends_s[steps - 1])
        return start, float(run.durations_s[steps]), float(run.work[1, steps]), float(run.work[2, steps])


class Held:
    """A decode run cut short and held: its segment, the steps of it that ran, the steps planned
    around it since (``extra``), when the last of them ended, and the plan entries of its
    decodes (the segment's own, less those of the requests that finish while it is held)."""

    __slots__ = ("run", "steps", "extra", "last_end_s", "entries")

    def __init__(self, run: DecodeRun, steps: int, last_end_s: float) -> None:
        self.run, self.steps, self.extra, self.last_end_s = run, steps, 0, last_end_s
        self.entries: tuple[tuple[Request, int], ...] = run.plan.entries

    @property
    def steps_done(self) -> int:
        """Steps of the run so far, counted from its start (the next one's index)."""
        return self.run.offset + self.steps + self.extra


class _Wake(simpy.Event):
    """The end of a run's wait: a timeout at the run's end that a cut can move earlier.

    SimPy cannot take an event out of its queue, so ``moved_to`` schedules a new one and
    hands it the waiting process (the callbacks); the old one then fires with nobody waiting.
    One event per wait, where an interrupt event, a condition and a second timeout were.
    """

    def __init__(self, env: simpy.Environment, delay: float) -> None:
        # Scheduled already triggered, its fields set directly, as simpy.Timeout.__init__ does
        # (one is made per run segment: a call of Event.__init__ through super() was a third of it).
        self.env = env
        self.callbacks = []
        self._ok, self._value = True, None
        env.schedule(self, NORMAL, delay)

    def moved_to(self, delay: float) -> _Wake:
        """A wake ``delay`` seconds from now that the process waiting on this one waits on instead
        (this one itself when it has fired already: its process is resuming)."""
        if self.callbacks is None:
            return self
        moved = _Wake(self.env, delay)
        moved.callbacks, self.callbacks = self.callbacks, []
        return moved
